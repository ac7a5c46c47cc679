"""Full-pass statistics with Beam combiners, one branch per analyzer.

A stage's rows go through ``_ExtractPartials``, which buffers a few thousand
rows at a time and emits small partial aggregates per analyzer (moments,
value arrays for quantiles, token counts) on one tagged output each; Beam
combiners (``CombineGlobally`` / ``CombinePerKey``) finish them. No step holds
all rows: the largest state is a vocabulary (the artifact itself) or the
bounded quantile sketch.
"""
from __future__ import annotations

import collections
import heapq
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import apache_beam as beam
import numpy as np
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.timestamp import MIN_TIMESTAMP
from apache_beam.utils.windowed_value import WindowedValue

from ._errors import ColumnTypeError, MissingColumnError

MOMENTS, QUANTILES, VOCAB, DF, WORD_COUNT = (
    'moments', 'quantiles', 'vocab', 'df', 'word_count')
_BATCH_ROWS = 4096
# Values kept exactly by the quantile sketch before it starts compressing.
_SKETCH_CAPACITY = 200_000


@dataclass
class Analyzer:
  """One statistic of one column, as a transform asks for it.

  ``prepare`` turns the column's raw value into the array the statistic is
  computed on (and raises a clear error for a bad value).
  """
  key: str
  kind: str
  column: str
  transform: str
  prepare: Callable[[Any], np.ndarray]
  params: dict = field(default_factory=dict)


def column_value(row: dict, column: str, transform: str) -> Any:
  try:
    return row[column]
  except KeyError:
    raise MissingColumnError(
        f'{transform} reads column {column!r}, which this row lacks (its '
        f'columns: {sorted(row)}). Check the `columns` of the transform or '
        'add the column to every row.') from None


class _ExtractPartials(beam.DoFn):
  """Rows -> per-analyzer partial aggregates, one tagged output per analyzer."""
  def __init__(self, analyzers: list[Analyzer], skip_bad_rows: bool,
               as_dict: Callable[[Any], dict]):
    self._analyzers = analyzers
    self._skip_bad_rows = skip_bad_rows
    self._as_dict = as_dict

  def start_bundle(self):
    self._rows = []

  def process(self, element):
    row = self._as_dict(element)
    try:
      values = [column_value(row, a.column, a.transform) for a in self._analyzers]
    except Exception:  # pylint: disable=broad-except
      if self._skip_bad_rows:  # reported once, by the apply step
        return
      raise
    self._rows.append(values)
    if len(self._rows) >= _BATCH_ROWS:
      yield from self._flush(windowed=False)

  def finish_bundle(self):
    yield from self._flush(windowed=True)

  def _prepare(self, k: int, a: Analyzer, bad: set):
    """The k-th column of the buffered rows, prepared for ``a``: one array
    (scalar numbers, the common case) or one array per row."""
    values = [r[k] for r in self._rows]
    if (a.kind in (MOMENTS, QUANTILES) and not a.params.get('elementwise') and
        all(type(v) in (float, int) for v in values)):
      return np.array(values, dtype=np.float32)
    out = []
    for j, v in enumerate(values):
      try:
        out.append(a.prepare(v))
      except Exception:  # pylint: disable=broad-except
        if not self._skip_bad_rows:
          raise
        bad.add(j)
        out.append(None)
    return out

  def _flush(self, windowed: bool):
    if not self._rows:
      return
    bad: set = set()
    prepared = [self._prepare(k, a, bad) for k, a in enumerate(self._analyzers)]
    for a, arrays in zip(self._analyzers, prepared):
      if isinstance(arrays, np.ndarray):
        if bad:
          keep = np.ones(len(arrays), dtype=bool)
          keep[list(bad)] = False
          arrays = arrays[keep]
        arrays = [arrays]
      elif bad:
        arrays = [x for j, x in enumerate(arrays) if j not in bad]
      for value in _partials(a, arrays):
        if windowed:
          value = WindowedValue(value, MIN_TIMESTAMP, (GlobalWindow(), ))
        yield beam.pvalue.TaggedOutput(a.key, value)
    self._rows = []


