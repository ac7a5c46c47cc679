"""Classification statistics: the confusion matrix (accuracy, precision,
recall, F1), log loss and Brier score, and the calibration curve.

Predictions are read as: (n, k) class probabilities (k = 2: binary, the
second column is the positive class); (n,) scores in [0, 1] for binary
labels (the class is ``score >= threshold``); (n,) integer classes.
"""
from __future__ import annotations

import numpy as np

from ..exceptions import InvalidInputError
from ._blocks import Block
from ._contract import MetricCombiner

_EPS = np.finfo(np.float64).eps


def class_labels(labels: np.ndarray) -> np.ndarray:
  if labels.dtype == bool:
    return labels.astype(np.int64)
  if not np.issubdtype(labels.dtype, np.number):
    raise InvalidInputError(
        'classification labels must be class indices 0..k-1 (or booleans), '
        f'got {labels.dtype} values such as {labels[:3]!r}.')
  out = labels.astype(np.int64)
  if len(out) and (out.min() < 0 or np.any(out != labels)):
    raise InvalidInputError(
        'classification labels must be class indices 0..k-1, got values '
        f'such as {labels[(out != labels) | (out < 0)][:3]!r}.')
  return out


def predicted_classes(pred: np.ndarray, threshold: float) -> np.ndarray:
  if pred.ndim == 2:
    if pred.shape[1] == 2:
      return (pred[:, 1] >= threshold).astype(np.int64)
    return np.argmax(pred, axis=1)
  if pred.dtype == bool or np.issubdtype(pred.dtype, np.integer):
    return pred.astype(np.int64)
  if len(pred) and (pred.min() < 0 or pred.max() > 1):
    return np.rint(pred).astype(np.int64)  # class indices given as floats
  return (pred >= threshold).astype(np.int64)


def positive_scores(pred: np.ndarray, what: str) -> np.ndarray:
  if pred.ndim == 1:
    return pred.astype(np.float64)
  if pred.shape[1] == 2:
    return pred[:, 1].astype(np.float64)
  raise InvalidInputError(
      f'{what} is for binary classification; got {pred.shape[1]} class '
      'probabilities per example.')


def class_probabilities(pred: np.ndarray, what: str) -> np.ndarray:
  if pred.ndim == 2:
    return pred.astype(np.float64)
  if np.issubdtype(pred.dtype, np.integer) or pred.dtype == bool:
    raise InvalidInputError(
        f'{what} needs predicted probabilities, got class indices.')
  p = pred.astype(np.float64)
  return np.stack([1 - p, p], axis=1)


def _grow(m: np.ndarray, k: int) -> np.ndarray:
  if m.shape[0] >= k:
    return m
  out = np.zeros((k, k))
  out[:m.shape[0], :m.shape[0]] = m
  return out


class ConfusionMatrix(MetricCombiner):
  """Weighted confusion matrix (rows: true class, columns: predicted)."""
  def __init__(self, threshold: float = 0.5):
    self.threshold = threshold

  def key(self):
    return ('confusion', self.threshold)

  def create_accumulator(self):
    return np.zeros((0, 0))

  def add_block(self, acc, block: Block):
    y = class_labels(block.labels)
    p = predicted_classes(block.predictions, self.threshold)
    if not len(y):
      return acc
    k = int(max(y.max(), p.max(), acc.shape[0] - 1)) + 1
    if block.predictions.ndim == 2:
      k = max(k, block.predictions.shape[1])
    counts = np.bincount(y * k + p, weights=block.weights,
                         minlength=k * k).reshape(k, k)
    return _grow(acc, k) + counts

  def merge_accumulators(self, accs):
    k = max(a.shape[0] for a in accs)
    return sum((_grow(a, k) for a in accs), np.zeros((k, k)))

  def extract(self, acc):
    return acc


def _div(a, b):
  return float(a / b) if b else 0.0


def accuracy(m):
  return _div(np.trace(m), m.sum())


def _per_class(m):
  tp = np.diag(m)
  present = (m.sum(axis=0) + m.sum(axis=1)) > 0
  pred, true = m.sum(axis=0), m.sum(axis=1)
  p = np.divide(tp, pred, out=np.zeros_like(tp), where=pred > 0)
  r = np.divide(tp, true, out=np.zeros_like(tp), where=true > 0)
  f = np.divide(2 * p * r, p + r, out=np.zeros_like(tp), where=(p + r) > 0)
  return p[present], r[present], f[present]


