"""Full-pass statistics over blocks: mergeable accumulators, one per analyzer.

Each accumulator takes a whole column of a block at once (``add``), merges
with another (``merge``, associative and commutative, so that Beam can
combine partial results in any order on any worker) and gives a JSON-ready
result. ``StageStatsFn`` runs all analyzers of a stage in one
``CombineGlobally`` over the stage's blocks.
"""
from __future__ import annotations

import functools
import heapq
from dataclasses import dataclass, field
from typing import Any, Optional

import apache_beam as beam
import numpy as np
import pyarrow.compute as pc

from ._columns import Column, Reader
from ._ops import row_unique
from ._errors import ColumnTypeError

MOMENTS, QUANTILES, VOCAB, DF, WORD_COUNT, TUKEY = (
    'moments', 'quantiles', 'vocab', 'df', 'word_count', 'tukey')
# Values kept exactly by the quantile sketch before it starts compressing.
_SKETCH_CAPACITY = 200_000


@dataclass
class Analyzer:
  """One statistic of one column, as a transform asks for it."""
  key: str
  kind: str
  column: str
  transform: str
  reader: Reader
  params: dict = field(default_factory=dict)

  def accumulator(self):
    params = self.params_for_accumulator()
    if params.get('elementwise'):
      return ByWidth(functools.partial(_ACCUMULATORS[self.kind], **params))
    return _ACCUMULATORS[self.kind](**params)

  def params_for_accumulator(self) -> dict:
    if self.kind == MOMENTS:
      return {'elementwise': bool(self.params.get('elementwise')),
              'where': f'{self.transform} on column {self.column!r}'}
    if self.kind == QUANTILES:
      return {'num_buckets': self.params['num_buckets']}
    if self.kind == VOCAB:
      return {'top_k': self.params.get('top_k'),
              'frequency_threshold': self.params.get('frequency_threshold')}
    if self.kind == TUKEY:
      return {'elementwise': bool(self.params.get('elementwise')),
              'where': f'{self.transform} on column {self.column!r}'}
    return {}


def rows_matrix(col: Column, where: str) -> np.ndarray:
  """A column whose rows all have one length, as a (rows, length) matrix."""
  width = col.width()
  if width is None:
    raise ColumnTypeError(
        f'{where} (elementwise=True) needs every row to have the same '
        f'length, got lengths {sorted(set(col.lengths().tolist()))[:10]}.')
  return np.asarray(col.values, dtype=np.float64).reshape(len(col), width)


class ByWidth:
  """Elementwise statistics kept apart per row length. The result is that of
  the length most rows have (ties: the longer), so it never depends on how
  rows fell into blocks; the transform refuses rows of other lengths when it
  applies (they go to the dead-letter output)."""
  def __init__(self, factory):
    self.factory = factory
    self.parts: dict = {}  # row length -> accumulator of those rows
    self.rows: dict = {}  # row length -> number of rows

  def add(self, col: Column) -> None:
    lengths = col.lengths()
    for width in np.unique(lengths).tolist():
      rows = np.flatnonzero(lengths == width)
      part = col if len(rows) == len(col) else col.take(rows)
      if width not in self.parts:
        self.parts[width] = self.factory()
      self.parts[width].add(part)
      self.rows[width] = self.rows.get(width, 0) + len(rows)

  def merge(self, other: 'ByWidth') -> None:
    for width, acc in other.parts.items():
      if width in self.parts:
        self.parts[width].merge(acc)
      else:
        self.parts[width] = acc
      self.rows[width] = self.rows.get(width, 0) + other.rows[width]

  def result(self):
    widths = [w for w in self.parts if w > 0] or list(self.parts)
    if not widths:
      return self.factory().result()
    return self.parts[max(widths, key=lambda w: (self.rows[w], w))].result()


# -- moments -------------------------------------------------------------------


