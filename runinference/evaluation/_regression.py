"""Regression statistics in one mergeable accumulator: weighted mean and
sum of squares of the labels (Chan's parallel update, for R²), squared and
absolute errors, and absolute percentage errors (as scikit-learn's MAPE:
``|y - ŷ| / max(|y|, eps)``)."""
from __future__ import annotations

import numpy as np

from ..exceptions import InvalidInputError
from ._blocks import Block
from ._contract import MetricCombiner

_EPS = np.finfo(np.float64).eps


class Regression(MetricCombiner):
  """Accumulator: [W, mean(y), M2(y), sum w e², sum w |e|, sum w |e|/|y|]."""
  def key(self):
    return ('regression',)

  def create_accumulator(self):
    return np.zeros(6)

  def add_block(self, acc, block: Block):
    pred = block.predictions
    if pred.ndim != 1:
      raise InvalidInputError(
          'regression metrics need one predicted value per example, got '
          f'{pred.shape[1]}.')
    try:
      y = block.labels.astype(np.float64)
      e = y - pred.astype(np.float64)
    except (TypeError, ValueError) as exc:
      raise InvalidInputError(
          'regression labels and predictions must be numbers, got labels '
          f'such as {block.labels[:3]!r} and predictions such as '
          f'{pred[:3]!r}.') from exc
    w = block.weights
    wsum = w.sum()
    if wsum <= 0:
      return acc
    mean = np.dot(w, y) / wsum
    m2 = np.dot(w, (y - mean) ** 2)
    ae = np.abs(e)
    part = np.array([wsum, mean, m2, np.dot(w, e * e), np.dot(w, ae),
                     np.dot(w, ae / np.maximum(np.abs(y), _EPS))])
    return _merge(acc, part)

  def merge_accumulators(self, accs):
    out = accs[0].copy()
    for a in accs[1:]:
      out = _merge(out, a)
    return out

  def extract(self, acc):
    w = acc[0]
    if w <= 0:
      nan = float('nan')
      return {'mae': nan, 'mse': nan, 'rmse': nan, 'r2': nan, 'mape': nan}
    mse = acc[3] / w
    r2 = 1 - acc[3] / acc[2] if acc[2] > 0 else (1.0 if acc[3] == 0 else 0.0)
    return {'mae': acc[4] / w, 'mse': mse, 'rmse': float(np.sqrt(mse)),
            'r2': float(r2), 'mape': acc[5] / w}


def _merge(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  if a[0] <= 0:
    return b.copy()
  if b[0] <= 0:
    return a
  w = a[0] + b[0]
  delta = b[1] - a[1]
  out = a + b
  out[0] = w
  out[1] = a[1] + delta * b[0] / w
  out[2] = a[2] + b[2] + delta * delta * a[0] * b[0] / w
  return out


class Counts(MetricCombiner):
  """Example count and weighted example count."""
  def key(self):
    return ('counts',)

  def create_accumulator(self):
    return np.zeros(2)

  def add_block(self, acc, block: Block):
    acc += (len(block), block.weights.sum())
    return acc

  def merge_accumulators(self, accs):
    return np.sum(accs, axis=0)

  def extract(self, acc):
    return acc