def _partials(a: Analyzer, arrays: list[np.ndarray]):
  if not arrays:
    return
  if a.kind == MOMENTS:
    if a.params.get('elementwise'):
      try:
        x = np.stack(arrays).astype(np.float64)
      except ValueError:
        raise ColumnTypeError(
            f'{a.transform}(elementwise=True) needs every row of column '
            f'{a.column!r} to have the same length, got lengths '
            f'{sorted({len(v) for v in arrays})}.') from None
    else:
      x = np.concatenate(arrays).astype(np.float64)
    if x.size:
      yield _moments_of(x)
  elif a.kind == QUANTILES:
    x = np.concatenate(arrays).astype(np.float64)
    yield x[~np.isnan(x)]
  elif a.kind in (VOCAB, WORD_COUNT):
    counts = collections.Counter()
    for arr in arrays:
      counts.update(arr.tolist())
    yield from counts.items()
  elif a.kind == DF:
    counts = collections.Counter()
    for arr in arrays:
      counts.update(np.unique(arr).tolist())
    counts[-1] = len(arrays)  # -1 carries the number of documents
    yield from counts.items()
  else:  # pragma: no cover - programming error
    raise ValueError(f'unknown analyzer kind {a.kind}')


# -- moments -------------------------------------------------------------------


@dataclass
class Moments:
  count: Any
  mean: Any
  m2: Any
  min: Any
  max: Any


def _moments_of(x: np.ndarray) -> Moments:
  finite = ~np.isnan(x)
  n = finite.sum(axis=0).astype(np.float64)
  with np.errstate(invalid='ignore', divide='ignore'):
    mean = np.where(n > 0, np.nansum(x, axis=0) / np.maximum(n, 1), 0.0)
    m2 = np.nansum((x - mean)**2, axis=0)
  lo = np.where(n > 0, np.nanmin(np.where(finite, x, np.inf), axis=0), np.inf)
  hi = np.where(n > 0, np.nanmax(np.where(finite, x, -np.inf), axis=0), -np.inf)
  return Moments(n, mean, m2, lo, hi)


def _merge_moments(a: Moments, b: Moments) -> Moments:
  n = a.count + b.count
  with np.errstate(invalid='ignore', divide='ignore'):
    delta = b.mean - a.mean
    frac = np.where(n > 0, b.count / np.maximum(n, 1), 0.0)
    mean = a.mean + delta * frac
    m2 = a.m2 + b.m2 + delta**2 * a.count * frac
  return Moments(n, mean, m2, np.minimum(a.min, b.min), np.maximum(a.max, b.max))


class MomentsCombineFn(beam.CombineFn):
  """Count, mean, population variance, min and max (Chan's parallel merge)."""
  def create_accumulator(self):
    return None

  def add_input(self, acc, partial):
    return partial if acc is None else _merge_moments(acc, partial)

  def merge_accumulators(self, accs):
    out = None
    for a in accs:
      if a is not None:
        out = a if out is None else _merge_moments(out, a)
    return out

  def extract_output(self, acc):
    if acc is None:
      return {'count': 0, 'mean': 0.0, 'var': 0.0, 'min': 0.0, 'max': 0.0}
    n = np.maximum(acc.count, 1)
    empty = acc.count == 0
    return {
        'count': _plain(acc.count.astype(np.int64)),
        'mean': _plain(acc.mean),
        'var': _plain(acc.m2 / n),
        'min': _plain(np.where(empty, 0.0, acc.min)),
        'max': _plain(np.where(empty, 0.0, acc.max)),
    }


def _plain(x):
  """numpy scalar/array -> float/int or list of them (JSON-ready)."""
  arr = np.asarray(x)
  return arr.tolist()


# -- quantiles -----------------------------------------------------------------


