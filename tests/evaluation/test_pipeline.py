"""EvaluateModel on the DirectRunner: precomputed predictions (rows,
columns, a PredictionResult stream) and models run through RunInference,
per slice, weighted, against scikit-learn; thresholds and the validation
result; configuration errors."""
import pickle
import uuid

import apache_beam as beam
import numpy as np
import pandas as pd
import pytest
import sklearn.metrics as skm
from apache_beam.testing.util import assert_that
from sklearn.linear_model import LogisticRegression

from runinference.base import PredictionResult
from runinference.evaluation import (Bucket, ChangeThreshold, EvaluateModel,
                                     ValidationResult, ValueThreshold)
from runinference.exceptions import ConfigurationError, ConfigurationTypeError
from runinference.sklearn_inference import SklearnModelHandlerNumpy

TOL = dict(rel=1e-9, abs=1e-9)


def _rows(n=1500, seed=0):
  rng = np.random.default_rng(seed)
  y = rng.integers(0, 2, n)
  good = np.clip(0.4 * y + 0.6 * rng.random(n), 0, 1)
  bad = rng.random(n)
  rows = [{'label': int(y[i]), 'good': float(good[i]), 'bad': float(bad[i]),
           'w': float(1 + i % 3), 'country': ['de', 'fr', 'us'][i % 3 if
                                                                 i % 7 else 0],
           'device': 'phone' if i % 2 else 'desktop', 'age': float(i % 90)}
          for i in range(n)]
  return rows


_SINKS: dict = {}


class _Keep:
  """An assert_that matcher that keeps what it saw (in this process: the
  DirectRunner runs in process; pickled copies find the list by name)."""
  def __init__(self, name):
    self.name = name
    _SINKS[name] = []

  def __call__(self, xs):
    _SINKS[self.name].extend(xs)


def _run(rows, **kwargs):
  tag = uuid.uuid4().hex
  with beam.Pipeline() as p:
    out = p | beam.Create(rows) | EvaluateModel(**kwargs)
    assert_that(out['metrics'], _Keep(tag + 'm'), label='KeepMetrics')
    assert_that(out['validation'], _Keep(tag + 'v'), label='KeepValidation')
  return _SINKS.pop(tag + 'm'), _SINKS.pop(tag + 'v')


def _mask(rows, key):
  def match(r):
    for feat, value in key:
      if feat == 'age':
        b = np.searchsorted([30.0, 60.0], r['age'], side='right')
        if ['[-inf, 30)', '[30, 60)', '[60, inf)'][b] != value:
          return False
      elif r[feat] != value:
        return False
    return True
  return np.array([match(r) for r in rows])


def test_two_models_weighted_per_slice_match_sklearn_and_validation_names_failures():
  rows = _rows()
  metrics, validation = _run(
      rows, predictions={'cand': 'good', 'base': 'bad'}, weight_key='w',
      slices=[(), 'country', ('country', 'device'), Bucket('age', [30, 60])],
      thresholds=[ValueThreshold('accuracy', lower=0.99),
                  ValueThreshold('roc_auc', lower=0.5, slices='*'),
                  ChangeThreshold('log_loss', direction='lower_is_better'),
                  ChangeThreshold('pr_auc', absolute=0.5)])
  assert len(metrics) == 2 * (1 + 3 + 6 + 3)
  y = np.array([r['label'] for r in rows])
  w = np.array([r['w'] for r in rows])
  for rec in metrics:
    m = _mask(rows, rec.slice)
    p = np.array([r['good' if rec.model == 'cand' else 'bad'] for r in rows])
    sw = w[m]
    assert rec.metrics['example_count'] == m.sum()
    assert rec.metrics['weighted_example_count'] == pytest.approx(sw.sum())
    assert rec.metrics['accuracy'] == pytest.approx(skm.accuracy_score(
        y[m], p[m] >= 0.5, sample_weight=sw), **TOL)
    assert rec.metrics['roc_auc'] == pytest.approx(skm.roc_auc_score(
        y[m], p[m], sample_weight=sw), **TOL)
    assert rec.metrics['log_loss'] == pytest.approx(skm.log_loss(
        y[m], p[m], sample_weight=sw), **TOL)
  [v] = validation
  assert isinstance(v, ValidationResult) and not v.blessed
  failed = {(f.metric, f.slice) for f in v.failures}
  assert ('accuracy', ()) in failed           # 0.99 is out of reach
  assert ('pr_auc', ()) in failed             # +0.5 over the baseline
  assert not any(f.metric == 'log_loss' for f in v.failures)
  assert not any(f.metric == 'roc_auc' for f in v.failures)
  assert v.checked == 1 + 13 + 1 + 1
  assert 'accuracy >= 0.99' in str(v)


