"""The runinference command beyond run's basics: --version, --log-level
(LogForTesting shows; third-party noise does not), validate, did-you-mean,
a non-UTF-8 pipeline file, a busy --metrics-port, inspect on .skops and
.safetensors with plain values."""
import json
import socket
import subprocess
import sys

import pytest

pytest.importorskip('yaml')
pytest.importorskip('sklearn')

from runinference.cli import main  # noqa: E402
from tests.yaml_helpers import sklearn_linear  # noqa: E402

LOGGED = '''\
pipeline:
  transforms:
    - type: Create
      config:
        elements: [{{value: 1.0}}, {{value: 2.0}}]
    - type: RunInference
      input: Create
      config:
        model_handler:
          type: {handler}
          config:
            model_uri: "{model}"
            preprocess: {{expression: '[value]'}}
            postprocess: {{expression: 'float(inference)'}}
    - type: LogForTesting
      input: RunInference
'''


def _pipeline(tmp_path, handler='SklearnModelHandlerNumpy', model=None):
  model = model or sklearn_linear(tmp_path / 'five.pkl')
  path = tmp_path / 'p.yaml'
  path.write_text(LOGGED.format(handler=handler, model=model))
  return path


def _cli(*args, timeout=300):
  return subprocess.run([sys.executable, '-m', 'runinference.cli', *args],
                        capture_output=True, text=True, timeout=timeout)


def test_version(capsys):
  with pytest.raises(SystemExit) as e:
    main(['--version'])
  assert e.value.code == 0
  assert capsys.readouterr().out.startswith('runinference 0.')


def test_log_for_testing_shows_by_default_and_noise_does_not(tmp_path):
  done = _cli('run', str(_pipeline(tmp_path)), '--quiet')
  assert done.returncode == 0, done.stderr
  rows = [line for line in done.stderr.splitlines() if 'inference' in line]
  assert len(rows) == 2 and all(r.startswith('{"value"') for r in rows), (
      done.stderr)
  for noise in ('oneDNN', 'statecache', 'Loading weights', 'Could not load ML'):
    assert noise not in done.stderr, (noise, done.stderr)
  quiet = _cli('run', str(_pipeline(tmp_path)), '--quiet',
               '--log-level', 'warning')
  assert quiet.returncode == 0 and '"value"' not in quiet.stderr, quiet.stderr


def _apitools_free(text):
  return '\n'.join(l for l in text.splitlines() if 'apitools not found' not in l)


def test_help_and_inspect_are_free_of_noise(tmp_path):
  helped = _cli('--help')
  assert helped.returncode == 0 and 'validate' in helped.stdout
  assert _apitools_free(helped.stderr) == '', helped.stderr
  inspected = _cli('inspect', sklearn_linear(tmp_path / 'm.pkl'))
  assert inspected.returncode == 0, inspected.stderr
  assert _apitools_free(inspected.stderr) == '', inspected.stderr


def test_help_is_silent_and_imports_no_beam():
  """--help answers without importing Apache Beam (the package's names load
  on first use): nothing logged, and the start-up cost is Python's own
  (measured in docs/cli.md, not timed here)."""
  helped = _cli('--help')
  assert helped.returncode == 0 and helped.stderr == '', helped.stderr
  code = ('import sys\nfrom runinference.cli import main\n'
          'try:\n  main(["--help"])\nexcept SystemExit:\n  pass\n'
          'print(sorted(m for m in sys.modules if m.startswith("apache_beam")))')
  done = subprocess.run([sys.executable, '-c', code], capture_output=True,
                        text=True, timeout=120, check=True)
  assert done.stdout.strip().splitlines()[-1] == '[]', done.stdout


def test_validate_passes_a_good_file_without_running_it(tmp_path, capsys):
  path = _pipeline(tmp_path)
  path.write_text(path.read_text() + '''\
    - type: MapToFields
      input: RunInference
      config: {language: python, fields: {line: "str(inference)"}}
    - type: WriteToText
      input: MapToFields
      config: {path: "%s/never"}
''' % tmp_path)
  assert main(['validate', str(path)]) == 0
  assert 'valid' in capsys.readouterr().out
  assert not list(tmp_path.glob('never*'))


def test_validate_names_file_and_line_of_a_missing_model(tmp_path, capsys):
  path = _pipeline(tmp_path, model=str(tmp_path / 'gone.pkl'))
  assert main(['validate', str(path)]) == 2
  err = capsys.readouterr().err
  line = next(i for i, text in enumerate(path.read_text().splitlines(), 1)
              if 'gone.pkl' in text)
  assert f'{path}:{line}: ' in err and 'does not exist' in err, err


def test_validate_suggests_the_handler_type(tmp_path, capsys):
  path = _pipeline(tmp_path, handler='SklearnModelHandlerNumpi')
  assert main(['validate', str(path)]) == 2
  err = capsys.readouterr().err
  assert f'{path}:' in err and 'SklearnModelHandlerNumpy' in err, err


def test_unknown_pipeline_option_suggests_the_right_one(tmp_path, capsys):
  path = _pipeline(tmp_path)
  assert main(['run', str(path), '--num_wrkers=2']) == 2
  assert 'did you mean --num_workers?' in capsys.readouterr().err
  path.write_text('options:\n  num_wrkers: 2\n' + path.read_text())
  assert main(['validate', str(path)]) == 2
  err = capsys.readouterr().err
  assert f'{path}:' in err and 'did you mean --num_workers?' in err, err