class MomentsAccumulator:
  """Count, mean, M2 (Chan's parallel merge), min and max; per position
  when ``elementwise``."""
  def __init__(self, elementwise: bool = False, where: str = ''):
    self.elementwise = elementwise
    self.where = where
    self.count = self.mean = self.m2 = self.min = self.max = None

  def add(self, col: Column) -> None:
    if self.elementwise:
      x = rows_matrix(col, self.where)
    else:
      x = np.asarray(col.values, dtype=np.float64)
    if not x.size:
      return
    n = np.float64(x.shape[0]) + np.zeros(x.shape[1:])
    mean = x.mean(axis=0)
    part = (n, mean, ((x - mean)**2).sum(axis=0), x.min(axis=0), x.max(axis=0))
    self._merge(*part)

  def _merge(self, n, mean, m2, lo, hi) -> None:
    if self.count is None:
      self.count, self.mean, self.m2, self.min, self.max = n, mean, m2, lo, hi
      return
    if np.shape(n) != np.shape(self.count):
      raise ColumnTypeError(
          f'{self.where} (elementwise=True): rows of length '
          f'{np.shape(self.count)} and {np.shape(n)} in one column; every row '
          'must have the same length.')
    total = self.count + n
    delta = mean - self.mean
    self.mean = self.mean + delta * (n / total)
    self.m2 = self.m2 + m2 + delta**2 * self.count * n / total
    self.count = total
    self.min, self.max = np.minimum(self.min, lo), np.maximum(self.max, hi)

  def merge(self, other: 'MomentsAccumulator') -> None:
    if other.count is not None:
      self._merge(other.count, other.mean, other.m2, other.min, other.max)

  def result(self) -> dict:
    if self.count is None:
      return {'count': 0, 'mean': 0.0, 'var': 0.0, 'min': 0.0, 'max': 0.0}
    return {
        'count': np.asarray(self.count).astype(np.int64).tolist(),
        'mean': np.asarray(self.mean).tolist(),
        'var': np.asarray(self.m2 / self.count).tolist(),
        'min': np.asarray(self.min).tolist(),
        'max': np.asarray(self.max).tolist(),
    }


# -- quantiles -----------------------------------------------------------------


class QuantileSketch:
  """Bucket boundaries from a mergeable weighted sample.

  Exact while the column has at most ``capacity`` values; beyond that it
  keeps ``capacity`` weighted points (rank error about n/capacity per
  compression). Boundary i is the smallest value whose rank exceeds
  ``i * n / num_buckets``, the rule TensorFlow Transform's bucketize follows.
  """
  def __init__(self, num_buckets: int, capacity: int = _SKETCH_CAPACITY):
    self.k = num_buckets
    self.cap = capacity
    self.values: list = []  # unsorted parts, weight 1 each
    self.weighted = (np.empty(0), np.empty(0))  # compressed (sorted values, weights)
    self.pending = 0

  def add(self, col: Column) -> None:
    self.add_values(np.asarray(col.values, dtype=np.float64))

  def add_values(self, x: np.ndarray) -> None:
    x = x[~np.isnan(x)]
    if x.size:
      self.values.append(x)
      self.pending += x.size
      if self.pending + len(self.weighted[0]) > 2 * self.cap:
        self._compress()

  def merge(self, other: 'QuantileSketch') -> None:
    self.values.extend(other.values)
    self.pending += other.pending
    if len(other.weighted[0]):
      if len(self.weighted[0]):
        v = np.concatenate([self.weighted[0], other.weighted[0]])
        w = np.concatenate([self.weighted[1], other.weighted[1]])
        order = np.argsort(v, kind='stable')
        self.weighted = (v[order], w[order])
      else:
        self.weighted = other.weighted
    if self.pending + len(self.weighted[0]) > 2 * self.cap:
      self._compress()

  def _sorted(self):
    v = np.concatenate([self.weighted[0], *self.values])
    w = np.concatenate([self.weighted[1], np.ones(self.pending)])
    order = np.argsort(v, kind='stable')
    return v[order], w[order]

  def _compress(self) -> None:
    v, w = self._sorted()
    cum = np.cumsum(w)
    targets = (np.arange(self.cap) + 0.5) * (cum[-1] / self.cap)
    idx = np.minimum(np.searchsorted(cum, targets), len(v) - 1)
    self.weighted = (v[idx], np.full(self.cap, cum[-1] / self.cap))
    self.values, self.pending = [], 0

  def result(self) -> list:
    if not len(self.weighted[0]):  # every value weighs 1: select, not sort
      v = np.concatenate(self.values) if self.values else np.empty(0)
      if not len(v):
        return []
      idx = self._boundary_index(np.arange(1, len(v) + 1, dtype=np.float64))
      return np.partition(v, idx)[idx].tolist()
    v, w = self._sorted()
    return v[self._boundary_index(np.cumsum(w))].tolist()

  def _boundary_index(self, cum: np.ndarray) -> np.ndarray:
    """Positions, in sorted order, of the boundaries of values whose
    cumulative weights are ``cum``."""
    ranks = np.arange(1, self.k) * (cum[-1] / self.k)
    return np.minimum(np.searchsorted(cum, ranks, side='right'), len(cum) - 1)