def test_handlers_run_through_runinference_multiclass(tmp_path):
  rng = np.random.default_rng(1)
  x = rng.normal(size=(600, 4))
  y = (x[:, 0] > 0).astype(int) + (x[:, 1] > 0.5).astype(int)
  paths = {}
  for name, cols in (('full', slice(None)), ('weak', slice(2, 4))):
    model = LogisticRegression(max_iter=500).fit(x, y) if name == 'full' else \
        LogisticRegression(max_iter=500).fit(x * [0, 0, 1, 1], y)
    paths[name] = str(tmp_path / f'{name}.pkl')
    with open(paths[name], 'wb') as f:
      pickle.dump(model, f)

  def proba(model, batch, inference_args=None):
    return list(model.predict_proba(np.stack(batch)))

  rows = [{'x': x[i], 'label': int(y[i]), 'g': i % 2} for i in range(len(y))]
  metrics, validation = _run(
      rows, features='x', metrics='multiclass', slices=[(), 'g'],
      handlers={n: SklearnModelHandlerNumpy(p, inference_fn=proba)
                for n, p in paths.items()},
      thresholds=[ChangeThreshold('accuracy')])
  assert len(metrics) == 2 * 3
  for rec in metrics:
    with open(paths[rec.model], 'rb') as f:
      model = pickle.load(f)
    m = _mask(rows, rec.slice)
    probs = model.predict_proba(x[m])
    assert rec.metrics['accuracy'] == pytest.approx(
        skm.accuracy_score(y[m], probs.argmax(1)), **TOL)
    assert rec.metrics['f1_macro'] == pytest.approx(
        skm.f1_score(y[m], probs.argmax(1), average='macro'), **TOL)
    assert rec.metrics['log_loss'] == pytest.approx(
        skm.log_loss(y[m], probs, labels=[0, 1, 2]), **TOL)
  assert validation[0].blessed  # the full model beats the weak one


def test_prediction_result_stream_regression():
  rng = np.random.default_rng(2)
  y = rng.normal(10, 2, 500)
  pred = y + rng.normal(0, 1, 500)
  results = [PredictionResult({'label': float(y[i]), 'k': i % 4},
                              np.float64(pred[i])) for i in range(500)]
  metrics, validation = _run(results, metrics='regression', slices=[(), 'k'],
                             model_name='reg',
                             thresholds=[ValueThreshold('rmse', upper=0.1)])
  overall = [r for r in metrics if r.slice == ()][0]
  assert overall.model == 'reg'
  assert overall.metrics['r2'] == pytest.approx(skm.r2_score(y, pred), 1e-9)
  assert overall.metrics['mape'] == pytest.approx(
      skm.mean_absolute_percentage_error(y, pred), **TOL)
  assert not validation[0].blessed
  assert validation[0].failures[0].metric == 'rmse'


def test_columnar_chunks_equal_rows():
  rows = _rows(900, seed=4)
  df = pd.DataFrame(rows)
  chunks = [df.iloc[i:i + 200] for i in range(0, len(df), 200)]
  kw = dict(predictions={'cand': 'good'}, slices=[(), 'country'],
            metrics='binary')
  by_rows, _ = _run(rows, **kw)
  by_cols, _ = _run(chunks, columnar=True, **kw)
  key = lambda r: (r.model, r.slice)
  for a, b in zip(sorted(by_rows, key=key), sorted(by_cols, key=key)):
    assert a.slice == b.slice
    for name in ('accuracy', 'roc_auc', 'pr_auc', 'log_loss', 'brier_score'):
      assert a.metrics[name] == pytest.approx(b.metrics[name], **TOL)


def test_bootstrap_in_the_pipeline():
  metrics, _ = _run(_rows(800), predictions='good', bootstrap=20, seed=3,
                    metrics=['accuracy', 'roc_auc'])
  [r] = metrics
  ci = r.intervals['accuracy']
  assert ci['lower'] <= r.metrics['accuracy'] <= ci['upper']


def test_configuration_errors_are_clear():
  with pytest.raises(ConfigurationTypeError, match="did you mean 'weight_key'"):
    EvaluateModel(predictions='p', weight_keys='w')
  with pytest.raises(ConfigurationError, match='not both'):
    EvaluateModel(predictions='p', handlers={'a': SklearnModelHandlerNumpy('x')})
  with pytest.raises(ConfigurationError, match='needs features='):
    EvaluateModel(handlers={'a': SklearnModelHandlerNumpy('x')})
  with pytest.raises(ConfigurationError, match="did you mean 'roc_auc'"):
    EvaluateModel(predictions='p', thresholds=[ValueThreshold('roc_au', 0.5)])
  with pytest.raises(ConfigurationError, match='baseline'):
    EvaluateModel(predictions='p', thresholds=[ChangeThreshold('accuracy')])
  with pytest.raises(ConfigurationError, match='not used'):
    EvaluateModel(predictions='p', features='x')
  with pytest.raises(ConfigurationError, match='bootstrap'):
    EvaluateModel(predictions='p', bootstrap=1)
  with pytest.raises(ConfigurationTypeError, match='slicing spec'):
    EvaluateModel(predictions='p', slices=[3])


@pytest.mark.parametrize('task', ['binary', 'multiclass', 'regression'])
def test_every_metric_weighted_per_slice_matches_sklearn(task):
  """Every metric of the task's preset (binary also macro/micro averages,
  the curves; regression also a user-defined metric), weighted, on each
  slice of SLICES (overall, one feature, a cross, value buckets)."""
  from tests.evaluation.sklearn_reference import (
      SLICES, check_against_sklearn, make_rows, metric_specs)
  rows = make_rows()
  metrics, _ = _run(rows, label_key=f'y_{task}',
                    predictions={'m': f'p_{task}'}, weight_key='w',
                    metrics=metric_specs(task), slices=SLICES)
  check_against_sklearn(task, rows, metrics)
