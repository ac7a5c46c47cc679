"""The ``EvaluateModel`` Beam YAML transform: metric and validation rows,
precomputed predictions and YAML model handlers, artifacts, config errors
that name the field."""
import json
import math

import numpy as np
import pytest
import sklearn.metrics as skm

pytest.importorskip('yaml')

from runinference.yaml import TRANSFORMS  # noqa: E402
from runinference.yaml.errors import YamlConfigError  # noqa: E402
from runinference.yaml.evaluation import EvaluateModel  # noqa: E402
from tests.yaml_helpers import run_yaml, sklearn_linear  # noqa: E402

rng = np.random.default_rng(0)
N = 300
Y = rng.integers(0, 2, N)
S = np.round(np.clip(0.3 * Y + 0.7 * rng.random(N), 0, 1), 3)
ROWS = [{'y': int(Y[i]), 's': float(S[i]), 'old': float(rng.random()),
         'g': 'ab'[i % 2], 'x': float(i % 10)} for i in range(N)]
CREATE = f'''
- type: Create
  config:
    elements: {json.dumps(ROWS)}
'''


def test_registered():
  assert TRANSFORMS['EvaluateModel'] == (
      'runinference.yaml.evaluation.EvaluateModel')


def test_predictions_thresholds_and_artifacts(tmp_path):
  def metrics(rows):
    by = {(r.model, r.slice, r.metric): r for r in rows}
    auc = by[('cand', 'Overall', 'roc_auc')].value
    assert auc == pytest.approx(skm.roc_auc_score(Y, S), rel=1e-9)
    g = np.array([r['g'] for r in ROWS]) == 'a'
    assert by[('cand', 'g=a', 'accuracy')].value == pytest.approx(
        skm.accuracy_score(Y[g], S[g] >= 0.5))
    assert math.isnan(by[('cand', 'Overall', 'roc_auc')].lower)
    assert ('base', 'Overall', 'log_loss') in by

  def validation(rows):
    [v] = rows
    assert not v.blessed and v.checked == 2
    assert len(v.failures) == 1 and 'accuracy >= 0.99' in v.failures[0]

  run_yaml(CREATE + f'''
- type: EvaluateModel
  input: Create
  config:
    label: y
    predictions: {{cand: s, base: old}}
    slices: [[], [g]]
    thresholds:
      - {{metric: accuracy, lower: 0.99}}
      - {{metric: roc_auc, change: {{absolute: -0.01}}}}
    output_dir: {tmp_path}
''', {'metrics': metrics, 'validation': validation},
           {'metrics': 'EvaluateModel.metrics',
            'validation': 'EvaluateModel.validation'})
  doc = json.loads((tmp_path / 'evaluation.json').read_text())
  assert doc['validation']['blessed'] is False
  assert (tmp_path / 'evaluation.html').exists()


def test_model_handlers_regression(tmp_path):
  model = sklearn_linear(tmp_path / 'five.pkl')

  def metrics(rows):
    by = {(r.model, r.slice, r.metric): r.value for r in rows}
    assert by[('five', 'Overall', 'mae')] == pytest.approx(
        np.mean([abs(r['x'] * 5 - 5 * r['x'] - 1) for r in ROWS]), abs=1e-6)
    assert by[('five', 'x=[5, inf)', 'example_count')] == 150
  run_yaml(CREATE + f'''
- type: MapToFields
  input: Create
  config:
    language: python
    fields:
      x: x
      target: x * 5 + 1
- type: EvaluateModel
  input: MapToFields
  config:
    label: target
    metrics: [regression]
    slices: [[], {{bucket: x, boundaries: [5]}}]
    model_handlers:
      five:
        type: SklearnModelHandlerNumpy
        config:
          model_uri: {model}
          preprocess: {{expression: '[x]'}}
          postprocess: {{expression: 'float(inference)'}}
''', {'metrics': metrics}, {'metrics': 'EvaluateModel.metrics'})


@pytest.mark.parametrize('config, where', [
    ({'label': 'y', 'predictions': {'m': 's'}, 'treshold': []},
     "did you mean 'thresholds'"),
    ({'label': 'y', 'predictions': {'m': 's'},
      'thresholds': [{'metric': 'accuracy', 'lowr': 1}]}, 'thresholds[0].lowr'),
    ({'label': 'y', 'predictions': {'m': 's'},
      'thresholds': [{'metric': 'acuracy', 'lower': 1}]},
     "did you mean 'accuracy'"),
    ({'predictions': {'m': 's'}}, 'label'),
    ({'label': 'y', 'predictions': {'m': 's'},
      'slices': [{'bucket': 'x'}]}, 'slices[0]'),
])
def test_config_errors_name_the_field(config, where):
  with pytest.raises(YamlConfigError, match=where.replace('[', r'\[')
                     .replace(']', r'\]')):
    EvaluateModel(**config)


def test_runinference_run_finds_the_transform(tmp_path, capsys):
  from runinference.cli import main
  rows = json.dumps(ROWS[:60])
  path = tmp_path / 'p.yaml'
  path.write_text(f'''pipeline:
  transforms:
    - type: Create
      config:
        elements: {rows}
    - type: EvaluateModel
      input: Create
      config:
        label: y
        predictions: {{m: s}}
        thresholds: [{{metric: accuracy, lower: 0.1}}]
        output_dir: {tmp_path / 'out'}
''')
  assert main(['validate', str(path)]) == 0
  assert main(['run', str(path), '--quiet']) == 0
  doc = json.loads((tmp_path / 'out' / 'evaluation.json').read_text())
  assert doc['validation']['blessed'] is True
