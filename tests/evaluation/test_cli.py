"""``runinference evaluate`` as a CI gate: exit 0 when blessed, 1 when a
threshold fails, 2 for bad input; JSON and HTML written."""
import json
import pickle

import numpy as np
import pandas as pd
import pytest
import sklearn.metrics as skm
from sklearn.linear_model import LinearRegression, LogisticRegression

from runinference.cli import main
from runinference.cli.evaluate import parse_threshold
from runinference.evaluation import ChangeThreshold, ValueThreshold


@pytest.fixture(scope='module')
def files(tmp_path_factory):
  d = tmp_path_factory.mktemp('cli')
  rng = np.random.default_rng(0)
  n = 800
  x = rng.normal(size=(n, 3))
  y = (x[:, 0] + 0.3 * rng.normal(size=n) > 0).astype(int)
  df = pd.DataFrame(x, columns=['a', 'b', 'c'])
  df['y'] = y
  df['g'] = np.where(rng.random(n) > 0.5, 'u', 'v')
  df['score'] = np.clip(0.5 + 0.3 * x[:, 0], 0, 1)
  df['target'] = 2 * x[:, 0] + rng.normal(size=n)
  df.to_csv(d / 'data.csv', index=False)
  df.to_parquet(d / 'data.parquet')
  good = LogisticRegression().fit(x, y)
  bad = LogisticRegression().fit(x * [0, 1, 1], y)
  for name, model in (('good', good), ('bad', bad),
                      ('reg', LinearRegression().fit(x, df['target']))):
    with open(d / f'{name}.pkl', 'wb') as f:
      pickle.dump(model, f)
  return d, df, good


def _args(d, *extra):
  return ['evaluate', str(d / 'data.csv'), '--label', 'y',
          '--features', 'a,b,c', '--out', str(d / 'out'), *extra]


def test_blessed_exits_0_and_writes_json_and_html(files, capsys):
  d, df, good = files
  code = main(_args(d, '--model', f'cand={d}/good.pkl',
                    '--model', f'base={d}/bad.pkl', '--slice', 'g',
                    '--threshold', 'accuracy>=0.8',
                    '--change', 'log_loss<=0', '--json'))
  assert code == 0
  doc = json.loads(capsys.readouterr().out)
  assert doc['validation']['blessed'] is True
  cand = [m for m in doc['metrics'] if m['model'] == 'cand' and
          not m['slice']][0]['metrics']
  p = good.predict_proba(df[['a', 'b', 'c']].to_numpy())
  assert cand['roc_auc'] == pytest.approx(skm.roc_auc_score(df.y, p[:, 1]))
  assert cand['log_loss'] == pytest.approx(skm.log_loss(df.y, p))
  assert (d / 'out' / 'evaluation.html').exists()
  assert (d / 'out' / 'evaluation.json').exists()


def test_failed_threshold_exits_1_naming_it(files, capsys):
  d, _, _ = files
  code = main(_args(d, '--model', f'cand={d}/bad.pkl',
                    '--model', f'base={d}/good.pkl',
                    '--change', 'roc_auc>=-1%', '--threshold', 'f1>=0.1'))
  out = capsys.readouterr().out
  assert code == 1
  assert 'not blessed: 1 of 2' in out and 'roc_auc relative change' in out


def test_prediction_columns_parquet_and_regression(files, capsys):
  d, df, _ = files
  code = main(['evaluate', str(d / 'data.parquet'), '--label', 'target',
               '--prediction', 'm=score', '--metrics', 'regression',
               '--slice', 'a:-1:0:1', '--threshold', 'rmse<=0.1@*',
               '--out', str(d / 'out2')])
  out = capsys.readouterr().out
  assert code == 1
  assert out.count('rmse <= 0.1') >= 4  # overall and each bucket named
  code = main(['evaluate', str(d / 'data.csv'), '--label', 'y',
               '--prediction', 'm=score', '--threshold', 'roc_auc>=0.9',
               '--out', str(d / 'out3')])
  assert code == 0


@pytest.mark.parametrize('extra, message', [
    (['--model', 'cand=nowhere.pkl'], 'no such file'),
    (['--prediction', 'm=nope'], "no column(s) ['nope']"),
    (['--prediction', 'm=score', '--threshold', 'acuracy>=1'],
     "did you mean 'accuracy'"),
    (['--prediction', 'm=score', '--threshold', 'accuracy=>1'],
     'Cannot read threshold'),
    (['--prediction', 'm=score', '--metrics', 'rocauc'], "did you mean"),
    (['--prediction', 'm=score', '--change', 'accuracy>=0'], 'baseline'),
    ([], 'not both or neither'),
])
def test_bad_input_exits_2(files, capsys, extra, message):
  d, _, _ = files
  code = main(['evaluate', str(d / 'data.csv'), '--label', 'y',
               '--out', str(d / 'bad'), *extra])
  assert code == 2
  assert message in capsys.readouterr().err


def test_missing_data_file_exits_2(tmp_path, capsys):
  assert main(['evaluate', str(tmp_path / 'none.csv'), '--label', 'y',
               '--prediction', 'm=p']) == 2
  assert 'no such file' in capsys.readouterr().err


def test_threshold_syntax():
  assert parse_threshold('accuracy>=0.8', False) == ValueThreshold(
      'accuracy', lower=0.8)
  assert parse_threshold('log_loss<=0.5@*', False) == ValueThreshold(
      'log_loss', upper=0.5, slices='*')
  assert parse_threshold('auc>=-2%@country', True) == ChangeThreshold(
      'auc', relative=-0.02, slices=[['country']])
  assert parse_threshold('mae<=0', True).direction == 'lower_is_better'


def test_exit_status_of_the_process(files):
  """As a CI job sees it: the process's own exit status, 1 and 2 (0 and the
  statuses main() returns are checked in process above)."""
  import subprocess
  import sys
  d, _, _ = files
  base = [sys.executable, '-m', 'runinference.cli', 'evaluate',
          str(d / 'data.csv'), '--label', 'y', '--out', str(d / 'proc')]
  for extra, status in ((['--prediction', 'm=score',
                          '--threshold', 'roc_auc>=0.999'], 1),
                        (['--prediction', 'm=nope'], 2)):
    done = subprocess.run(base + extra, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == status, (extra, done.stdout[-500:],
                                       done.stderr[-500:])
