"""``tft.scale_to_gaussian`` in pure numpy: Tukey HH parameters from L-moments.

TensorFlow Transform's ``mappers.scale_to_gaussian``, ported step by step:

1. ``tf_utils.reduce_batch_count_l_moments``: per input batch, the unbiased
   sample L-moments l1..l4 (``_num_terms_and_factors`` weights of the order
   statistics) and C(n, 1..4); ``analyzers._LMomentsCombiner`` merges batches
   by count-weighted averaging (l_k weighted by C(n, k)). ``analyzers.var``:
   the population variance.
2. ``_LMomentsCombiner.extract_output``: ``gaussianization.compute_tukey_hh_params``
   (bisection) turns l3/l2, l4/l2 into hl, hr; scale = l2 / L-scale(hl, hr),
   location = l1 - scale * L-mean(hl, hr).
3. ``mappers._scale_to_gaussian_internal``: (x - location) / scale if hl > 0 or
   hr > 0, else / sqrt(var) (a z-score); a zero divisor leaves x - location;
   then ``gaussianization.inverse_tukey_hh`` (Lambert W, 8 Newton steps).

Batching: TFT's estimate depends on its batch boundaries: L-moments are exact
within a batch only, and Beam's MLTransform feeds TFT adaptive batches of 1, 1,
2, ... up to 1000 rows per bundle (so Beam's own two-row tests get a plain
z-score: no batch holds 4 values). ``TukeyAccumulator`` offers two modes:

* ``batching='tft'`` (default, drop-in): rows are cut in arrival order into
  batches of ``tft_batch_rows(0), tft_batch_rows(1), ...`` rows per accumulator
  (an accumulator plays the part of a Beam bundle; a partial batch is closed by
  ``merge`` and ``result``). Each batch is folded as TFT folds it. ``merge`` is
  associative and commutative (up to float64 rounding); the result depends on
  how rows were split into accumulators, as TFT's depends on bundles and timing.
* ``batching='exact'``: everything held is ONE batch, so up to ``max_buffer``
  values the result is the full-sample estimate (TFT's when it sees a single
  batch) however the data was split or merged; past it the held values are
  folded as one TFT batch and the result depends slightly on where folds fell.

Steps 2 and 3 run in float32 like TFT (Beam feeds it float32); sums and the
Lambert W iteration run in float64 (TFT's float32 sums can put the location an
ulp off, and give a constant column a ~1e-15 var that maps it to noise; here its
var is 0 and it maps to x - location). An empty column gives location 0,
scale 1, hl = hr = 0, var 0: the identity mapping, as in TFT.
"""
from __future__ import annotations

import functools
from typing import Any

import numpy as np

from runinference.exceptions import ConfigurationError, InvalidInputError

from ._tukey_hh import gaussianize, tukey_parameters

__all__ = ['TukeyAccumulator', 'gaussianize', 'DEFAULT_MAX_BUFFER', 'tft_batch_rows']

DEFAULT_MAX_BUFFER = 1 << 20  # values held exactly in 'exact' mode (8 MiB)
_CONSOLIDATE = 64  # pending arrays concatenated past this many


def tft_batch_rows(index: int) -> int:
  """Rows in TFT's ``index``-th batch of a bundle under Beam's MLTransform:
  ``BatchElements(min_batch_size=1, max_batch_size=1000)`` starts 1, 1, 2 and
  then at most doubles (timing-driven; doubling is the deterministic stand-in)."""
  return 1 if index < 2 else min(1 << (index - 1), 1000)


@functools.lru_cache(maxsize=16)
def _cached_factors(n: int) -> np.ndarray:
  return _factors(n)


def _factors(n: int) -> np.ndarray:
  """``tf_utils._num_terms_and_factors``: (4, n) weights of the order statistics."""
  up = np.arange(n, dtype=np.float64)
  down = n - 1.0 - up
  c2, c3, c4 = _counts(n)[1:]
  f = np.empty((4, n))
  f[0] = 1.0 / max(n, 1)
  f[1] = (up - down) / (2.0 * c2 if n > 1 else 1.0)
  f[2] = (up * (up - 1) - 4.0 * up * down + down * (down - 1)) / (
      6.0 * c3 if n > 2 else 1.0)
  f[3] = (up * (up - 1) * (up - 2) - 9.0 * up * (up - 1) * down
          + 9.0 * up * down * (down - 1) - down * (down - 1) * (down - 2)) / (
              24.0 * c4 if n > 3 else 1.0)
  return f