def test_non_utf8_pipeline_file_exits_2_naming_it(tmp_path, capsys):
  path = tmp_path / 'latin1.yaml'
  path.write_bytes('pipeline:\n  # caf\xe9\n  transforms: []\n'.encode('latin-1'))
  for command in ('run', 'validate'):
    assert main([command, str(path), '--quiet'] if command == 'run'
                else [command, str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and 'UTF-8' in err, err


def test_busy_metrics_port_exits_2_naming_it_before_start_up(tmp_path, capsys):
  with socket.socket() as busy:
    busy.bind(('127.0.0.1', 0))
    busy.listen()
    port = busy.getsockname()[1]
    # a pipeline file that does not exist: the port is checked first
    assert main(['run', str(tmp_path / 'nope.yaml'), '--metrics-port',
                 str(port)]) == 2
  err = capsys.readouterr().err
  assert f'--metrics-port {port}' in err and 'nope.yaml' not in err, err


def test_inspect_skops_with_plain_values(tmp_path, capsys):
  skops_io = pytest.importorskip('skops.io')
  from sklearn.linear_model import LogisticRegression
  import numpy as np
  model = LogisticRegression().fit(np.arange(8.0).reshape(-1, 2), [0, 1] * 2)
  skops_io.dump(model, tmp_path / 'm.skops')
  assert main(['inspect', str(tmp_path / 'm.skops')]) == 0
  text = capsys.readouterr().out
  assert 'one of [0, 1]' in text and 'np.int64' not in text, text
  assert main(['inspect', str(tmp_path / 'm.skops'), '--json']) == 0
  info = json.loads(capsys.readouterr().out)
  assert info['handler'] == 'SklearnModelHandlerNumpy'
  assert info['config']['model_uri'] == str(tmp_path / 'm.skops')
  assert info['inputs'] == ['float vector of 2 features']


def test_inspect_safetensors(tmp_path, capsys):
  torch = pytest.importorskip('torch')
  st = pytest.importorskip('safetensors.torch')
  net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(),
                            torch.nn.Linear(4, 2))
  st.save_file(net.state_dict(), str(tmp_path / 'w.safetensors'))
  assert main(['inspect', str(tmp_path / 'w.safetensors'), '--json']) == 0
  info = json.loads(capsys.readouterr().out)
  assert info['config']['state_dict_path'] == str(tmp_path / 'w.safetensors')
  assert info['inputs'] == ['float tensor of 3 features (first layer)']
  assert info['outputs'] == ['tensor of 2 values (last layer)']
  assert '0.weight: [4, 3] F32' in info['notes']


def test_a_sklearn_run_imports_no_other_framework(tmp_path):
  """Beam's standard YAML providers import its ML module (transformers,
  torch, TensorFlow) up front; runinference run imports them on first use,
  and a step's framework only when a step uses it."""
  path = _pipeline(tmp_path)
  code = (
      'import sys\n'
      'from runinference.cli import main\n'
      f'assert main(["run", {str(path)!r}, "--quiet", "--log-level", '
      '"warning"]) == 0\n'
      'heavy = sorted(m for m in ("tensorflow", "torch", "transformers", '
      '"sentence_transformers", "apache_beam.yaml.yaml_ml", "onnxruntime", '
      '"xgboost") if m in sys.modules)\n'
      'assert not heavy, heavy\n'
      'assert "sklearn" in sys.modules\n')
  done = subprocess.run([sys.executable, '-c', code], capture_output=True,
                        text=True, timeout=300)
  assert done.returncode == 0, done.stderr


def test_progress_counts_rows_per_step(tmp_path, capsys):
  model = sklearn_linear(tmp_path / 'five.pkl')
  steps = ''.join(f'''\
    - type: RunInference
      name: {name}
      input: Create
      config:
        model_handler:
          type: SklearnModelHandlerNumpy
          config:
            model_uri: "{model}"
            preprocess: {{expression: '[1 / value]'}}
''' for name in ('Alpha', 'Beta'))
  path = tmp_path / 'two.yaml'
  path.write_text('pipeline:\n  transforms:\n    - type: Create\n      config:\n'
                  '        elements: [{value: 1.0}, {value: 2.0}, {value: 4.0}]\n'
                  + steps)
  assert main(['run', str(path), '--log-level', 'warning']) == 0
  err = capsys.readouterr().err
  assert 'Alpha 3→3, Beta 3→3' in err, err


def test_validate_names_a_model_file_of_another_framework(tmp_path, capsys):
  (tmp_path / 'm.onnx').write_bytes(b'onnx bytes')
  path = _pipeline(tmp_path, model=str(tmp_path / 'm.onnx'))
  assert main(['validate', str(path)]) == 2
  err = capsys.readouterr().err
  line = next(i for i, text in enumerate(path.read_text().splitlines(), 1)
              if 'm.onnx' in text)
  assert f'{path}:{line}: ' in err and 'is a model file for onnx' in err, err
  assert 'did you mean OnnxModelHandlerNumpy?' in err, err
