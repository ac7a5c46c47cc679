"""Every metric of the three presets (plus the macro/micro averages, the
weighted count, the curves and a user-defined metric) recomputed with
scikit-learn per slice, for checking what ``EvaluateModel`` output on a
runner (tests/evaluation/test_pipeline.py on the DirectRunner,
test_dask.py on the Dask runner).

The rows carry integer weights 1..4 so that the metrics scikit-learn cannot
weight (``calibration_curve``) are checked on the rows repeated by weight.
"""
import math

import numpy as np
import pytest
import sklearn.metrics as skm
from sklearn.calibration import calibration_curve

from runinference.evaluation import Bucket, MetricCombiner

TOL = dict(rel=1e-9, abs=1e-9)
K = 3  # classes of the multiclass task
SLICES = [(), 'g', ('g', 'h'), Bucket('a', [0.5])]
AVERAGED = [f'{m}_{avg}' for m in ('precision', 'recall', 'f1')
            for avg in ('macro', 'micro')]


class MaxAbsError(MetricCombiner):
  """A user-defined metric (the combiner contract): the largest |error|."""
  name = 'max_abs_error'

  def create_accumulator(self):
    return 0.0

  def add_block(self, acc, block):
    if not len(block):
      return acc
    return max(acc, float(np.abs(block.labels - block.predictions).max()))

  def merge_accumulators(self, accs):
    return max(accs)

  def extract(self, acc):
    return acc


def metric_specs(task: str) -> list:
  """What ``EvaluateModel(metrics=...)`` is given for ``task``."""
  return {'binary': ['binary', *AVERAGED],
          'multiclass': ['multiclass'],
          'regression': ['regression', MaxAbsError()]}[task]


