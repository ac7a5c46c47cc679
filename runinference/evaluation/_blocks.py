"""Column blocks: the unit every metric works on.

A ``Block`` holds one model's labels, predictions and weights for a run of
examples as numpy arrays, plus the slice features. Rows are gathered into
blocks once per bundle (``RowsToBlocks``), so metrics and slicing are
vectorised numpy work, never a Python step per example.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence

import apache_beam as beam
import numpy as np

from .._core.windowing import in_global_window
from ..exceptions import InvalidInputError

#: Rows gathered before a block is emitted mid-bundle (bounds memory).
MAX_BLOCK_ROWS = 65536


@dataclasses.dataclass
class Block:
  """``labels`` (n,), ``predictions`` (n,) scores / values / classes or
  (n, k) class probabilities, ``weights`` (n,) float64, and ``features``:
  the slice columns, each (n,)."""
  labels: np.ndarray
  predictions: np.ndarray
  weights: np.ndarray
  features: dict = dataclasses.field(default_factory=dict)

  def __len__(self) -> int:
    return len(self.labels)

  def take(self, index) -> 'Block':
    return Block(self.labels[index], self.predictions[index],
                 self.weights[index],
                 {k: v[index] for k, v in self.features.items()})

  def with_weights(self, weights: np.ndarray) -> 'Block':
    return Block(self.labels, self.predictions, weights, self.features)

  @staticmethod
  def concat(blocks: Sequence['Block']) -> 'Block':
    if len(blocks) == 1:
      return blocks[0]
    return Block(
        np.concatenate([b.labels for b in blocks]),
        np.concatenate([b.predictions for b in blocks]),
        np.concatenate([b.weights for b in blocks]),
        {k: np.concatenate([b.features[k] for b in blocks])
         for k in blocks[0].features})


def prediction_array(values: Sequence[Any]) -> np.ndarray:
  """Stacks predictions (numbers, 0-d arrays or class-probability vectors):
  (n,) or (n, k); a (n, 1) column becomes (n,)."""
  if isinstance(values, np.ndarray):
    arr = values
  else:
    values = list(values)
    if values and isinstance(values[0], np.ndarray) and values[0].ndim:
      arr = np.stack(values)
    else:
      arr = np.asarray(values)
  if arr.dtype == object:
    raise InvalidInputError(
        'predictions must be numbers or equal-length numeric vectors (class '
        f'probabilities); got {arr[:1]!r:.120} ...')
  if arr.ndim == 2 and arr.shape[1] == 1:
    arr = arr[:, 0]
  if arr.ndim > 2:
    raise InvalidInputError(
        f'predictions must be scalars or 1-D vectors, got shape {arr.shape[1:]}'
        ' per example.')
  return arr


def feature_array(values: Sequence[Any]) -> np.ndarray:
  arr = np.asarray(values)
  if arr.dtype == object:
    arr = np.asarray([str(v) for v in values])
  return arr


def _weights(values: Optional[Sequence[Any]], n: int) -> np.ndarray:
  if values is None:
    return np.ones(n, dtype=np.float64)
  w = np.asarray(values, dtype=np.float64)
  if w.shape != (n,):
    raise InvalidInputError(f'weights must be one number per example, got '
                            f'shape {w.shape} for {n} examples.')
  return w


def _getter(row) -> Callable[[Any, str], Any]:
  if isinstance(row, Mapping):
    return lambda r, k: r[k]
  return getattr


@dataclasses.dataclass(frozen=True)
class Columns:
  """Where each part of a block comes from in an input row or column set."""
  label_key: str
  weight_key: Optional[str]
  feature_keys: tuple

  def _column(self, rows, key, getter, what):
    try:
      return [getter(r, key) for r in rows]
    except (KeyError, AttributeError) as exc:
      have = sorted(rows[0]) if isinstance(rows[0], Mapping) else [
          f for f in dir(rows[0]) if not f.startswith('_')]
      raise InvalidInputError(
          f'An example has no {what} {key!r}; it has: {have[:20]}.') from exc

  def block(self, rows: Sequence[Any], predictions: Any) -> Block:
    """A block of ``rows`` with ``predictions`` (already gathered)."""
    get = _getter(rows[0])
    labels = np.asarray(self._column(rows, self.label_key, get, 'label'))
    weights = _weights(
        None if self.weight_key is None else
        self._column(rows, self.weight_key, get, 'weight'), len(rows))
    feats = {k: feature_array(self._column(rows, k, get, 'slice feature'))
             for k in self.feature_keys}
    return Block(labels, prediction_array(predictions), weights, feats)

  def prediction_column(self, rows, key) -> list:
    return self._column(rows, key, _getter(rows[0]), 'prediction')

  def from_columns(self, table: Any, prediction_key: str) -> Block:
    """A block from a column set: a dict of arrays, a pandas DataFrame or a
    pyarrow Table / RecordBatch."""
    arrow = hasattr(table, 'column_names')
    names = list(table.column_names) if arrow else list(table.keys())

    def col(key, what):
      if key not in names:
        raise InvalidInputError(
            f'The column set has no {what} column {key!r}; it has: '
            f'{sorted(names)[:20]}.')
      value = table.column(key) if arrow else table[key]
      if arrow:
        try:
          return value.to_numpy(zero_copy_only=False)
        except TypeError:
          return value.to_numpy()
      return value.to_numpy() if hasattr(value, 'to_numpy') else value
    labels = np.asarray(col(self.label_key, 'label'))
    preds = col(prediction_key, 'prediction')
    preds = prediction_array(
        preds if isinstance(preds, np.ndarray) and preds.dtype != object
        else list(preds))
    weights = _weights(
        None if self.weight_key is None else np.asarray(
            col(self.weight_key, 'weight')), len(labels))
    feats = {k: feature_array(np.asarray(col(k, 'slice feature')))
             for k in self.feature_keys}
    return Block(labels, preds, weights, feats)


class RowsToBlocks(beam.DoFn):
  """Gathers ``(model, row, prediction)`` triples per model and emits
  ``(model, Block)`` every ``MAX_BLOCK_ROWS`` rows and at the end of each
  bundle. With ``prediction_keys`` the input is plain rows that carry each
  model's prediction in a column of their own."""
  def __init__(self, columns: Columns,
               prediction_keys: Optional[Mapping[str, str]] = None,
               max_rows: int = MAX_BLOCK_ROWS):
    self._columns = columns
    self._prediction_keys = dict(prediction_keys or {})
    self._max_rows = max_rows

  def start_bundle(self):
    self._rows: dict = {}
    self._preds: dict = {}

  def _flush(self, model) -> Iterable:
    rows, preds = self._rows.pop(model), self._preds.pop(model)
    if self._prediction_keys:
      for name, key in self._prediction_keys.items():
        yield name, self._columns.block(
            rows, self._columns.prediction_column(rows, key))
    else:
      yield model, self._columns.block(rows, preds)

  def process(self, element):
    if self._prediction_keys:
      model, row, pred = None, element, None
    else:
      model, row, pred = element
    rows = self._rows.get(model)
    if rows is None:
      rows = self._rows[model] = []
      self._preds[model] = []
    rows.append(row)
    self._preds[model].append(pred)
    if len(rows) >= self._max_rows:
      yield from self._flush(model)

  def finish_bundle(self):
    for model in list(self._rows):
      for out in self._flush(model):
        yield in_global_window(out)


__all__ = ['Block']