class QuantilesCombineFn(beam.CombineFn):
  """The quantile sketch as a Beam combiner over arrays of values."""
  def __init__(self, num_buckets: int, capacity: int = _SKETCH_CAPACITY):
    self._k, self._cap = num_buckets, capacity

  def create_accumulator(self):
    return QuantileSketch(self._k, self._cap)

  def add_input(self, acc, values):
    acc.add_values(np.asarray(values, dtype=np.float64))
    return acc

  def merge_accumulators(self, accs):
    accs = iter(accs)
    out = next(accs)
    for a in accs:
      out.merge(a)
    return out

  def extract_output(self, acc):
    return acc.result()


# -- token counts --------------------------------------------------------------


def _token_counts(col: Column) -> dict:
  if not len(col.values):
    return {}
  counts = pc.value_counts(col.values)
  return dict(zip(counts.field('values').to_pylist(),
                  counts.field('counts').to_pylist()))


def _add_counts(into: dict, counts: dict) -> None:
  if not into:
    into.update(counts)
    return
  get = into.get
  for t, c in counts.items():
    into[t] = get(t, 0) + c


def _order_key(item):
  return (item[1], item[0])


class TokenCounts:
  """Count of each token; the result lists (token, count) by decreasing
  count, ties by decreasing token (TensorFlow Transform's order)."""
  def __init__(self, top_k: Optional[int] = None,
               frequency_threshold: Optional[int] = None):
    self.top_k = top_k
    self.threshold = frequency_threshold
    self.counts: dict = {}

  def add(self, col: Column) -> None:
    _add_counts(self.counts, _token_counts(col))

  def merge(self, other: 'TokenCounts') -> None:
    _add_counts(self.counts, other.counts)

  def result(self) -> list:
    items = self.counts.items()
    if self.threshold is not None:
      items = [kv for kv in items if kv[1] >= self.threshold]
    if self.top_k is not None:
      return heapq.nlargest(self.top_k, items, key=_order_key)
    return sorted(items, key=_order_key, reverse=True)


class DocumentFrequency:
  """Number of rows (documents) each index occurs in; key -1 holds the
  number of documents."""
  def __init__(self):
    self.df: dict = {}
    self.docs = 0

  def add(self, col: Column) -> None:
    idx = np.asarray(col.values, dtype=np.int64)
    self.docs += len(col)
    if not idx.size:
      return
    _, distinct, _ = row_unique(idx, col.lengths())
    uniq, counts = np.unique(distinct, return_counts=True)
    _add_counts(self.df, dict(zip(uniq.tolist(), counts.tolist())))

  def merge(self, other: 'DocumentFrequency') -> None:
    _add_counts(self.df, other.df)
    self.docs += other.docs

  def result(self) -> dict:
    out = dict(self.df)
    out[-1] = self.docs
    return out


def _tukey(elementwise: bool = False, where: str = ''):
  from ._gaussian import TukeyAccumulator
  return _TukeyColumns(TukeyAccumulator(elementwise=elementwise), elementwise,
                       where)


class _TukeyColumns:
  """Feeds a block's column to the Tukey HH accumulator (``_gaussian``)."""
  def __init__(self, acc, elementwise: bool, where: str):
    self.acc, self.elementwise, self.where = acc, elementwise, where

  def add(self, col: Column) -> None:
    if self.elementwise:
      self.acc.add(rows_matrix(col, self.where))
    elif len(col.values):
      lengths = None if col.offsets is None else col.lengths()
      self.acc.add(np.asarray(col.values, dtype=np.float64), row_lengths=lengths)

  def merge(self, other: '_TukeyColumns') -> None:
    self.acc.merge(other.acc)

  def result(self):
    return self.acc.result()


_ACCUMULATORS = {
    MOMENTS: MomentsAccumulator,
    QUANTILES: QuantileSketch,
    VOCAB: TokenCounts,
    WORD_COUNT: TokenCounts,
    DF: DocumentFrequency,
    TUKEY: _tukey,
}


class StageStatsFn(beam.CombineFn):
  """Blocks -> ``{analyzer key: result}`` for all analyzers of a stage."""
  def __init__(self, analyzers: list[Analyzer]):
    self._analyzers = analyzers

  def create_accumulator(self) -> dict:
    return {a.key: a.accumulator() for a in self._analyzers}

  def add_input(self, acc: dict, block) -> dict:
    for a in self._analyzers:
      acc[a.key].add(block.column(a.column, a.reader))
    return acc

  def merge_accumulators(self, accs) -> dict:
    accs = iter(accs)
    out = next(accs)
    for acc in accs:
      for key, value in acc.items():
        out[key].merge(value)
    return out

  def extract_output(self, acc: dict) -> dict[str, Any]:
    return {key: value.result() for key, value in acc.items()}