def make_rows(n: int = 2400, seed: int = 0) -> list:
  """Rows with the label/prediction of each task (``y_<task>``,
  ``p_<task>``), an integer weight ``w``, slice features ``g`` (3 values),
  ``h`` (2) and ``a`` (numeric, bucketed)."""
  rng = np.random.default_rng(seed)
  yb = rng.integers(0, 2, n)
  # A grid of 0.02: ties, and at most 51 distinct scores (curves unthinned).
  pb = np.round(np.clip(0.35 * yb + 0.65 * rng.random(n), 0, 1) * 50) / 50
  ym = rng.integers(0, K, n)
  logits = rng.normal(size=(n, K)) + 1.2 * np.eye(K)[ym]
  pm = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
  yr = rng.normal(5, 3, n)
  pr = yr + rng.normal(0, 1, n)
  return [{'y_binary': int(yb[i]), 'p_binary': float(pb[i]),
           'y_multiclass': int(ym[i]), 'p_multiclass': pm[i].tolist(),
           'y_regression': float(yr[i]), 'p_regression': float(pr[i]),
           'w': int(1 + rng.integers(0, 4)), 'g': 'abc'[i % 3],
           'h': 'xy'[(i // 3) % 2], 'a': float(rng.random())}
          for i in range(n)]


def _mask(rows: list, key: tuple) -> np.ndarray:
  m = np.ones(len(rows), bool)
  for feat, value in key:
    if feat == 'a':
      col = Bucket('a', [0.5]).values(np.array([r['a'] for r in rows]))
    else:
      col = np.array([r[feat] for r in rows])
    m &= col == value
  return m


def expected_slices(rows: list) -> set:
  """The slice keys SLICES give on ``rows``."""
  g = sorted({r['g'] for r in rows})
  h = sorted({r['h'] for r in rows})
  return ({()} | {(('g', v),) for v in g} |
          {(('g', v), ('h', u)) for v in g for u in h} |
          {(('a', b),) for b in Bucket('a', [0.5]).labels()})


def _binary(m, y, p, w):
  yp = (p >= 0.5).astype(int)
  sw = dict(sample_weight=w)
  for name, fn in (('precision', skm.precision_score),
                   ('recall', skm.recall_score), ('f1', skm.f1_score)):
    assert m[name] == pytest.approx(fn(y, yp, zero_division=0, **sw),
                                    **TOL), name
    for avg in ('macro', 'micro'):
      assert m[f'{name}_{avg}'] == pytest.approx(
          fn(y, yp, average=avg, zero_division=0, **sw), **TOL), (name, avg)
  assert m['accuracy'] == pytest.approx(skm.accuracy_score(y, yp, **sw), **TOL)
  assert m['roc_auc'] == pytest.approx(skm.roc_auc_score(y, p, **sw), **TOL)
  assert m['pr_auc'] == pytest.approx(
      skm.average_precision_score(y, p, **sw), **TOL)
  assert m['log_loss'] == pytest.approx(skm.log_loss(y, p, **sw), **TOL)
  assert m['brier_score'] == pytest.approx(
      skm.brier_score_loss(y, p, **sw), **TOL)
  assert np.allclose(m['confusion_matrix'], skm.confusion_matrix(y, yp, **sw))
  reps = w.astype(int)
  true, pred = calibration_curve(np.repeat(y, reps), np.repeat(p, reps),
                                 n_bins=10)
  assert np.allclose(m['calibration_curve']['fraction_positive'], true)
  assert np.allclose(m['calibration_curve']['mean_predicted'], pred)
  fpr, tpr, _ = skm.roc_curve(y, p, drop_intermediate=False, **sw)
  assert np.allclose(m['roc_curve']['fpr'], fpr)
  assert np.allclose(m['roc_curve']['tpr'], tpr)
  prec, rec, _ = skm.precision_recall_curve(y, p, drop_intermediate=False,
                                            **sw)
  assert np.allclose(m['pr_curve']['recall'], rec[::-1])
  assert np.allclose(m['pr_curve']['precision'], prec[::-1])


def _multiclass(m, y, p, w):
  yp = p.argmax(axis=1)
  sw = dict(sample_weight=w)
  labels = sorted(set(y) | set(yp))
  assert m['accuracy'] == pytest.approx(skm.accuracy_score(y, yp, **sw), **TOL)
  for avg in ('macro', 'micro'):
    for name, fn in (('precision', skm.precision_score),
                     ('recall', skm.recall_score), ('f1', skm.f1_score)):
      assert m[f'{name}_{avg}'] == pytest.approx(fn(
          y, yp, average=avg, labels=labels, zero_division=0, **sw),
          **TOL), (name, avg)
  assert m['log_loss'] == pytest.approx(
      skm.log_loss(y, p, labels=list(range(K)), **sw), **TOL)
  assert m['roc_auc_ovr'] == pytest.approx(skm.roc_auc_score(
      y, p, multi_class='ovr', average='macro', **sw), **TOL)
  onehot = np.eye(K)[y]
  present = sorted(set(y))
  assert m['pr_auc_ovr'] == pytest.approx(skm.average_precision_score(
      onehot[:, present], p[:, present], average='macro', **sw), **TOL)
  assert m['brier_score'] == pytest.approx(
      np.average(((p - onehot) ** 2).sum(axis=1), weights=w), **TOL)
  cm = np.asarray(m['confusion_matrix'])
  assert np.allclose(cm, skm.confusion_matrix(
      y, yp, labels=list(range(len(cm))), **sw))


def _regression(m, y, p, w):
  sw = dict(sample_weight=w)
  assert m['mae'] == pytest.approx(skm.mean_absolute_error(y, p, **sw), **TOL)
  assert m['mse'] == pytest.approx(skm.mean_squared_error(y, p, **sw), **TOL)
  assert m['rmse'] == pytest.approx(
      math.sqrt(skm.mean_squared_error(y, p, **sw)), **TOL)
  assert m['r2'] == pytest.approx(skm.r2_score(y, p, **sw), rel=1e-7,
                                  abs=1e-7)
  assert m['mape'] == pytest.approx(
      skm.mean_absolute_percentage_error(y, p, **sw), **TOL)
  assert m['max_abs_error'] == pytest.approx(skm.max_error(y, p), **TOL)


def check_against_sklearn(task: str, rows: list, records) -> None:
  """``records``: one model's ``SliceMetrics`` (or ``(slice, metrics)``
  pairs) for SLICES on ``rows``; each slice's metrics must equal
  scikit-learn's on that slice's rows, weighted by ``w``."""
  got = {}
  for r in records:
    key, metrics = (r.slice, r.metrics) if hasattr(r, 'slice') else r
    got[tuple(tuple(p) for p in key)] = metrics
  assert set(got) == expected_slices(rows)
  y_all = np.array([r[f'y_{task}'] for r in rows])
  p_all = np.array([r[f'p_{task}'] for r in rows])
  w_all = np.array([r['w'] for r in rows], dtype=float)
  check = {'binary': _binary, 'multiclass': _multiclass,
           'regression': _regression}[task]
  for key, m in got.items():
    mask = _mask(rows, key)
    assert mask.sum() > 50, key
    assert m['example_count'] == mask.sum(), key
    assert m['weighted_example_count'] == pytest.approx(w_all[mask].sum())
    try:
      check(m, y_all[mask], p_all[mask], w_all[mask])
    except AssertionError as exc:
      raise AssertionError(f'{task} slice {key}: {exc}') from exc
