"""``ModelValidation``: the thresholds a refresh candidate must pass on a
held-out sample before it replaces the serving model.

It is the callable ``RunInference(..., model_validation=...)`` hands both
models to: ``validation(candidate_predict, serving_predict)`` where each
``predict`` maps a list of examples to their predictions. It runs the same
combiners as ``EvaluateModel``, in process, on the sample.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np

from ..exceptions import ConfigurationError
from ._blocks import Block, feature_array, prediction_array
from ._local import evaluate_blocks
from ._ranking import EXACT_LIMIT
from ._registry import resolve_metrics
from ._slicing import slice_specs
from ._thresholds import (ChangeThreshold, ValidationResult,
                          check_thresholds, validate)

CANDIDATE, SERVING = 'candidate', 'serving'


def _inference(p):
  return getattr(p, 'inference', p)


class ModelValidation:
  """Thresholds on a held-out sample: ``examples`` (what the model takes)
  and their ``labels``; optional ``weights`` and ``features`` (slice
  columns, ``{name: values}``) with ``slices``. ``ChangeThreshold``s
  compare the candidate with the serving model."""
  def __init__(self, examples: Sequence[Any], labels: Sequence[Any], *,
               thresholds: Sequence,
               metrics: Any = 'binary',
               weights: Optional[Sequence[float]] = None,
               features: Optional[Mapping[str, Sequence]] = None,
               slices: Any = None,
               threshold: float = 0.5):
    self.examples = list(examples)
    if not self.examples or len(self.examples) != len(labels):
      raise ConfigurationError(
          'ModelValidation needs a non-empty sample with one label per '
          f'example; got {len(self.examples)} examples, {len(labels)} labels.')
    if not thresholds:
      raise ConfigurationError('ModelValidation needs at least one threshold.')
    self.labels = np.asarray(labels)
    self.weights = (np.ones(len(self.labels)) if weights is None
                    else np.asarray(weights, dtype=np.float64))
    self.features = {k: feature_array(v) for k, v in (features or {}).items()}
    self.metrics = resolve_metrics(metrics, threshold=threshold,
                                   auc_exact_limit=EXACT_LIMIT)
    self.specs = slice_specs(slices)
    missing = {f for s in self.specs for f in s.features} - set(self.features)
    if missing:
      raise ConfigurationError(
          f'slices use feature(s) {sorted(missing)} not given in features=.')
    self.thresholds = check_thresholds(
        thresholds, [m.name for m in self.metrics if m.scalar],
        [CANDIDATE, SERVING], SERVING)

  @classmethod
  def from_file(cls, path: str, *, label: str, features: Sequence[str],
                weight: Optional[str] = None,
                slice_features: Sequence[str] = (), **kwargs
                ) -> 'ModelValidation':
    """A held-out sample read from a CSV, Parquet or JSON-lines file: each
    example is the ``features`` columns as one float vector (what a
    scikit-learn/XGBoost numpy handler takes)."""
    import pandas as pd
    ext = path.rsplit('.', 1)[-1].lower()
    try:
      table = (pd.read_parquet(path) if ext in ('parquet', 'pq') else
               pd.read_json(path, lines=True) if ext in ('jsonl', 'ndjson')
               else pd.read_csv(path))
    except FileNotFoundError as exc:
      raise ConfigurationError(
          f'ModelValidation sample {path!r} does not exist.') from exc
    cols = [label, *features, *([weight] if weight else []),
            *slice_features]
    missing = [c for c in cols if c not in table.columns]
    if missing:
      raise ConfigurationError(
          f'ModelValidation sample {path!r} has no column(s) {missing}; it '
          f'has {list(table.columns)[:30]}.')
    x = table[list(features)].to_numpy(dtype=np.float64)
    return cls(list(x), table[label].to_numpy(), weights=(
        None if weight is None else table[weight].to_numpy()),
               features={f: table[f].to_numpy() for f in slice_features},
               **kwargs)

  def _block(self, predict: Callable[[list], Any]) -> Block:
    preds = [_inference(p) for p in predict(list(self.examples))]
    return Block(self.labels, prediction_array(preds), self.weights,
                 self.features)

  def __call__(self, candidate: Callable[[list], Any],
               serving: Optional[Callable[[list], Any]] = None
               ) -> ValidationResult:
    blocks = {CANDIDATE: [self._block(candidate)]}
    thresholds = self.thresholds
    if serving is not None:
      blocks[SERVING] = [self._block(serving)]
    else:  # nothing serves yet: nothing to compare with
      thresholds = [t for t in thresholds
                    if not isinstance(t, ChangeThreshold)]
    records = evaluate_blocks(blocks, self.metrics, self.specs)
    return validate(records, thresholds, CANDIDATE,
                    SERVING if serving is not None else None)

  def __repr__(self):
    return (f'ModelValidation({len(self.examples)} examples, thresholds='
            f'{[t.describe() for t in self.thresholds]})')


__all__ = ['ModelValidation']
