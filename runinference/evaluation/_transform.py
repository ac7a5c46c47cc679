"""``EvaluateModel``: metrics per model and slice, and a validation result,
as a short ``expand`` of named steps."""
from __future__ import annotations

import inspect
from typing import Any, Callable, Mapping, Optional, Sequence, Union

import apache_beam as beam
import numpy as np

from ..exceptions import ConfigurationError, ConfigurationTypeError
from .._core.options import reject_unknown
from ..base import (KeyedModelHandler, ModelHandler, PredictionResult,
                    RunInference)
from ._blocks import MAX_BLOCK_ROWS, Columns, RowsToBlocks
from ._combine import MetricsCombineFn
from ._contract import Metric
from ._ranking import EXACT_LIMIT
from ._registry import resolve_metrics
from ._slicing import cut_all, slice_specs
from ._thresholds import SliceMetrics, check_thresholds, validate

_DEFAULT_MODEL = 'model'


def _features_fn(features) -> Callable[[Any], Any]:
  if callable(features):
    return features
  if isinstance(features, str):
    return lambda row, k=features: (row[k] if isinstance(row, Mapping)
                                    else getattr(row, k))
  keys = list(features)

  def stack(row):
    get = row.__getitem__ if isinstance(row, Mapping) else (
        lambda k: getattr(row, k))
    return np.asarray([get(k) for k in keys], dtype=np.float64)
  return stack


