"""ROC AUC and PR AUC for binary classification.

Exact while cheap: a slice keeps its (score, label, weight) arrays until it
holds more than ``exact_limit`` examples (default 2,000,000), and the areas
are then computed from the sorted scores exactly as scikit-learn's
``roc_auc_score`` (trapezoids, ties grouped) and ``average_precision_score``
(PR AUC as average precision: the step-wise sum of precision times recall
increments). Past the limit -- and in bootstrap replicates -- the slice
switches to a sketch: weighted positive/negative histograms over
``buckets`` (default 10,000) equal-width bins of [0, 1] (scores outside
are clipped), each bin taken as one threshold; the error is at most the
mass of examples whose scores share a bin with the other class's.
"""
from __future__ import annotations

import numpy as np

from ..exceptions import InvalidInputError
from ._blocks import Block
from ._classification import class_labels, positive_scores
from ._contract import MetricCombiner

EXACT_LIMIT = 2_000_000
BUCKETS = 10_000


CURVE_POINTS = 101


def _thin(*cols):
  """At most CURVE_POINTS points of a curve (first and last kept)."""
  n = len(cols[0])
  if n <= CURVE_POINTS:
    return [c.tolist() for c in cols]
  idx = np.unique(np.linspace(0, n - 1, CURVE_POINTS).astype(np.int64))
  return [c[idx].tolist() for c in cols]


def _curves(pos: np.ndarray, neg: np.ndarray) -> dict:
  tps, fps = np.cumsum(pos), np.cumsum(neg)
  if not len(tps) or tps[-1] <= 0 or fps[-1] <= 0:
    return {'roc_curve': None, 'pr_curve': None}
  fpr, tpr = _thin(np.r_[0, fps] / fps[-1], np.r_[0, tps] / tps[-1])
  denom = tps + fps
  prec = np.divide(tps, denom, out=np.ones_like(tps), where=denom > 0)
  rec, prec = _thin(np.r_[0, tps / tps[-1]], np.r_[1, prec])
  return {'roc_curve': {'fpr': fpr, 'tpr': tpr},
          'pr_curve': {'recall': rec, 'precision': prec}}


def _areas(pos: np.ndarray, neg: np.ndarray) -> tuple:
  """(ROC AUC, average precision) from positive/negative weight per
  threshold, thresholds in decreasing score order."""
  tps, fps = np.cumsum(pos), np.cumsum(neg)
  if not len(tps) or tps[-1] <= 0 or fps[-1] <= 0:
    roc = float('nan')
  else:
    tpr = np.r_[0, tps] / tps[-1]
    fpr = np.r_[0, fps] / fps[-1]
    roc = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))
  if not len(tps) or tps[-1] <= 0:
    return roc, float('nan')
  denom = tps + fps
  precision = np.divide(tps, denom, out=np.zeros_like(tps), where=denom > 0)
  recall = tps / tps[-1]
  ap = float(np.sum(np.diff(np.r_[0, recall]) * precision))
  return roc, ap


class _Ranked(MetricCombiner):
  """Exact from sorted scores up to ``exact_limit`` examples, then a
  histogram of ``buckets`` score bins (always, in bootstrap replicates)."""
  _KIND = ''

  def __init__(self, exact_limit: int = EXACT_LIMIT, buckets: int = BUCKETS):
    self.exact_limit = exact_limit
    self.buckets = buckets

  def key(self):
    return (self._KIND, self.exact_limit, self.buckets)

  def for_bootstrap(self):
    return type(self)(0, self.buckets)

  def _merge_exact(self, accs):
    """Exact accumulators merged (a histogram once past ``exact_limit``)."""
    out = ['exact', [], [], [], 0]
    for a in accs:
      for i in (1, 2, 3):
        out[i].extend(a[i])
      out[4] += a[4]
    return self._to_hist(out) if out[4] > self.exact_limit else out


