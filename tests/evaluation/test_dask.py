"""EvaluateModel on ``runinference.runners.DaskRunner`` (a LocalCluster of 2
worker processes): per-slice metrics equal scikit-learn's, and the blocks
built in finish_bundle reach the combiners."""
import os
import sys

import apache_beam as beam
import numpy as np
import pytest
import sklearn.metrics as skm
from apache_beam.options.pipeline_options import PipelineOptions

distributed = pytest.importorskip(
    'dask.distributed', reason="the dask extra: pip install 'runinference[dask]'")

pytestmark = pytest.mark.timeout(240)
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope='module')
def dask_address():
  with pytest.MonkeyPatch.context() as mp:
    mp.setenv('PYTHONPATH', os.pathsep.join(
        filter(None, [REPO, os.environ.get('PYTHONPATH')])))
    mp.setenv('PATH', os.path.dirname(sys.executable) + os.pathsep +
              os.environ['PATH'])
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host='127.0.0.1',
        dashboard_address=None, timeout=60)
    try:
      yield cluster.scheduler_address
    finally:
      cluster.close(timeout=60)


def _rows(n=3000):
  rng = np.random.default_rng(5)
  y = rng.integers(0, 2, n)
  score = np.clip(0.3 * y + 0.7 * rng.random(n), 0, 1)
  value = y * 2.0 + rng.normal(0, 1, n)
  return [{'label': int(y[i]), 'score': float(score[i]), 'v': float(value[i]),
           'w': float(1 + i % 4), 'g': 'ab'[i % 2]} for i in range(n)]


def test_evaluate_on_dask_matches_sklearn(dask_address, tmp_path):
  from runinference.evaluation import EvaluateModel, ValueThreshold
  from runinference.runners import DaskRunner
  rows = _rows()
  out_path = str(tmp_path / 'metrics.jsonl')
  with beam.Pipeline(runner=DaskRunner(), options=PipelineOptions(
      [f'--dask_client_address={dask_address}'])) as p:
    data = p | beam.Create(rows, reshuffle=False)
    ev = data | EvaluateModel(
        predictions={'m': 'score'}, weight_key='w', slices=[(), 'g'],
        metrics=['binary', 'weighted_example_count'],
        thresholds=[ValueThreshold('roc_auc', lower=0.6)])
    (ev['metrics']
     | beam.Map(lambda r: repr((r.slice, r.metrics['example_count'],
                                r.metrics['weighted_example_count'],
                                r.metrics['accuracy'], r.metrics['roc_auc'],
                                r.metrics['log_loss'])))
     | beam.io.WriteToText(out_path, shard_name_template=''))
    (ev['validation'] | beam.Map(lambda v: repr(v.blessed))
     | 'WriteValidation' >> beam.io.WriteToText(
         str(tmp_path / 'v.txt'), shard_name_template=''))
  import ast
  with open(out_path) as f:
    got = [ast.literal_eval(line) for line in f]
  assert len(got) == 3
  y = np.array([r['label'] for r in rows])
  s = np.array([r['score'] for r in rows])
  w = np.array([r['w'] for r in rows])
  g = np.array([r['g'] for r in rows])
  for key, n, wn, acc, auc, ll in got:
    m = np.ones(len(y), bool) if not key else g == key[0][1]
    assert n == m.sum() and wn == pytest.approx(w[m].sum())
    assert acc == pytest.approx(skm.accuracy_score(
        y[m], s[m] >= 0.5, sample_weight=w[m]), rel=1e-9)
    assert auc == pytest.approx(skm.roc_auc_score(
        y[m], s[m], sample_weight=w[m]), rel=1e-9)
    assert ll == pytest.approx(skm.log_loss(
        y[m], s[m], sample_weight=w[m]), rel=1e-9)
  with open(tmp_path / 'v.txt') as f:
    assert f.read().strip() == 'True'


def test_every_metric_weighted_per_slice_on_dask(dask_address, tmp_path):
  """Every metric of each task (as on the DirectRunner in test_pipeline.py),
  weighted, per slice, computed on the Dask workers and read back; the three
  tasks are branches of one pipeline."""
  import base64
  import pickle
  from runinference.evaluation import EvaluateModel
  from runinference.runners import DaskRunner
  from tests.evaluation.sklearn_reference import (
      SLICES, check_against_sklearn, make_rows, metric_specs)
  rows = make_rows(600)  # 100 rows in each (g, h) slice
  tasks = ('binary', 'multiclass', 'regression')
  with beam.Pipeline(runner=DaskRunner(), options=PipelineOptions(
      [f'--dask_client_address={dask_address}'])) as p:
    data = p | beam.Create(rows, reshuffle=False)
    for task in tasks:
      ev = data | f'Evaluate_{task}' >> EvaluateModel(
          label_key=f'y_{task}', predictions={'m': f'p_{task}'},
          weight_key='w', metrics=metric_specs(task), slices=SLICES)
      (ev['metrics']
       | f'Encode_{task}' >> beam.Map(lambda r: base64.b64encode(
           pickle.dumps((r.slice, r.metrics))).decode())
       | f'Write_{task}' >> beam.io.WriteToText(
           str(tmp_path / f'{task}.txt'), shard_name_template=''))
  for task in tasks:
    with open(tmp_path / f'{task}.txt') as f:
      got = [pickle.loads(base64.b64decode(line)) for line in f]
    check_against_sklearn(task, rows, got)
