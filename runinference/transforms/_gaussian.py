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

__all__ = ['TukeyAccumulator', 'gaussianize', 'DEFAULT_MAX_BUFFER', 'tft_batch_rows']

DEFAULT_MAX_BUFFER = 1 << 20  # values held exactly in 'exact' mode (8 MiB)
_MIN_L_KURTOSIS = 0.1226017  # L-kurtosis of a Gaussian: below it hl = hr = 0
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
    loc, scale, hl, hr = _tukey_parameters(counts, sums)
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


def _tukey_parameters(counts: np.ndarray, sums: np.ndarray) -> tuple[np.ndarray, ...]:
  f32 = np.float32
  with np.errstate(divide='ignore', invalid='ignore'):
    l = np.where(counts > 0, sums / np.where(counts > 0, counts, 1.0), 0.0).astype(f32)
  l1, l2, l3, l4 = l
  valid_scale = l2 > 0
  valid_kurtosis = valid_scale & (counts[3] > 0)
  tau3 = np.true_divide(l3, l2, where=valid_kurtosis, out=np.zeros_like(l3))
  tau4 = np.true_divide(l4, l2, where=valid_kurtosis, out=np.zeros_like(l4))
  h = np.apply_along_axis(_compute_tukey_hh_params, 0, np.stack((tau3, tau4)))
  hh_l_mean, hh_l_scale = _tukey_hh_l_mean_and_scale(h)
  scale = np.true_divide(l2, hh_l_scale, where=valid_scale, out=np.ones_like(l2))
  loc = l1 - scale * hh_l_mean
  return loc.astype(f32), scale.astype(f32), h[0].astype(f32), h[1].astype(f32)