class EvaluateModel(beam.PTransform):
  """Evaluates one or more models on labelled examples, per slice.

  Input: a PCollection of rows (dicts or ``beam.Row``), or of column sets
  (dicts of arrays or pandas DataFrames) with ``columnar=True``, or of
  ``PredictionResult`` whose ``example`` is such a row.

  Models, one of:
    * ``handlers={'candidate': handler, 'baseline': handler2}``: any
      ``ModelHandler``; each runs through ``RunInference`` on
      ``features`` (a key, a list of keys stacked into a vector, or a
      function of the row);
    * ``predictions={'candidate': 'pred_col', ...}``: precomputed
      predictions in a column of their own;
    * neither: the input is a ``PredictionResult`` stream of one model
      (named ``model_name``).

  Output: a dict of PCollections: ``metrics`` (one ``SliceMetrics`` per
  model and slice) and ``validation`` (one ``ValidationResult``).
  """
  def __init__(
      self,
      *,
      label_key: str = 'label',
      metrics: Any = 'binary',
      handlers: Optional[Mapping[str, ModelHandler]] = None,
      predictions: Optional[Union[str, Mapping[str, str]]] = None,
      features: Any = None,
      weight_key: Optional[str] = None,
      slices: Any = None,
      thresholds: Sequence = (),
      candidate: Optional[str] = None,
      baseline: Optional[str] = None,
      bootstrap: int = 0,
      seed: Optional[int] = None,
      threshold: float = 0.5,
      calibration_bins: int = 10,
      auc_exact_limit: int = EXACT_LIMIT,
      columnar: bool = False,
      model_name: str = _DEFAULT_MODEL,
      block_rows: int = MAX_BLOCK_ROWS,
      **unknown):
    """
    Args:
      label_key: the label column.
      metrics: metric names, presets (``binary``, ``multiclass``,
        ``regression``) or ``MetricCombiner`` objects.
      weight_key: a column of example weights (every metric is weighted).
      slices: slicing specs (see ``runinference.evaluation.SliceSpec``);
        default overall only.
      thresholds: ``ValueThreshold`` / ``ChangeThreshold`` objects.
      candidate, baseline: model names (default: the first and the second
        model given).
      bootstrap: Poisson bootstrap replicates for confidence intervals
        (0: none).
      threshold: the positive-class cut for binary scores.
    """
    super().__init__()
    if unknown:
      reject_unknown('EvaluateModel', unknown, [
          p for p in inspect.signature(EvaluateModel.__init__).parameters
          if p not in ('self', 'unknown')])
    if handlers is not None and predictions is not None:
      raise ConfigurationError(
          'EvaluateModel takes handlers= (models to run) or predictions= '
          '(precomputed columns), not both.')
    if isinstance(predictions, str):
      predictions = {model_name: predictions}
    if handlers is not None and not isinstance(handlers, Mapping):
      handlers = {model_name: handlers}
    for name, h in (handlers or {}).items():
      if not all(hasattr(h, m) for m in ('load_model', 'run_inference')):
        raise ConfigurationTypeError(
            f'handlers[{name!r}] must be a ModelHandler, got '
            f'{type(h).__name__}.')
    if handlers and features is None:
      raise ConfigurationError(
          'EvaluateModel(handlers=...) needs features=: the key(s) of the '
          'model input in each row, or a function of the row.')
    if features is not None and not handlers:
      raise ConfigurationError(
          'features= is the model input for handlers=; with precomputed '
          'predictions it is not used.')
    if columnar and not predictions:
      raise ConfigurationError(
          'columnar=True needs predictions= (precomputed prediction columns).')
    self._handlers = dict(handlers or {})
    self._predictions = dict(predictions or {})
    models = list(self._handlers or self._predictions or [model_name])
    self._models = models
    self._candidate = candidate or models[0]
    self._baseline = baseline if baseline is not None else (
        models[1] if len(models) > 1 else None)
    for role, name in (('candidate', self._candidate),
                       ('baseline', self._baseline)):
      if name is not None and name not in models:
        raise ConfigurationError(
            f'{role} {name!r} is not one of the models {models}.')
    self._metrics: list[Metric] = resolve_metrics(
        metrics, threshold=threshold, calibration_bins=calibration_bins,
        auc_exact_limit=auc_exact_limit, weighted=weight_key is not None)
    self._specs = slice_specs(slices)
    self._thresholds = check_thresholds(
        thresholds, [m.name for m in self._metrics if m.scalar], models,
        self._baseline)
    if not isinstance(bootstrap, int) or bootstrap < 0 or bootstrap == 1:
      raise ConfigurationError(
          f'bootstrap must be 0 (no intervals) or at least 2 replicates, got '
          f'{bootstrap!r}.')
    self._bootstrap = bootstrap
    self._seed = seed
    self._columns = Columns(
        label_key, weight_key,
        tuple(dict.fromkeys(f for s in self._specs for f in s.features)))
    self._features = None if features is None else _features_fn(features)
    self._columnar = columnar
    self._block_rows = block_rows
    self._model_name = model_name

  # -- steps ----------------------------------------------------------------
  def _blocks(self, pcoll):
    cols = self._columns
    if self._columnar:
      preds = self._predictions
      return pcoll | 'ColumnsToBlocks' >> beam.FlatMap(
          lambda t: [(m, cols.from_columns(t, k)) for m, k in preds.items()])
    if self._predictions:
      return pcoll | 'RowsToBlocks' >> beam.ParDo(
          RowsToBlocks(cols, self._predictions, self._block_rows))
    if not self._handlers:
      name = self._model_name
      triples = pcoll | 'FromPredictionResults' >> beam.Map(
          lambda pr: (name, pr.example, pr.inference))
    else:
      legs = []
      feats = self._features
      for name, handler in self._handlers.items():
        legs.append(
            pcoll
            | f'Features[{name}]' >> beam.Map(lambda r: (r, feats(r)))
            | f'RunInference[{name}]' >> RunInference(
                KeyedModelHandler(handler))
            | f'Tag[{name}]' >> beam.Map(
                lambda kv, n=name: (n, kv[0], _inference(kv[1]))))
      triples = legs[0] if len(legs) == 1 else (
          legs | 'Models' >> beam.Flatten())
    return triples | 'RowsToBlocks' >> beam.ParDo(
        RowsToBlocks(cols, None, self._block_rows))

  def expand(self, pcoll):
    specs = self._specs
    keyed = self._blocks(pcoll) | 'Slice' >> beam.FlatMap(
        lambda mb: [((mb[0], key), sub) for key, sub in cut_all(mb[1], specs)])
    combined = keyed | 'Metrics' >> beam.CombinePerKey(
        MetricsCombineFn(self._metrics, self._bootstrap, self._seed))
    records = combined | 'SliceMetrics' >> beam.MapTuple(
        lambda k, v: SliceMetrics(k[0], k[1], v['metrics'], v['intervals']))
    thresholds, cand, base = self._thresholds, self._candidate, self._baseline
    validation = (
        records
        | 'AllSlices' >> beam.combiners.ToList()
        | 'Validate' >> beam.Map(
            lambda rs: validate(rs, thresholds, cand, base)))
    return {'metrics': records, 'validation': validation}


def _inference(result):
  return result.inference if isinstance(result, PredictionResult) else result


__all__ = ['EvaluateModel']
