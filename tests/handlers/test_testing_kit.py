"""The conformance kit itself (runinference.testing): a handler written here
passes every check, and each way of breaking the contract fails the check
that is about it, with a message saying what is wrong."""
import json
import subprocess
import sys
import threading

import numpy as np
import pytest

from runinference.base import ModelHandler, PredictionResult
from runinference.columnar import MatrixPredictor
from runinference.testing import (CHECKS, ConformanceError, HandlerCase,
                                  check_model_handler, parametrize_with_checks)


class Linear:
  def __init__(self, w, b):
    self.w, self.b = np.asarray(w, float), float(b)

  def n_features(self):
    return len(self.w)

  def predict(self, matrix):
    return np.asarray(matrix, float) @ self.w + self.b


def _predict_matrix(model, matrix, inference_args):
  return model.predict(matrix)


class LinearHandler(ModelHandler):
  """A well-behaved handler: a linear model in a JSON file."""
  _model_location_attr = 'path'

  def __init__(self, path, **kwargs):
    super().__init__(**kwargs)
    self.path = path

  def load_model(self):
    with open(self.path) as f:
      spec = json.load(f)
    return Linear(spec['w'], spec['b'])

  def run_inference(self, batch, model, inference_args=None):
    # With large_model=True the model is a proxy: call methods only.
    width = model.n_features()
    for i, x in enumerate(batch):
      if not isinstance(x, np.ndarray) or x.shape != (width,):
        raise TypeError(f'example {i} is {type(x).__name__} {x!r}, not a '
                        f'numpy row of {width} numbers')
    if not batch:
      return []
    return [PredictionResult(x, y, self.path)
            for x, y in zip(batch, model.predict(np.stack(batch)))]

  def get_num_bytes(self, batch):
    return sum(x.nbytes for x in batch)

  def get_metrics_namespace(self):
    return 'Linear'

  def matrix_predictor(self):
    return MatrixPredictor(_predict_matrix)


def _write_model(tmp_path, w=(1.0, -2.0), b=0.5):
  path = tmp_path / 'linear.json'
  path.write_text(json.dumps({'w': list(w), 'b': b}))
  return str(path)


def case_for(cls, name=None, **fields):
  spec = dict(
      name=name or cls.__name__,
      make_handler=lambda tmp, **options: cls(_write_model(tmp), **options),
      make_examples=lambda: [np.array([1.0, 2.0]), np.array([0.0, 1.0]),
                             np.array([3.0, -1.0])],
      bad_example='not a row',
      expected_namespace='Linear',
      check=lambda x, y: np.testing.assert_allclose(y, x[0] - 2 * x[1] + 0.5))
  spec.update(fields)
  return HandlerCase(**spec)


def failed(case, check):
  """The message of ``check`` failing on ``case`` (and that it failed)."""
  with pytest.raises(ConformanceError) as info:
    check_model_handler(case, checks=[check])
  assert f'  {check}: ' in str(info.value)
  return str(info.value)


def test_a_conforming_handler_passes_every_check():
  results = check_model_handler(case_for(LinearHandler))
  assert [r.check for r in results] == list(CHECKS)
  assert {r.status for r in results} == {'passed'}, results


def test_a_factory_and_examples_instead_of_a_case(tmp_path):
  path = _write_model(tmp_path)
  results = check_model_handler(
      lambda tmp, **options: LinearHandler(path, **options),
      [np.array([1.0, 1.0]), np.array([2.0, 0.0])], bad_example=None,
      checks=['batch', 'bad_input', 'repr'])
  assert [(r.check, r.status) for r in results] == [
      ('batch', 'passed'), ('bad_input', 'passed'), ('repr', 'passed')]


def test_without_a_bad_example_the_bad_input_checks_skip():
  case = case_for(LinearHandler)
  case = HandlerCase(name='no-bad', make_handler=case.make_handler,
                     make_examples=case.make_examples)
  results = check_model_handler(case, checks=['bad_input', 'dead_letter'])
  assert [r.status for r in results] == ['skipped', 'skipped']
  assert 'bad_example' in results[0].detail


class WrongOracle(LinearHandler):
  def run_inference(self, batch, model, inference_args=None):
    return [PredictionResult(r.example, r.inference + 1, r.model_id)
            for r in super().run_inference(batch, model, inference_args)]


class DropsOne(LinearHandler):
  def run_inference(self, batch, model, inference_args=None):
    return super().run_inference(batch, model, inference_args)[:-1]