class QuantilesCombineFn(beam.CombineFn):
  """Bucket boundaries from a mergeable weighted sketch.

  Exact while the column has at most ``capacity`` values; beyond that the
  sketch keeps ``capacity`` weighted points (rank error about n/capacity per
  compression). Boundary i is the smallest value whose rank exceeds
  ``i * n / num_buckets`` — the rule TensorFlow Transform's bucketize follows.
  """
  def __init__(self, num_buckets: int, capacity: int = _SKETCH_CAPACITY):
    self._k = num_buckets
    self._cap = capacity

  def create_accumulator(self):
    return (np.empty(0), np.empty(0))

  def add_input(self, acc, values):
    return self.merge_accumulators([acc, (values, np.ones(len(values)))])

  def merge_accumulators(self, accs):
    accs = list(accs)
    v = np.concatenate([a[0] for a in accs])
    w = np.concatenate([a[1] for a in accs])
    order = np.argsort(v, kind='stable')
    v, w = v[order], w[order]
    if len(v) > 2 * self._cap:
      v, w = self._compress(v, w)
    return (v, w)

  def _compress(self, v, w):
    cum = np.cumsum(w)
    total = cum[-1]
    targets = (np.arange(self._cap) + 0.5) * (total / self._cap)
    idx = np.minimum(np.searchsorted(cum, targets), len(v) - 1)
    return v[idx], np.full(self._cap, total / self._cap)

  def extract_output(self, acc):
    v, w = acc
    if not len(v):
      return []
    cum = np.cumsum(w)
    total = cum[-1]
    ranks = np.arange(1, self._k) * (total / self._k)
    idx = np.minimum(np.searchsorted(cum, ranks, side='right'), len(v) - 1)
    return v[idx].tolist()


# -- vocabularies --------------------------------------------------------------


def _order_key(item):
  token, count = item
  return (count, token)


class TopTokensCombineFn(beam.CombineFn):
  """(token, count) pairs -> tokens by decreasing count, ties by decreasing
  token (TensorFlow Transform's order); the ``top_k`` first when given."""
  def __init__(self, top_k: Optional[int]):
    self._k = top_k

  def create_accumulator(self):
    return []

  def _prune(self, items):
    if self._k is not None and len(items) > 2 * self._k:
      return heapq.nlargest(self._k, items, key=_order_key)
    return items

  def add_input(self, acc, item):
    acc.append(item)
    return self._prune(acc)

  def merge_accumulators(self, accs):
    out = []
    for a in accs:
      out.extend(a)
    return self._prune(out)

  def extract_output(self, acc):
    items = sorted(acc, key=_order_key, reverse=True)
    return items if self._k is None else items[:self._k]


class ComputeStats(beam.PTransform):
  """Rows -> one ``{analyzer key: result}`` dict (a singleton PCollection)."""
  def __init__(self, analyzers: list[Analyzer], skip_bad_rows: bool,
               as_dict: Callable[[Any], dict]):
    super().__init__()
    self._analyzers = analyzers
    self._skip = skip_bad_rows
    self._as_dict = as_dict

  def expand(self, rows):
    keys = [a.key for a in self._analyzers]
    partials = rows | 'Partials' >> beam.ParDo(
        _ExtractPartials(self._analyzers, self._skip,
                         self._as_dict)).with_outputs(*keys)
    results = [
        partials[a.key] | f'Reduce_{a.key}' >> _Reduce(a)
        for a in self._analyzers
    ]
    return (
        results
        | 'AllStats' >> beam.Flatten()
        | 'ToDict' >> beam.combiners.ToDict())


class _Reduce(beam.PTransform):
  """One analyzer's partials -> (key, result)."""
  def __init__(self, analyzer: Analyzer):
    super().__init__()
    self._a = analyzer

  def expand(self, partials):
    a, key = self._a, self._a.key
    if a.kind == MOMENTS:
      out = partials | 'Moments' >> beam.CombineGlobally(MomentsCombineFn())
    elif a.kind == QUANTILES:
      out = partials | 'Quantiles' >> beam.CombineGlobally(
          QuantilesCombineFn(a.params['num_buckets']))
    elif a.kind in (VOCAB, WORD_COUNT):
      counts = partials | 'CountPerToken' >> beam.CombinePerKey(sum)
      threshold = a.params.get('frequency_threshold')
      if threshold is not None:
        counts |= 'Threshold' >> beam.Filter(lambda kv, t: kv[1] >= t, threshold)
      top_k = a.params.get('top_k') if a.kind == VOCAB else None
      out = counts | 'Order' >> beam.CombineGlobally(TopTokensCombineFn(top_k))
    elif a.kind == DF:
      out = (
          partials
          | 'DocsPerIndex' >> beam.CombinePerKey(sum)
          | 'DfDict' >> beam.combiners.ToDict())
    else:  # pragma: no cover
      raise ValueError(a.kind)
    return out | 'Key' >> beam.Map(lambda r, k: (k, r), key)