class Ranking(_Ranked):
  """Accumulator: ``['exact', [scores], [labels], [weights], n]`` or
  ``['hist', positive weights, negative weights]``."""
  _KIND = 'ranking'

  def create_accumulator(self):
    if self.exact_limit <= 0:
      return ['hist', np.zeros(self.buckets), np.zeros(self.buckets)]
    return ['exact', [], [], [], 0]

  def _hist(self, s, y, w):
    ids = np.clip((s * self.buckets).astype(np.int64), 0, self.buckets - 1)
    ids = np.where(np.isnan(s), 0, ids)
    pos = np.bincount(ids, weights=w * (y == 1), minlength=self.buckets)
    neg = np.bincount(ids, weights=w * (y != 1), minlength=self.buckets)
    return pos, neg

  def _to_hist(self, acc):
    if acc[0] == 'hist':
      return acc
    s, y, w = (np.concatenate(a) if a else np.zeros(0) for a in acc[1:4])
    pos, neg = self._hist(s, y, w)
    return ['hist', pos, neg]

  def add_block(self, acc, block: Block):
    s = positive_scores(block.predictions, 'ROC/PR AUC')
    y = class_labels(block.labels)
    if acc[0] == 'exact':
      acc[1].append(s)
      acc[2].append(y)
      acc[3].append(block.weights)
      acc[4] += len(s)
      return self._to_hist(acc) if acc[4] > self.exact_limit else acc
    pos, neg = self._hist(s, y, block.weights)
    acc[1] += pos
    acc[2] += neg
    return acc

  def merge_accumulators(self, accs):
    if all(a[0] == 'exact' for a in accs):
      return self._merge_exact(accs)
    hists = [self._to_hist(a) for a in accs]
    return ['hist', sum(h[1] for h in hists), sum(h[2] for h in hists)]

  def extract(self, acc):
    if acc[0] == 'hist':
      pos, neg = acc[1][::-1], acc[2][::-1]
      roc, ap = _areas(pos, neg)
      return {'roc_auc': roc, 'pr_auc': ap, 'exact': False,
              **_curves(pos, neg)}
    if not acc[4]:
      return {'roc_auc': float('nan'), 'pr_auc': float('nan'), 'exact': True,
              'roc_curve': None, 'pr_curve': None}
    s, y, w = (np.concatenate(a) for a in acc[1:4])
    order = np.argsort(-s, kind='mergesort')
    s, y, w = s[order], y[order], w[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    pos = np.cumsum(w * (y == 1))[last]
    neg = np.cumsum(w * (y != 1))[last]
    pos, neg = np.diff(np.r_[0, pos]), np.diff(np.r_[0, neg])
    roc, ap = _areas(pos, neg)
    return {'roc_auc': roc, 'pr_auc': ap, 'exact': True, **_curves(pos, neg)}


def _exact_areas(s: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple:
  order = np.argsort(-s, kind='mergesort')
  s, y, w = s[order], y[order], w[order]
  last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
  pos = np.cumsum(w * y)[last]
  neg = np.cumsum(w * (1 - y))[last]
  return _areas(np.diff(np.r_[0, pos]), np.diff(np.r_[0, neg]))


class OneVsRest(_Ranked):
  """Multiclass ROC AUC and PR AUC, one class against the rest, macro
  averaged over the classes present in the labels (scikit-learn's
  ``roc_auc_score(multi_class='ovr')`` and ``average_precision_score`` of
  the one-hot labels). Exact up to ``exact_limit`` examples, then a
  histogram per class, as ``Ranking``."""
  _KIND = 'ovr'

  def create_accumulator(self):
    return ['exact', [], [], [], 0] if self.exact_limit > 0 else [
        'hist', None, None]

  def _hist(self, p, y, w, acc):
    k = p.shape[1]
    ids = np.clip((p * self.buckets).astype(np.int64), 0, self.buckets - 1)
    pos = np.zeros((k, self.buckets)) if acc[1] is None else _pad(acc[1], k)
    neg = np.zeros((k, self.buckets)) if acc[2] is None else _pad(acc[2], k)
    for c in range(k):
      hit = y == c
      pos[c] += np.bincount(ids[:, c], weights=w * hit,
                            minlength=self.buckets)
      neg[c] += np.bincount(ids[:, c], weights=w * ~hit,
                            minlength=self.buckets)
    return ['hist', pos, neg]

  def _to_hist(self, acc):
    if acc[0] == 'hist':
      return acc
    out = ['hist', None, None]
    for p, y, w in zip(acc[1], acc[2], acc[3]):
      out = self._hist(p, y, w, out)
    return out

  def add_block(self, acc, block: Block):
    p = block.predictions
    if p.ndim != 2:
      raise InvalidInputError(
          'one-vs-rest AUC needs class probabilities (one vector per '
          'example).')
    y = class_labels(block.labels)
    if acc[0] == 'hist':
      return self._hist(p.astype(np.float64), y, block.weights, acc)
    acc[1].append(p.astype(np.float64))
    acc[2].append(y)
    acc[3].append(block.weights)
    acc[4] += len(y)
    return self._to_hist(acc) if acc[4] > self.exact_limit else acc

  def merge_accumulators(self, accs):
    if all(a[0] == 'exact' for a in accs):
      return self._merge_exact(accs)
    hists = [h for h in (self._to_hist(a) for a in accs) if h[1] is not None]
    if not hists:
      return ['hist', None, None]
    k = max(h[1].shape[0] for h in hists)
    return ['hist', sum(_pad(h[1], k) for h in hists),
            sum(_pad(h[2], k) for h in hists)]

  def extract(self, acc):
    nan = float('nan')
    if acc[0] == 'hist':
      if acc[1] is None:
        return {'roc_auc_ovr': nan, 'pr_auc_ovr': nan}
      areas = [_areas(acc[1][c][::-1], acc[2][c][::-1])
               for c in range(acc[1].shape[0]) if acc[1][c].sum() > 0]
    else:
      if not acc[4]:
        return {'roc_auc_ovr': nan, 'pr_auc_ovr': nan}
      k = max(p.shape[1] for p in acc[1])
      p = np.concatenate([_pad_cols(x, k) for x in acc[1]])
      y, w = np.concatenate(acc[2]), np.concatenate(acc[3])
      areas = [_exact_areas(p[:, c], (y == c).astype(np.float64), w)
               for c in np.unique(y)]
    if not areas:
      return {'roc_auc_ovr': nan, 'pr_auc_ovr': nan}
    return {'roc_auc_ovr': float(np.mean([a[0] for a in areas])),
            'pr_auc_ovr': float(np.mean([a[1] for a in areas]))}


def _pad(m: np.ndarray, k: int) -> np.ndarray:
  return m if m.shape[0] >= k else np.vstack(
      [m, np.zeros((k - m.shape[0], m.shape[1]))])


def _pad_cols(p: np.ndarray, k: int) -> np.ndarray:
  return p if p.shape[1] >= k else np.hstack(
      [p, np.zeros((p.shape[0], k - p.shape[1]))])