class CopiesExamples(LinearHandler):
  def run_inference(self, batch, model, inference_args=None):
    return [PredictionResult(np.copy(r.example), r.inference, r.model_id)
            for r in super().run_inference(batch, model, inference_args)]


class FailsOnEmpty(LinearHandler):
  def run_inference(self, batch, model, inference_args=None):
    return [PredictionResult(x, y, self.path)
            for x, y in zip(batch, model.predict(np.stack(batch)))]


def test_wrong_or_missing_predictions_fail_batch():
  assert 'wrong prediction' in failed(case_for(WrongOracle), 'batch')
  assert '2 results for 3 examples' in failed(case_for(DropsOne), 'batch')
  assert 'does not carry its example' in failed(
      case_for(CopiesExamples), 'batch')
  assert 'empty_batch: ValueError' in failed(
      case_for(FailsOnEmpty), 'empty_batch')


class FloatBytes(LinearHandler):
  def get_num_bytes(self, batch):
    return 8.0 * len(batch)


class NoNamespace(LinearHandler):
  def get_metrics_namespace(self):
    return ''


class PlainRepr(LinearHandler):
  def __repr__(self):
    return '<handler>'


def test_num_bytes_namespace_and_repr():
  assert 'positive int' in failed(case_for(FloatBytes), 'num_bytes')
  assert 'non-empty str' in failed(case_for(NoNamespace), 'metrics_namespace')
  assert "expected 'Other'" in failed(
      case_for(LinearHandler, expected_namespace='Other'), 'metrics_namespace')
  assert 'does not name the class PlainRepr' in failed(
      case_for(PlainRepr), 'repr')
  results = check_model_handler(case_for(LinearHandler), checks=['repr'])
  assert results[0].status == 'passed'  # LinearHandler(path='.../linear.json')


class SaysNothing(LinearHandler):
  def run_inference(self, batch, model, inference_args=None):
    try:
      return super().run_inference(batch, model, inference_args)
    except TypeError:
      raise ValueError('bad input') from None


class AcceptsAnything(LinearHandler):
  def run_inference(self, batch, model, inference_args=None):
    return [PredictionResult(x, 0.0, self.path) for x in batch]


def test_bad_input_must_fail_and_name_the_example():
  assert 'does not say which' in failed(case_for(SaysNothing), 'bad_input')
  assert 'accepted the bad example' in failed(
      case_for(AcceptsAnything), 'bad_input')


class HoldsALock(LinearHandler):
  def __init__(self, path, **kwargs):
    super().__init__(path, **kwargs)
    self.lock = threading.Lock()


class IgnoresNewPath(LinearHandler):
  def update_model_path(self, model_path=None):
    pass


class SharedState(LinearHandler):
  """update_model_path writes through to state shared with the original."""
  def __init__(self, path, **kwargs):
    super().__init__(path, **kwargs)
    self.paths = {'model': path}

  @property
  def model_location(self):
    return self.paths['model']

  def update_model_path(self, model_path=None):
    self.paths['model'] = model_path

  def __deepcopy__(self, memo):
    return self  # a "copy" that is the same object

  def load_model(self):
    with open(self.paths['model']) as f:
      spec = json.load(f)
    return Linear(spec['w'], spec['b'])


def test_pickling_and_what_refresh_does():
  assert 'does not survive pickle' in failed(case_for(HoldsALock), 'pickle')
  assert 'model_location is' in failed(
      case_for(IgnoresNewPath), 'deepcopy_update_model_path')
  assert 'changed the original' in failed(
      case_for(SharedState), 'deepcopy_update_model_path')


def test_keyed_use_and_unkeyed_data_to_a_keyed_handler():
  results = check_model_handler(
      case_for(LinearHandler, make_keyed_examples=lambda: [
          ('a', np.array([1.0, 0.0])), ('b', np.array([0.0, 1.0]))]),
      checks=['keyed', 'unkeyed_to_keyed'])
  assert {r.status for r in results} == {'passed'}


def test_a_factory_that_drops_large_model_fails():
  case = case_for(LinearHandler,
                  make_handler=lambda tmp, **options: LinearHandler(
                      _write_model(tmp)))
  assert 'share_model_across_processes() is False' in failed(
      case, 'large_model')


class DisagreeingMatrix(LinearHandler):
  def matrix_predictor(self):
    return MatrixPredictor(lambda m, x, a: 2 * m.predict(x))


class NoMatrix(LinearHandler):
  def matrix_predictor(self):
    return None