def _tukey_hh_l_mean_and_scale(h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """``gaussianization.tukey_hh_l_mean_and_scale`` (Headrick & Pant, 2012)."""
  c = 1.0 / np.sqrt(2.0 * np.pi)
  hl, hr = h[0], h[1]
  l_1 = c * (1.0 / (hl - 1.0) + 1.0 / (1.0 - hr))
  l_2 = c * ((np.sqrt(2.0 - hl) + np.sqrt(2.0 - hr) - hl * np.sqrt(2.0 - hl)
              - hr * np.sqrt(2 - hr))
             / ((hl - 1.0) * (hr - 1.0) * np.sqrt((hl - 2.0) * (hr - 2.0))))
  return l_1.astype(h.dtype), l_2.astype(h.dtype)


def _tukey_hh_l_skewness_and_kurtosis(h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """``gaussianization._tukey_hh_l_skewness_and_kurtosis``."""
  def skew_num(h1, h2):
    return 12 * np.sqrt(2.0 - h1) * (h2 - 2.0) * (h2 - 1.0) * np.arctan(
        1.0 / np.sqrt(2.0 - h1))
  den_part = lambda v: v * np.sqrt(2 - v) - np.sqrt(2 - v)  # noqa: E731
  hl, hr = h[0], h[1]
  skew = (skew_num(hl, hr) - np.pi * (hl - hr) * (hl - 2.0) * (hr - 2.0)
          - skew_num(hr, hl)) / (
              2 * np.pi * np.sqrt((hl - 2.0) * (hr - 2.0))
              * (den_part(hl) + den_part(hr)))
  k1 = hr * np.sqrt((hl - 4.0) * (hl - 2.0) * (hl - 1.0) * (hr - 2.0)) - 2.0 * np.sqrt(
      (hl - 4.0) * (hl - 1.0))
  k2 = hl * (hl - 3.0) * np.sqrt((hl - 4.0) * (hl - 1.0)) + np.sqrt(
      (hl - 4.0) * (hl - 2.0) * (hl - 1.0) * (hr - 2.0))
  k3 = (30.0 * (hl - 1.0) * np.sqrt((hl - 4.0) * (hl - 2.0) * (hr - 2.0) / (hl - 1.0))
        * (hr - 1.0) * np.arctan(np.sqrt(1.0 + 2.0 / (hl - 4.0))))
  k4 = (30.0 * (hl - 2) * np.sqrt((hl - 4.0) * (hl - 1.0)) * (hl - 1.0)
        * np.arctan(np.sqrt(1.0 + 2.0 / (hr - 4.0))))
  kden = (np.pi * np.sqrt((4.0 - hl) * (2.0 - hl) * (1.0 - hl))
          * (den_part(hl) + den_part(hr)))
  kurt = (6.0 * np.pi * (k1 - k2) + k3 + k4) / kden
  return skew.astype(h.dtype), kurt.astype(h.dtype)


def _binary_search(error_fn, low: Any, high: Any) -> tuple[Any, Any]:
  """``gaussianization._binary_search``: at most 11 bisections."""
  for it in range(1, 12):
    mid = (low + high) / 2.0
    err = error_fn(mid)
    low, high = (mid, high) if err < 0.0 else (low, mid)
    if it > 10 or np.abs(err) < 1e-6 or high - low < 1e-6:
      break
  return low, high


def _params_to_errors(h, delta_h, target: np.ndarray) -> np.ndarray:
  params = np.array([h - delta_h, h], dtype=target.dtype)
  errors = np.array(_tukey_hh_l_skewness_and_kurtosis(params), dtype=target.dtype)
  return errors - target


def _compute_tukey_hh_params(tau: np.ndarray) -> np.ndarray:
  """``gaussianization.compute_tukey_hh_params``, step for step: [hl, hr] for
  the (L-skewness, L-kurtosis) pair ``tau``."""
  tau = np.array(tau)  # TFT edits its argument in place
  dtype = tau.dtype
  result = np.zeros_like(tau)
  if tau[1] < _MIN_L_KURTOSIS:
    return result
  swap = tau[0] < 0.0
  if swap:
    tau[0] = -tau[0]
  tau[1] = np.minimum(tau[1], 1.0 - 1.0e-5)
  initial_h = 3.0 - 1.0 / np.cos(np.pi / 15.0 * (tau[1] - 6.0))
  search = np.array([initial_h, 0.0], dtype=dtype)
  lo = np.array([initial_h, 0.0], dtype=dtype)
  hi = np.array([1.0 - 1.0e-7, initial_h], dtype=dtype)
  previous = np.zeros_like(search)
  for _ in range(20):
    err_skew = lambda v: _params_to_errors(search[0], v, tau)[0]  # noqa: E731
    if err_skew(hi[1]) > 0.0:
      _, high_d = _binary_search(err_skew, lo[1], hi[1])
      search[1] = hi[1] = high_d  # the new delta is an upper bound
      found = True
    else:
      search[1] = lo[1] = hi[1]  # no solution: a lower bound
      found = False
    err_kurt = lambda v: _params_to_errors(v, search[1], tau)[1]  # noqa: E731
    low_h, high_h = _binary_search(err_kurt, lo[0], hi[0])
    if not found:  # repeat the first two steps
      search[0] = lo[0] = hi[1] = low_h
    else:
      search[0] = hi[0] = high_h
      err_skew = lambda v: _params_to_errors(search[0], v, tau)[0]  # noqa: E731
      low_d, _ = _binary_search(err_skew, lo[1], hi[1])
      search[1] = lo[1] = low_d
      err_kurt = lambda v: _params_to_errors(v, search[1], tau)[1]  # noqa: E731
      low_h, _ = _binary_search(err_kurt, lo[0], hi[0])
      search[0] = lo[0] = low_h
    err = _params_to_errors(search[0], search[1], tau)
    delta = search - previous
    previous = search.copy()
    if np.all(np.abs(err) < 1e-6) or np.all(np.abs(delta) < 1e-6):
      break
  result[0] = search[0] - search[1]
  result[1] = search[0]
  return result[::-1].copy() if swap else result


def _lambert_w(x: np.ndarray) -> np.ndarray:
  """Principal branch of W for x >= 0 (``gaussianization.lambert_w``'s start
  and 8 Newton steps; from e up the steps solve w + log(w) = log(x) instead,
  which cannot overflow)."""
  w = np.empty_like(x)
  big = x >= np.e
  lx = np.log(x[big])
  wb = lx + (1.0 / lx - 1.0) * np.log(lx)
  xs = x[~big]
  s = (np.e - 1.0) / (np.e * np.e - 1.0)
  ws = np.where(xs < 1.0 / np.e, xs, s * xs + (1.0 - s) / np.e)
  for _ in range(8):
    wb -= (wb + np.log(wb) - lx) * wb / (wb + 1.0)
    ew = np.exp(ws)
    ws -= (ws * ew - xs) / (ew + ws * ew)
  w[big], w[~big] = wb, ws
  return w


def gaussianize(x: Any, params: dict) -> np.ndarray:
  """``mappers._scale_to_gaussian_internal`` with the ``TukeyAccumulator.result()``
  parameters: float32 of x's shape; elementwise parameters (k positions)
  broadcast over the last axis of x (rows, k)."""
  f32 = np.float32
  x = np.asarray(x, dtype=f32)
  loc, scale, hl, hr, var = (np.asarray(params[k], dtype=f32)
                             for k in ('location', 'scale', 'hl', 'hr', 'var'))
  long_tailed = (hl > 0) | (hr > 0)
  den = np.where(long_tailed, scale, np.sqrt(var))
  num = x - loc
  with np.errstate(divide='ignore', invalid='ignore'):
    scaled = np.where(den != 0, num / np.where(den != 0, den, f32(1)), num)
  neg = scaled < 0
  a, h = np.abs(scaled).astype(np.float64), np.where(neg, hl, hr).astype(np.float64)
  hx2 = h * a * a
  tail = hx2 >= 1.0e-7  # TFT keeps x itself below (error < 1e-14); NaN stays
  a[tail] = np.sqrt(_lambert_w(hx2[tail]) / h[tail])
  return np.where(neg, -a, a).astype(f32)
