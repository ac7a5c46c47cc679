"""Regression tests for the core defects of issue 13 (each failed before its
fix): count mismatches, timestamps across bundles, hung calls, batch-level
errors not bisected, refresh vetting, element functions, option typos, and
model-file digests."""
import hashlib
import os
import pickle
import subprocess
import sys
import textwrap
import threading
import time
import uuid

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.testing.test_stream import TestStream
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms import window
from sklearn.linear_model import LinearRegression

from runinference.base import (MaybeKeyedModelHandler, ModelHandler,
                               ModelMetadata, RunInference)
from runinference.exceptions import (BatchFailedError, ConfigurationError,
                                     ConfigurationTypeError,
                                     InferenceTimeoutError,
                                     ModelIntegrityError,
                                     RunInferenceError, TooManyHungCalls)
from runinference.sklearn_inference import SklearnModelHandlerNumpy
from tests.helpers import MultiplierHandler, metric, run_pipeline
from tests.core.test_streaming import collected


class ShortModelHandler(ModelHandler):
  """A faulty model: returns ``len(batch) + extra`` predictions."""
  def __init__(self, extra, **kwargs):
    super().__init__(**kwargs)
    self.extra = extra

  def load_model(self):
    return None

  def run_inference(self, batch, model, inference_args=None):
    preds = [x * 10 for x in batch]
    if self.extra < 0:
      return preds[:len(preds) + self.extra]
    return preds + [0] * self.extra


# -- 1. count mismatches ---------------------------------------------------------


def test_maybe_keyed_mixed_batch_with_missing_predictions_loses_nothing():
  data = [('k', 1), 2, ('k', 3), 4, 5, ('k', 6), 7, 8, ('k', 9), 10]
  handler = MaybeKeyedModelHandler(
      ShortModelHandler(-1, min_batch_size=10, max_batch_size=10))

  def build(p):
    main, dlq = (p | beam.Create(data)
                 | RunInference(handler).with_exception_handling())
    assert_that(main | beam.combiners.Count.Globally(), equal_to([0]),
                label='no output is a silent None')
    assert_that(
        dlq.failed_inferences
        | beam.Map(lambda rec: (rec[0][0], rec[1][0].__name__)),
        equal_to([(x, 'ResultCountError') for x in data]), label='all dead')

  run_pipeline(build)


def test_too_many_predictions_fail_the_batch(tmp_path):
  path = str(tmp_path / 'extra.pkl')
  with open(path, 'wb') as f:
    pickle.dump(ExtraRowsModel(), f)
  handler = SklearnModelHandlerNumpy(path)
  with pytest.raises(Exception, match=r'returned \d+ predictions for a batch of \d+ examples'):
    with beam.Pipeline() as p:
      _ = (p | beam.Create([np.array([1.0]), np.array([2.0]), np.array([3.0])])
           | RunInference(handler))


class ExtraRowsModel:
  def predict(self, x):
    return np.concatenate([x.sum(axis=1), [0.0]])


# -- 2. timestamps across bundles --------------------------------------------------


