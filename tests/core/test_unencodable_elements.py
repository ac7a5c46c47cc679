"""Elements Beam cannot encode (issue 18 item 11): a generator, a lambda or a
lock given as an element becomes a dead letter -- on every path (global
window, windowed, preprocessing, keyed) -- instead of crashing the pipeline
with "cannot pickle 'generator' object". Real Beam pipelines, real sklearn."""
import pickle
import threading

import apache_beam as beam
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.linear_model import LinearRegression

from runinference._core.failures import UnpicklableElement, picklable_record
from runinference.base import KeyedModelHandler, RunInference
from runinference.sklearn_inference import SklearnModelHandlerNumpy
from tests.io.test_duckdb import gather


@pytest.fixture(scope='module')
def model_path(tmp_path_factory):
  path = str(tmp_path_factory.mktemp('m') / 'lin.pkl')
  x = np.random.RandomState(0).rand(20, 2)
  with open(path, 'wb') as f:
    pickle.dump(LinearRegression().fit(x, x.sum(axis=1)), f)
  return path


def _odd(kind):
  if kind == 'generator':
    return (v for v in [1.0, 2.0])
  if kind == 'lambda':
    return lambda: 1
  if kind == 'lock':
    return threading.Lock()
  return np.array([1.0, 2.0])


def _strict(x):
  if not isinstance(x, np.ndarray):
    raise TypeError(f'not an array: {type(x).__name__}')
  return x


def _run(model_path, kinds, keyed=False, windowed=False, strict=False):
  """Runs ``kinds`` (one element each) through RunInference with exception
  handling; the odd objects are made by a preprocessing function, inside
  RunInference's own step (Beam samples the elements passed between steps
  and would fail there, before RunInference sees them). ``strict``: a
  second preprocessing function rejects what is not an array. Returns
  [('ok', result) | ('dead', record)]."""
  handler = SklearnModelHandlerNumpy(model_path)
  if strict:  # runs after the function added next (last added runs first)
    handler = handler.with_preprocess_fn(_strict)
  if keyed:
    handler = KeyedModelHandler(handler).with_preprocess_fn(
        lambda t: (t[0], _odd(t[1])))
  else:
    handler = handler.with_preprocess_fn(lambda t: _odd(t[1]))

  def build(p):
    els = p | beam.Create(list(enumerate(kinds)))
    if windowed:
      els = (els | beam.Map(lambda t: beam.window.TimestampedValue(t, t[0]))
             | beam.WindowInto(beam.window.FixedWindows(3)))
    main, dlq = els | RunInference(handler).with_exception_handling()
    dead = dlq.failed_inferences
    if strict:
      dead = (dead, dlq.failed_preprocessing[1]) | 'Both' >> beam.Flatten()
    return ((main | 'Ok' >> beam.Map(lambda r: ('ok', r))),
            (dead | 'Dead' >> beam.Map(lambda r: ('dead', r))))

  return gather(lambda p: build(p) | beam.Flatten()
                | 'Global' >> beam.WindowInto(beam.window.GlobalWindows()))


@pytest.mark.parametrize('windowed', [False, True])
def test_generator_element_is_a_dead_letter(model_path, windowed):
  kinds = ['array'] * 5 + ['generator'] + ['array'] * 5
  got = _run(model_path, kinds, windowed=windowed)
  assert sum(1 for tag, _ in got if tag == 'ok') == 10
  dead = [r for tag, r in got if tag == 'dead']
  assert len(dead) == 1
  (example,), (exc_type, text, _) = dead[0]
  assert isinstance(example, UnpicklableElement)
  assert example.type_name == 'builtins.generator'
  assert 'generator' in text


def test_generator_failing_in_preprocessing_is_a_dead_letter(model_path):
  got = _run(model_path, ['array', 'generator', 'lambda', 'array'],
             strict=True)
  assert sum(1 for tag, _ in got if tag == 'ok') == 2
  dead = [r for tag, r in got if tag == 'dead']
  assert sorted(r[0].type_name for r in dead) == [
      'builtins.function', 'builtins.generator']


def test_keyed_generator_keeps_its_key(model_path):
  got = _run(model_path, ['array', 'generator', 'array'], keyed=True)
  dead = [r for tag, r in got if tag == 'dead']
  assert len(dead) == 1
  (key, example), = dead[0][0]
  assert key == 1 and isinstance(example, UnpicklableElement)


@settings(max_examples=6, deadline=None,
          suppress_health_check=[HealthCheck.too_slow,
                                 HealthCheck.function_scoped_fixture])
@given(kinds=st.lists(st.sampled_from(['array', 'array', 'generator',
                                       'lambda', 'lock']),
                      min_size=1, max_size=25))
def test_property_each_element_once_in_output_or_dead_letters(model_path,
                                                             kinds):
  got = _run(model_path, kinds, keyed=True)
  ok = sorted(r[0] for tag, r in got if tag == 'ok')
  dead = sorted(rec[0][0][0] for tag, rec in got if tag == 'dead')
  assert ok == [i for i, k in enumerate(kinds) if k == 'array']
  assert dead == [i for i, k in enumerate(kinds) if k != 'array']


def test_picklable_record_leaves_picklable_records_alone():
  record = ([np.arange(3)], (ValueError, 'x', ['tb']))
  assert picklable_record(record) is record
  odd = ([('k', (v for v in []))], (ValueError, 'x', []))
  safe = picklable_record(odd)
  pickle.dumps(safe)
  assert safe[0][0][0] == 'k' and safe[1] == odd[1]
