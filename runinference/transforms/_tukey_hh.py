"""Tukey HH math of ``ScaleToGaussian`` (step 2 and 3 of ``_gaussian``'s
docstring): location, scale, hl and hr from merged L-moments, and the inverse
Tukey HH transform that maps values to a Gaussian. Pure numpy."""
from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ['gaussianize', 'tukey_parameters']

_MIN_L_KURTOSIS = 0.1226017  # L-kurtosis of a Gaussian: below it hl = hr = 0


def tukey_parameters(counts: np.ndarray, sums: np.ndarray) -> tuple[np.ndarray, ...]:
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
