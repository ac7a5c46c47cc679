"""The evaluation combiners without a pipeline, against scikit-learn on
random data (binary, multiclass, regression; weighted or not; split into
blocks and merged in random groupings), with hypothesis."""
import math

import numpy as np
import pytest
import sklearn.metrics as skm
from hypothesis import given, settings, strategies as st
from sklearn.calibration import calibration_curve

from runinference.evaluation import (Block, Bucket, MetricCombiner, SliceSpec,
                                     evaluate_blocks)
from runinference.evaluation._combine import MetricsCombineFn
from runinference.evaluation._registry import resolve_metrics
from runinference.exceptions import ConfigurationError, InvalidInputError

TOL = dict(rel=1e-9, abs=1e-9)
cases = settings(max_examples=25, deadline=None)


def _merged(metrics, block, cuts, **kw):
  """Adds ``block`` in pieces to separate accumulators and merges them."""
  fn = MetricsCombineFn(metrics, **kw)
  bounds = [0, *sorted(cuts), len(block)]
  accs = []
  for a, b in zip(bounds[:-1], bounds[1:]):
    acc = fn.create_accumulator()
    accs.append(fn.add_input(acc, block.take(np.arange(a, b))))
  return fn.extract_output(fn.merge_accumulators(accs))['metrics']


def _data(seed, n, weighted, k=2):
  rng = np.random.default_rng(seed)
  y = rng.integers(0, k, n)
  if k == 2:
    p = np.clip(0.35 * y + rng.random(n) * 0.65, 0, 1)
    p = np.round(p, 2)  # ties
  else:
    logits = rng.normal(size=(n, k)) + 1.5 * np.eye(k)[y]
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
  w = rng.random(n) * 3 if weighted else None
  return y, p, w


def _block(y, p, w):
  return Block(y, p, np.ones(len(y)) if w is None else w, {})


@cases
@given(seed=st.integers(0, 2**31), n=st.integers(20, 400),
       weighted=st.booleans(), cuts=st.lists(st.integers(0, 20), max_size=4))
def test_binary_matches_sklearn(seed, n, weighted, cuts):
  y, p, w = _data(seed, n, weighted)
  if len(set(y)) < 2:
    return
  m = _merged(resolve_metrics(['binary', 'precision_macro', 'f1_micro',
                               'weighted_example_count']),
              _block(y, p, w), [c for c in cuts if c <= n])
  yp = (p >= 0.5).astype(int)
  sw = dict(sample_weight=w)
  assert m['example_count'] == n
  assert m['weighted_example_count'] == pytest.approx(
      n if w is None else w.sum(), **TOL)
  assert m['accuracy'] == pytest.approx(skm.accuracy_score(y, yp, **sw), **TOL)
  for name, fn in (('precision', skm.precision_score),
                   ('recall', skm.recall_score), ('f1', skm.f1_score)):
    assert m[name] == pytest.approx(
        fn(y, yp, zero_division=0, **sw), **TOL), name
  assert m['precision_macro'] == pytest.approx(skm.precision_score(
      y, yp, average='macro', zero_division=0, **sw), **TOL)
  assert m['f1_micro'] == pytest.approx(
      skm.f1_score(y, yp, average='micro', **sw), **TOL)
  assert m['roc_auc'] == pytest.approx(skm.roc_auc_score(y, p, **sw), **TOL)
  assert m['pr_auc'] == pytest.approx(
      skm.average_precision_score(y, p, **sw), **TOL)
  assert m['log_loss'] == pytest.approx(skm.log_loss(y, p, **sw), **TOL)
  assert m['brier_score'] == pytest.approx(
      skm.brier_score_loss(y, p, **sw), **TOL)
  assert np.allclose(m['confusion_matrix'],
                     skm.confusion_matrix(y, yp, **sw))
  if w is None:
    true, pred = calibration_curve(y, p, n_bins=10)
    assert np.allclose(m['calibration_curve']['fraction_positive'], true)
    assert np.allclose(m['calibration_curve']['mean_predicted'], pred)


@cases
@given(seed=st.integers(0, 2**31), n=st.integers(30, 400), k=st.integers(3, 6),
       weighted=st.booleans(), cuts=st.lists(st.integers(0, 30), max_size=3))
def test_multiclass_matches_sklearn(seed, n, k, weighted, cuts):
  y, p, w = _data(seed, n, weighted, k)
  m = _merged(resolve_metrics('multiclass'), _block(y, p, w),
              [c for c in cuts if c <= n])
  yp = p.argmax(axis=1)
  sw = dict(sample_weight=w)
  assert m['accuracy'] == pytest.approx(skm.accuracy_score(y, yp, **sw), **TOL)
  labels = sorted(set(y) | set(yp))
  for avg in ('macro', 'micro'):
    for name, fn in (('precision', skm.precision_score),
                     ('recall', skm.recall_score), ('f1', skm.f1_score)):
      assert m[f'{name}_{avg}'] == pytest.approx(fn(
          y, yp, average=avg, labels=labels, zero_division=0, **sw),
                                                 **TOL), (name, avg)
  assert m['log_loss'] == pytest.approx(
      skm.log_loss(y, p, labels=list(range(k)), **sw), **TOL)
  present = sorted(set(y))
  if len(present) == k:
    assert m['roc_auc_ovr'] == pytest.approx(skm.roc_auc_score(
        y, p, multi_class='ovr', average='macro', **sw), **TOL)
  onehot = np.eye(k)[y]
  assert m['pr_auc_ovr'] == pytest.approx(skm.average_precision_score(
      onehot[:, present], p[:, present], average='macro', **sw), **TOL)
  brier = np.average(((p - onehot) ** 2).sum(axis=1), weights=w)
  assert m['brier_score'] == pytest.approx(brier, **TOL)
  assert np.allclose(m['confusion_matrix'], skm.confusion_matrix(
      y, yp, labels=list(range(k)), **sw)[:len(m['confusion_matrix'])])