def test_columnar_predictions_must_match_run_inference():
  assert 'RunInferenceColumnar and run_inference predictions differ' in failed(
      case_for(DisagreeingMatrix), 'columnar')
  # No matrix_predictor(): the check is that RunInferenceColumnar refuses
  # the handler at construction, naming it and predict_fn.
  results = check_model_handler(case_for(NoMatrix), checks=['columnar'])
  assert results[0].status == 'passed', results[0].detail


class ComesAndGoes(LinearHandler):
  """Offers no matrix predictor to the check, then one to the transform."""
  calls = 0

  def matrix_predictor(self):
    type(self).calls += 1
    if type(self).calls == 1:
      return None
    return MatrixPredictor(lambda m, x, a: m.predict(x))


def test_a_handler_refused_by_the_hook_but_accepted_by_the_transform_fails():
  assert 'RunInferenceColumnar accepted the handler' in failed(
      case_for(ComesAndGoes), 'columnar')


def test_gpu_cases_skip_without_a_gpu(monkeypatch):
  import runinference.testing as kit
  monkeypatch.setattr(kit, 'gpu_available', lambda: False)
  results = check_model_handler(case_for(LinearHandler, gpu=True),
                                checks=['load'])
  assert results[0].status == 'skipped' and 'GPU' in results[0].detail


def test_skip_names_checks_that_do_not_apply():
  results = check_model_handler(
      case_for(HoldsALock, skip={'pickle': 'holds a lock on purpose'}),
      checks=['pickle'])
  assert results[0].status == 'skipped'


def test_unknown_check_names_and_bad_cases_are_errors():
  with pytest.raises(ValueError, match="unknown check.*'pikle'"):
    check_model_handler(case_for(LinearHandler), checks=['pikle'])
  with pytest.raises(TypeError, match='examples'):
    check_model_handler(lambda tmp: LinearHandler('x'))
  with pytest.raises(TypeError, match='make_examples must be callable'):
    HandlerCase(name='x', make_handler=lambda tmp: None, make_examples=[1, 2])
  with pytest.raises(ConformanceError, match='at least two'):
    check_model_handler(case_for(LinearHandler,
                                 make_examples=lambda: [np.ones(2)]),
                        checks=['batch'])


def test_parametrize_with_checks_ids_and_marks():
  mark = parametrize_with_checks(
      [case_for(LinearHandler), case_for(LinearHandler, name='gpu', gpu=True)],
      checks=['load', 'columnar'])
  names, params = mark.args
  assert names == 'case, check'
  assert [p.id for p in params] == [
      'LinearHandler-load', 'LinearHandler-columnar', 'gpu-load',
      'gpu-columnar']
  assert [m.name for m in params[2].marks] == ['gpu']
  assert repr(params[1].values[1]) == 'check_columnar'


@parametrize_with_checks([case_for(LinearHandler, name='linear')],
                         checks=['load', 'batch', 'pickle', 'columnar'])
def test_the_parametrizer_runs_checks(case, check, tmp_path):
  check(case, tmp_path)


def test_import_needs_neither_pytest_nor_beam_ml():
  code = ('import sys\n'
          'import runinference.testing\n'
          'print(sorted(m for m in sys.modules if m == "pytest" or '
          'm.startswith("apache_beam.ml")))')
  out = subprocess.run([sys.executable, '-c', code], capture_output=True,
                       text=True, check=True, timeout=120)
  assert out.stdout.strip().splitlines()[-1] == '[]'


def test_public_names_report_the_public_module():
  import runinference.testing as kit
  for name in ('HandlerCase', 'CheckResult', 'check_model_handler',
               'parametrize_with_checks'):
    assert getattr(kit, name).__module__ == 'runinference.testing'
  # errors belong to the one exception hierarchy, re-exported here
  assert kit.ConformanceError.__module__ == 'runinference.exceptions'
  assert issubclass(ConformanceError, AssertionError)


def test_the_custom_handler_example_passes_the_kit(capsys):
  import importlib.util
  from pathlib import Path
  spec = importlib.util.spec_from_file_location(
      'custom_handler_example',
      Path(__file__).resolve().parents[2] / 'examples' / 'custom_handler.py')
  example = importlib.util.module_from_spec(spec)
  sys.modules[spec.name] = example  # its handler pickles by reference
  try:
    spec.loader.exec_module(example)
    assert example.main(['--check']) == 0
  finally:
    del sys.modules[spec.name]
  lines = capsys.readouterr().out.splitlines()
  status = {line.split()[0]: line.split()[1] for line in lines}
  assert set(status) == set(CHECKS)
  # columnar passes too: RunInferenceColumnar refuses the example's handler
  # (it has no matrix_predictor()) with an error naming it and predict_fn.
  assert set(status.values()) == {'passed'}, status