def _counts(n: int) -> np.ndarray:
  c2 = n * (n - 1) / 2.0
  c3 = c2 * (n - 2) / 3.0
  return np.array([float(n), c2, c3, c3 * (n - 3) / 4.0]).clip(min=0.0)


class TukeyAccumulator:
  """Mergeable statistics for ``scale_to_gaussian`` (see the module docstring).

  ``add(x, row_lengths=None)``: finite values. Whole-column (``elementwise=False``):
  1-D x is one value per row; N-D x has rows on axis 0; ``row_lengths`` splits a
  flat x into ragged rows (list columns). ``elementwise=True``: x is (rows, k).
  Rows only matter to ``batching='tft'``. ``add`` and ``merge`` update in place
  and return ``self`` (``other`` is unchanged). ``max_buffer`` counts values.
  ``result()`` -> dict of plain floats (k-lists if elementwise).
  """

  def __init__(self, elementwise: bool = False, batching: str = 'tft',
               max_buffer: int = DEFAULT_MAX_BUFFER) -> None:
    if batching not in ('tft', 'exact'):
      raise ConfigurationError(f"batching must be 'tft' or 'exact', not {batching!r}")
    self.elementwise = bool(elementwise)
    self.batching = batching
    self.max_buffer = int(max_buffer)
    self.width: int | None = None  # k, once known (elementwise only)
    self.pending: list[np.ndarray] = []  # raw values of the open batch
    self.pending_rows = self.pending_size = 0
    self.batches = 0  # batches folded ('tft' schedule position)
    # Folded batches, (4, *pos): C(n, k) and sum of C(n, k) * l_k; and
    # (3, *pos): count, mean, sum of squared deviations (for var).
    self.counts, self.sums, self.moments = np.zeros(4), np.zeros(4), np.zeros(3)

  def add(self, x: Any, row_lengths: Any = None) -> 'TukeyAccumulator':
    x = np.array(x, dtype=np.float64)  # a copy: callers may reuse buffers
    if self.elementwise:
      if x.ndim != 2 or row_lengths is not None:
        raise InvalidInputError(
            f'elementwise ScaleToGaussian needs (rows, k) values, got shape {x.shape}')
      self._set_width(x.shape[1])
      cum = None
    else:
      if row_lengths is not None:
        lengths = np.asarray(row_lengths, dtype=np.int64).reshape(-1)
        if lengths.sum() != x.size or (lengths < 0).any():
          raise InvalidInputError('row_lengths must split the values exactly')
        cum = np.concatenate([[0], np.cumsum(lengths)])
      else:
        cum = None if x.ndim < 2 else np.arange(x.shape[0] + 1) * (
            x.size // max(x.shape[0], 1))
      x = x.reshape(-1)
    if not np.isfinite(x).all():
      raise InvalidInputError('ScaleToGaussian statistics need finite values')
    if self.batching == 'exact':
      self._hold(x, 0)
      if self.pending_size > self.max_buffer:
        self._fold_pending()
      return self
    rows, r = (x.shape[0] if cum is None else len(cum) - 1), 0
    while r < rows:  # cut rows into the TFT batch schedule
      r2 = min(r + tft_batch_rows(self.batches) - self.pending_rows, rows)
      self._hold(x[r:r2] if cum is None else x[cum[r]:cum[r2]], r2 - r)
      r = r2
      if self.pending_rows >= tft_batch_rows(self.batches):
        self._fold_pending()
    return self

  def merge(self, other: 'TukeyAccumulator') -> 'TukeyAccumulator':
    if (other.elementwise, other.batching) != (self.elementwise, self.batching):
      raise InvalidInputError('cannot merge different kinds of Tukey statistics')
    if other.is_empty():  # runners merge fresh accumulators: a no-op
      return self
    if other.width is not None:
      self._set_width(other.width)
    self.counts = self.counts + other.counts
    self.sums = self.sums + other.sums
    self.moments = _merge_moments(self.moments, other.moments)
    self.batches += other.batches
    if self.batching == 'tft':  # an open batch ends with its bundle
      self._fold_pending()
    self.pending_rows += other.pending_rows
    for values in other.pending:
      self._hold(values, 0)
    if self.batching == 'tft' or self.pending_size > self.max_buffer:
      self._fold_pending()
    return self

  def is_empty(self) -> bool:
    """Whether nothing was ever added (nor merged in)."""
    return (not self.pending and self.pending_rows == 0 and self.batches == 0
            and not np.any(self.moments[0]))

  def _set_width(self, k: int) -> None:
    if self.width is None:
      self.width = k
      # Nothing is folded before the width is known: start from zeros.
      self.counts, self.sums = np.zeros((4, k)), np.zeros((4, k))
      self.moments = np.zeros((3, k))
    elif k != self.width:
      raise InvalidInputError(
          f'elementwise ScaleToGaussian: rows of length {k} after rows of length '
          f'{self.width}')

  def _hold(self, values: np.ndarray, rows: int) -> None:
    self.pending_rows += rows
    if values.size:
      self.pending.append(values)
      self.pending_size += values.size
      if len(self.pending) > _CONSOLIDATE:
        self.pending = [_concat(self.pending)]

  def _fold_pending(self) -> None:
    if self.pending:
      counts, sums, moments = _batch_stats(_concat(self.pending))
      self.counts = self.counts + counts
      self.sums = self.sums + sums
      self.moments = _merge_moments(self.moments, moments)
    if self.pending or self.pending_rows:
      self.batches += 1
    self.pending, self.pending_rows, self.pending_size = [], 0, 0

  def __getstate__(self) -> dict:
    return {**self.__dict__, 'pending': [_concat(self.pending)] if self.pending else []}

  def result(self) -> dict:
    """``{'location', 'scale', 'hl', 'hr', 'var', 'count', 'elementwise'}``."""
    counts, sums, moments = self.counts, self.sums, self.moments
    if self.pending:  # the open batch, folded into copies
      b_counts, b_sums, b_moments = _batch_stats(_concat(self.pending))
      counts, sums = counts + b_counts, sums + b_sums
      moments = _merge_moments(moments, b_moments)
    loc, scale, hl, hr = tukey_parameters(counts, sums)
    var = (moments[2] / np.where(moments[0] > 0, moments[0], 1.0)).astype(np.float32)
    conv = (lambda a: [float(v) for v in a]) if self.width is not None else float
    out = {'location': loc, 'scale': scale, 'hl': hl, 'hr': hr, 'var': var,
           'count': moments[0]}
    return {**{k: conv(v) for k, v in out.items()}, 'elementwise': self.elementwise}


def _concat(arrays: list[np.ndarray]) -> np.ndarray:
  return arrays[0] if len(arrays) == 1 else np.concatenate(arrays)


def _batch_stats(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """One TFT batch: counts C(n, 1..4), C(n, k) * l_k, and (n, mean, M2)."""
  n = values.shape[0]
  s = np.sort(values, axis=0)
  shift = s[:1]  # l2..l4 are shift-invariant; a constant column gives exact 0s
  d = s - shift
  f = _cached_factors(n) if n <= 4096 else _factors(n)
  l = np.tensordot(f, d, axes=(1, 0))  # (4, *pos)
  m2 = np.sum((d - l[0]) ** 2, axis=0)
  l[0] = l[0] + shift[0]
  counts = np.broadcast_to(_counts(n).reshape((4,) + (1,) * (values.ndim - 1)), l.shape)
  return counts.copy(), counts * l, np.stack([np.full_like(m2, n), l[0], m2])


def _merge_moments(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """Chan et al.'s parallel merge of (count, mean, M2)."""
  a, b = np.broadcast_arrays(a, b)
  n = a[0] + b[0]
  safe = np.where(n > 0, n, 1.0)
  delta = b[1] - a[1]
  mean = np.where(b[0] > 0, a[1] + delta * (b[0] / safe), a[1])
  mean = np.where(a[0] > 0, mean, b[1])
  m2 = a[2] + b[2] + delta * delta * (a[0] * b[0] / safe)
  return np.stack([n, mean, m2])