@cases
@given(seed=st.integers(0, 2**31), n=st.integers(2, 400),
       weighted=st.booleans(), cuts=st.lists(st.integers(0, 50), max_size=4))
def test_regression_matches_sklearn(seed, n, weighted, cuts):
  rng = np.random.default_rng(seed)
  y = rng.normal(5, 3, n)
  pred = y + rng.normal(0, 1, n)
  w = rng.random(n) * 3 if weighted else None
  m = _merged(resolve_metrics('regression'), _block(y, pred, w),
              [c for c in cuts if c <= n])
  sw = dict(sample_weight=w)
  assert m['mae'] == pytest.approx(skm.mean_absolute_error(y, pred, **sw), **TOL)
  assert m['mse'] == pytest.approx(skm.mean_squared_error(y, pred, **sw), **TOL)
  assert m['rmse'] == pytest.approx(
      math.sqrt(skm.mean_squared_error(y, pred, **sw)), **TOL)
  assert m['r2'] == pytest.approx(skm.r2_score(y, pred, **sw), rel=1e-7,
                                  abs=1e-7)
  assert m['mape'] == pytest.approx(
      skm.mean_absolute_percentage_error(y, pred, **sw), **TOL)


def test_auc_sketch_past_the_exact_limit_is_close():
  y, p, _ = _data(3, 20000, False)
  p = p + np.random.default_rng(1).random(len(p)) * 1e-3  # few ties
  metrics = resolve_metrics(['roc_auc', 'pr_auc'], auc_exact_limit=5000)
  m = _merged(metrics, _block(y, np.clip(p, 0, 1), None), [7000, 14000])
  assert m['roc_auc'] == pytest.approx(skm.roc_auc_score(y, p), abs=1e-3)
  assert m['pr_auc'] == pytest.approx(skm.average_precision_score(y, p),
                                      abs=1e-3)


def test_one_vs_rest_sketch_past_the_exact_limit_is_close():
  y, p, _ = _data(5, 12000, False, k=4)
  m = _merged(resolve_metrics(['roc_auc_ovr'], auc_exact_limit=3000),
              _block(y, p, None), [4000, 8000])
  assert m['roc_auc_ovr'] == pytest.approx(
      skm.roc_auc_score(y, p, multi_class='ovr'), abs=1e-3)


def test_slices_and_buckets_match_sklearn_per_slice():
  rng = np.random.default_rng(70)
  n = 3000
  y, p, w = _data(7, n, True)
  country = rng.choice(['de', 'fr', 'us'], n)
  age = rng.random(n) * 90
  block = Block(y, p, w, {'country': country, 'age': age})
  specs = [SliceSpec(), SliceSpec(('country',)),
           SliceSpec(('country', Bucket('age', [30, 60])))]
  out = evaluate_blocks({'m': [block.take(np.arange(0, 1000)),
                               block.take(np.arange(1000, n))]},
                        resolve_metrics(['accuracy', 'roc_auc']), specs)
  assert len(out) == 1 + 3 + 9
  bucket = np.searchsorted([30, 60], age, side='right')
  names = np.array(['[-inf, 30)', '[30, 60)', '[60, inf)'])[bucket]
  for r in out:
    mask = np.ones(n, bool)
    for feat, value in r.slice:
      mask &= (country == value) if feat == 'country' else (names == value)
    sw = w[mask]
    assert r.metrics['accuracy'] == pytest.approx(skm.accuracy_score(
        y[mask], p[mask] >= 0.5, sample_weight=sw), **TOL)
    assert r.metrics['roc_auc'] == pytest.approx(
        skm.roc_auc_score(y[mask], p[mask], sample_weight=sw), **TOL)


def test_bootstrap_interval_brackets_the_value():
  y, p, _ = _data(11, 2000, False)
  out = evaluate_blocks({'m': [_block(y, p, None)]},
                        resolve_metrics(['accuracy', 'roc_auc']),
                        [SliceSpec()], bootstrap=40, seed=5)
  r = out[0]
  for name in ('accuracy', 'roc_auc'):
    ci = r.intervals[name]
    assert ci['lower'] <= r.metrics[name] <= ci['upper']
    assert 0 < ci['stderr'] < 0.05 and ci['samples'] == 40


def test_user_defined_metric_contract():
  class MaxError(MetricCombiner):
    name = 'max_error'

    def create_accumulator(self):
      return 0.0

    def add_block(self, acc, block):
      return max(acc, float(np.abs(block.labels - block.predictions).max()))

    def merge_accumulators(self, accs):
      return max(accs)

    def extract(self, acc):
      return acc

  y = np.arange(100.0)
  pred = y + np.sin(y)
  m = _merged(resolve_metrics(['mae', MaxError()]), _block(y, pred, None),
              [10, 50])
  assert m['max_error'] == pytest.approx(skm.max_error(y, pred))
  assert m['mae'] == pytest.approx(skm.mean_absolute_error(y, pred))


def test_unknown_metric_names_the_likely_one():
  with pytest.raises(ConfigurationError, match="did you mean 'roc_auc'"):
    resolve_metrics(['roc_acu'])


def test_bad_labels_are_input_errors():
  fn = MetricsCombineFn(resolve_metrics(['accuracy']))
  with pytest.raises(InvalidInputError, match='class indices'):
    fn.add_input(fn.create_accumulator(),
                 Block(np.array([0.5, 1.0]), np.array([0.1, 0.9]),
                       np.ones(2), {}))