class _Stamp(beam.DoFn):
  def process(self, r, ts=beam.DoFn.TimestampParam, w=beam.DoFn.WindowParam):
    yield (r.example, int(ts.micros // 1_000_000), int(w.start))


def test_each_result_keeps_its_own_timestamp_with_max_batch_duration():
  stream = (
      TestStream().add_elements(
          [window.TimestampedValue(i, 100 + i) for i in range(12)])
      .advance_watermark_to_infinity())
  handler = MultiplierHandler(max_batch_duration_secs=30, max_batch_size=5)
  p = beam.Pipeline(options=beam.options.pipeline_options.PipelineOptions(
      runner='DirectRunner', streaming=True))
  out = (p | stream | 'Fixed' >> beam.WindowInto(window.FixedWindows(6))
         | RunInference(handler) | beam.ParDo(_Stamp()))
  # Collected as a side effect: assert_that's own global-window grouping
  # drops what window-end timers emit after the watermark reached infinity.
  assert collected(p, out, 'stamps') == [
      (i, 100 + i, (100 + i) // 6 * 6) for i in range(12)]


# -- 3. hung calls ---------------------------------------------------------------------


def test_a_hung_model_call_does_not_keep_the_process_alive():
  code = textwrap.dedent('''
      import threading, apache_beam as beam
      from runinference.base import ModelHandler, RunInference

      class Hang(ModelHandler):
        def load_model(self):
          return None
        def run_inference(self, batch, model, inference_args=None):
          if 3 in batch:
            threading.Event().wait()  # forever
          return list(batch)

      with beam.Pipeline() as p:
        main, dlq = (p | beam.Create(list(range(6)))
                     | RunInference(Hang(max_batch_size=1))
                     .with_exception_handling(timeout=1))
        dlq.failed_inferences | beam.Map(lambda r: print('DEAD', r[0]))
      print('PIPELINE DONE', flush=True)
  ''')
  start = time.time()
  done = subprocess.run([sys.executable, '-c', code], capture_output=True,
                        text=True, timeout=240)
  assert done.returncode == 0, done.stderr[-2000:]
  assert 'PIPELINE DONE' in done.stdout and 'DEAD [3]' in done.stdout
  assert time.time() - start < 240


def test_hung_calls_are_bounded():
  from runinference._core.timeouts import TimeoutRunner
  release = threading.Event()
  runner = TimeoutRunner(0.2, max_hung=2)
  before = threading.active_count()
  for _ in range(2):
    with pytest.raises(InferenceTimeoutError):
      runner(release.wait)
  with pytest.raises(TooManyHungCalls, match='still running'):
    runner(lambda: 1)
  assert threading.active_count() - before <= 2  # no thread per attempt
  assert all(t.daemon for t in threading.enumerate()
             if t.name == 'runinference-timeout')
  release.set()
  deadline = time.time() + 5
  while runner.hung_calls() and time.time() < deadline:
    time.sleep(0.02)
  assert runner(lambda: 7) == 7  # usable again once they returned


# -- 4. batch-level errors are not bisected --------------------------------------------


class ThrottledHandler(ModelHandler):
  """Every call fails with a server-side error, counted in a file."""
  def __init__(self, calls_file, **kwargs):
    super().__init__(**kwargs)
    self.calls_file = calls_file

  def load_model(self):
    return None

  def run_inference(self, batch, model, inference_args=None):
    with open(self.calls_file, 'a') as f:
      f.write(f'{len(batch)}\n')
    raise BatchFailedError('HTTP 503 from the model server')


def test_batch_failed_error_fails_the_batch_once(tmp_path):
  calls = str(tmp_path / 'calls.txt')
  handler = ThrottledHandler(calls, min_batch_size=8, max_batch_size=8)

  def build(p):
    _, dlq = (p | beam.Create(list(range(8)))
              | RunInference(handler).with_exception_handling())
    assert_that(dlq.failed_inferences | beam.Map(lambda r: r[0][0]),
                equal_to(list(range(8))))

  run_pipeline(build)
  with open(calls) as f:
    assert f.read().split() == ['8']  # one request, not 2N-1


def test_bisect_failures_api():
  from runinference._core.failures import bisect_failures

  def call(lo, hi):
    if 5 in range(lo, hi):
      raise ValueError('bad 5')
    return list(range(lo, hi))

  out = bisect_failures(8, call, ValueError('x'), catches=lambda e: True)
  assert [(f.start, f.stop) for f in out.failures] == [(5, 6)]
  assert sorted(i for r in out.results for i in r.value) == [
      0, 1, 2, 3, 4, 6, 7]
  with pytest.raises(KeyError):
    bisect_failures(2, call, KeyError('no'), catches=lambda e: False)


# -- 5. refresh vets a candidate -------------------------------------------------------


def _save(path, obj):
  tmp = f'{path}.{uuid.uuid4().hex}.tmp'
  with open(tmp, 'wb') as f:
    pickle.dump(obj, f)
  os.replace(tmp, path)
  return path


def _linear(factor, width=1):
  x = np.arange(10 * width, dtype=float).reshape(-1, width)
  return LinearRegression().fit(x, factor * x.sum(axis=1))


def _engine(handler, **options):
  from runinference._core.batching import BatchConfig
  from runinference._core.engine import InferenceEngine
  from runinference._core.failures import ErrorPolicy
  engine = InferenceEngine(
      handler, namespace=None, inference_args=None, policy=ErrorPolicy(),
      batch_config=BatchConfig(), prebatched=False, tag=uuid.uuid4().hex,
      load_eagerly=True, refreshable=True, **options)
  engine.setup()
  return engine


@pytest.mark.parametrize('bad', ['dict', 'wrong_width'])
def test_a_model_that_loads_but_cannot_predict_is_not_swapped_in(tmp_path, bad):
  first = _save(str(tmp_path / 'a.pkl'), _linear(2))
  engine = _engine(SklearnModelHandlerNumpy(first))
  assert engine.run([np.array([1.0])]).outputs[0].inference == pytest.approx(2)
  obj = {'not': 'a model'} if bad == 'dict' else _linear(5, width=3)
  candidate = _save(str(tmp_path / 'b.pkl'), obj)
  engine.refresh(ModelMetadata(candidate, 'b'))
  out = engine.run([np.array([4.0])]).outputs[0]
  assert out.inference == pytest.approx(8) and out.model_id == first
  good = _save(str(tmp_path / 'c.pkl'), _linear(3))
  engine.refresh(ModelMetadata(good, 'c'))
  assert engine.run([np.array([1.0])]).outputs[0].inference == pytest.approx(3)


def test_refresh_sample_checks_a_candidate_before_any_example(tmp_path):
  first = _save(str(tmp_path / 'a.pkl'), _linear(2))
  engine = _engine(SklearnModelHandlerNumpy(first),
                   refresh_sample=[np.array([1.0])])
  engine.refresh(ModelMetadata(_save(str(tmp_path / 'b.pkl'), {}), 'b'))
  assert engine.run([np.array([1.0])]).outputs[0].model_id == first


def test_rejected_refresh_is_counted_and_the_pipeline_lives(tmp_path):
  first = _save(str(tmp_path / 'a.pkl'), _linear(2))
  bad = str(tmp_path / 'bad.pkl')

  def build(p):
    side = (p | 'Meta' >> beam.Create([ModelMetadata(bad, 'bad')]))
    out = (p | beam.Create([np.array([1.0]), np.array([2.0])])
           | RunInference(SklearnModelHandlerNumpy(first),
                          model_metadata_pcoll=side,
                          refresh_sample=[np.array([1.0])]))
    assert_that(out | beam.Map(lambda r: round(float(r.inference), 3)),
                equal_to([2.0, 4.0]))

  _save(bad, _linear(5, width=3))
  result = run_pipeline(build)
  assert metric(result, 'BeamML_Sklearn', 'model_refresh_rejected') == 1


# -- 6. refresh picks up files new to the pattern ----------------------------------------


def test_watched_files_new_to_the_pattern_are_loaded_whatever_their_mtime(
    tmp_path):
  from runinference._core.watch import FilePatternPoller, WatchSpec
  there = _save(str(tmp_path / 'm0.pkl'), _linear(1))
  # (allow_pickle: the files have no sidecar digest; vetting is tested in
  # core/test_refresh_pickle_safety.py)
  spec = WatchSpec(str(tmp_path / '*.pkl'), 1, time.time(), float('inf'),
                   allow_pickle=True)
  poller = FilePatternPoller(spec)
  assert poller.check() is None  # there at the start
  staged = _save(str(tmp_path / 'staging.bin'), _linear(2))
  old = time.time() - 3600
  os.utime(staged, (old, old))  # staged an hour ago, moved in now
  moved = str(tmp_path / 'm1.pkl')
  os.replace(staged, moved)
  assert poller.check().model_id == moved
  poller.loaded(moved)
  # A good file older than a failed one, both new at once: after the newer
  # one fails, the older one is still offered.
  good = _save(str(tmp_path / 'm2.pkl'), _linear(3))
  os.utime(good, (old, old))
  broken = _save(str(tmp_path / 'm3.pkl'), {})
  assert poller.check().model_id == broken
  poller.failed(broken)
  assert poller.check().model_id == good
  poller.loaded(good)
  assert poller.check() is None
  assert there  # never offered


# -- 7. user functions per element, exc_class -----------------------------------------


def test_element_size_fn_failing_on_one_element_dead_letters_it():
  def size(x):
    if x == 3:
      raise ValueError('cannot size 3')
    return 1

  handler = MultiplierHandler(
      max_batch_size=4, max_batch_weight=4, element_size_fn=size)

  def build(p):
    main, dlq = (p | beam.Create(list(range(6)))
                 | RunInference(handler).with_exception_handling())
    assert_that(main | beam.Map(lambda r: r.inference),
                equal_to([0, 2, 4, 8, 10]), label='main')
    assert_that(dlq.failed_inferences | beam.Map(lambda r: r[0]),
                equal_to([[3]]), label='dead')

  run_pipeline(build)


def test_batch_length_fn_failing_dead_letters_the_element():
  def length(x):
    if x == 2:
      raise TypeError('no length')
    return x

  handler = MultiplierHandler(max_batch_size=3, batch_length_fn=length)

  def build(p):
    main, dlq = (p | beam.Create(list(range(5)))
                 | RunInference(handler).with_exception_handling())
    assert_that(main | beam.Map(lambda r: r.example), equal_to([0, 1, 3, 4]),
                label='main')
    assert_that(dlq.failed_inferences | beam.Map(lambda r: r[0]),
                equal_to([[2]]), label='dead')

  run_pipeline(build)


def test_exc_class_as_a_string_is_rejected_at_construction():
  with pytest.raises(ConfigurationTypeError, match="not a string"):
    RunInference(MultiplierHandler()).with_exception_handling(
        exc_class='ValueError')


# -- 8. option typos -------------------------------------------------------------------


def test_misspelled_handler_option_names_the_intended_one():
  with pytest.raises(TypeError, match="'max_batchsize'.*'max_batch_size'"):
    MultiplierHandler(max_batchsize=2)


@pytest.mark.parametrize('copies', [0, -3, 1.5, True])
def test_model_copies_must_be_a_positive_int(copies):
  with pytest.raises(ConfigurationError, match='model_copies'):
    MultiplierHandler(model_copies=copies)


def test_element_size_fn_without_max_batch_weight_is_an_error():
  with pytest.raises(ConfigurationError, match='max_batch_weight'):
    with beam.Pipeline() as p:
      _ = p | beam.Create([1]) | RunInference(
          MultiplierHandler(element_size_fn=len))


def test_runinference_option_typo_names_the_intended_one():
  with pytest.raises(TypeError, match="'intervall'.*'interval'"):
    RunInference(MultiplierHandler(), intervall=3)


# -- model-file digests -------------------------------------------------------------------


def _sha(path):
  with open(path, 'rb') as f:
    return hashlib.sha256(f.read()).hexdigest()


def test_model_sha256_is_checked_before_loading(tmp_path):
  path = _save(str(tmp_path / 'm.pkl'), _linear(2))
  ok = SklearnModelHandlerNumpy(path, model_sha256=[_sha(path), '0' * 64])
  with beam.Pipeline() as p:
    out = p | beam.Create([np.array([1.0])]) | RunInference(ok)
    assert_that(out | beam.Map(lambda r: round(float(r.inference), 3)),
                equal_to([2.0]))
  bad = SklearnModelHandlerNumpy(path, model_sha256='f' * 64)
  with pytest.raises(Exception, match=f'{_sha(path)}') as info:
    with beam.Pipeline() as p:
      _ = p | beam.Create([np.array([1.0])]) | RunInference(bad)
  assert 'm.pkl' in str(info.value)


def test_refresh_candidate_with_another_digest_is_never_loaded(tmp_path):
  first = _save(str(tmp_path / 'a.pkl'), _linear(2))
  marker = tmp_path / 'ran'
  evil = str(tmp_path / 'evil.pkl')
  with open(evil, 'wb') as f:
    pickle.dump(_Marker(str(marker)), f)
  engine = _engine(SklearnModelHandlerNumpy(first, model_sha256=_sha(first)))
  engine.refresh(ModelMetadata(evil, 'evil'))
  assert not marker.exists()  # the pickle's code never ran
  assert engine.run([np.array([1.0])]).outputs[0].model_id == first


def test_model_integrity_error_and_bad_digest_option():
  assert issubclass(ModelIntegrityError, RunInferenceError)
  with pytest.raises(ConfigurationError, match='64-character'):
    MultiplierHandler(model_sha256='abc')


class _Marker:
  """Unpickling it writes a file (what a malicious pickle could do)."""
  def __init__(self, path):
    self.path = path

  def __reduce__(self):
    return (_touch, (self.path,))


def _touch(path):
  with open(path, 'w') as f:
    f.write('ran')
  return LinearRegression()