def prf(average: str):
  """(precision, recall, f1) of a confusion matrix: ``binary`` (class 1
  positive), ``macro`` (unweighted mean over classes present) or ``micro``."""
  def view(m):
    if average == 'binary':
      if m.shape[0] > 2:
        raise InvalidInputError(
            'binary precision/recall/F1 got more than two classes; use the '
            '_macro or _micro variants.')
      m = _grow(m, 2)
      tp, fp, fn = m[1, 1], m[0, 1], m[1, 0]
    elif average == 'micro':
      tp = np.trace(m)
      fp = fn = m.sum() - tp
    else:
      p, r, f = _per_class(m)
      return tuple(float(v.mean()) if len(v) else 0.0 for v in (p, r, f))
    p, r = _div(tp, tp + fp), _div(tp, tp + fn)
    return p, r, _div(2 * p * r, p + r)
  return view


class ProbabilisticLoss(MetricCombiner):
  """Weighted sums of log loss and Brier score (binary scores or class
  probabilities; probabilities clipped to [eps, 1 - eps] for log loss)."""
  def key(self):
    return ('probloss',)

  def create_accumulator(self):
    return np.zeros(3)  # sum w*logloss, sum w*brier, sum w

  def add_block(self, acc, block: Block):
    y = class_labels(block.labels)
    w = block.weights
    pred = block.predictions
    if pred.ndim == 1 and not (pred.dtype == bool or
                               np.issubdtype(pred.dtype, np.integer)):
      if len(y) and y.max() > 1:
        raise InvalidInputError(
            f'label {int(y.max())} has no predicted probability (binary '
            'scores).')
      p = pred.astype(np.float64)
      p_true = np.clip(np.where(y == 1, p, 1 - p), _EPS, 1 - _EPS)
      acc += (np.dot(w, -np.log(p_true)), np.dot(w, (p - y) ** 2), w.sum())
      return acc
    probs = class_probabilities(pred, 'log loss / Brier score')
    n, k = probs.shape
    if len(y) and y.max() >= k:
      raise InvalidInputError(
          f'label {int(y.max())} has no predicted probability ({k} classes).')
    p_true = np.clip(probs[np.arange(n), y], _EPS, 1 - _EPS)
    if k == 2:
      brier = (probs[:, 1] - y) ** 2
    else:
      onehot = np.zeros_like(probs)
      onehot[np.arange(n), y] = 1
      brier = ((probs - onehot) ** 2).sum(axis=1)
    acc += (np.dot(w, -np.log(p_true)), np.dot(w, brier), w.sum())
    return acc

  def merge_accumulators(self, accs):
    return np.sum(accs, axis=0)

  def extract(self, acc):
    return _div(acc[0], acc[2]), _div(acc[1], acc[2])


class Calibration(MetricCombiner):
  """Reliability curve over ``bins`` equal-width bins of the positive
  score (as scikit-learn's ``calibration_curve(strategy='uniform')``)."""
  scalar = False

  def __init__(self, bins: int = 10):
    self.bins = bins

  def key(self):
    return ('calibration', self.bins)

  def create_accumulator(self):
    return np.zeros((3, self.bins))

  def add_block(self, acc, block: Block):
    s = positive_scores(block.predictions, 'calibration')
    y = class_labels(block.labels)
    edges = np.linspace(0, 1, self.bins + 1)
    ids = np.searchsorted(edges[1:-1], s)
    w = block.weights
    for i, v in enumerate((w * s, w * y, w)):
      acc[i] += np.bincount(ids, weights=v, minlength=self.bins)
    return acc

  def merge_accumulators(self, accs):
    return np.sum(accs, axis=0)

  def extract(self, acc):
    keep = acc[2] > 0
    edges = np.linspace(0, 1, self.bins + 1)
    return {
        'bin_lower': edges[:-1][keep].tolist(),
        'bin_upper': edges[1:][keep].tolist(),
        'mean_predicted': (acc[0][keep] / acc[2][keep]).tolist(),
        'fraction_positive': (acc[1][keep] / acc[2][keep]).tolist(),
        'weight': acc[2][keep].tolist(),
    }
