"""Model refresh on the local DirectRunner in streaming mode: watching a
folder (the inference step polls it), ModelMetadata side inputs, keyed
refresh, and what happens around a switch (nothing lost, nothing doubled,
a bad file changes nothing, the old model is released)."""
import hashlib
import os
import pickle
import time
import uuid
import weakref

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.util import BeamAssertException, assert_that
from apache_beam.transforms import window
from apache_beam.transforms.periodicsequence import PeriodicImpulse
from sklearn.linear_model import LinearRegression

from runinference.base import (KeyedModelHandler, KeyModelMapping,
                               KeyModelPathMapping, ModelMetadata,
                               RunInference)
from runinference.sklearn_inference import SklearnModelHandlerNumpy
from runinference.utils import WatchFilePattern

# -- helpers -------------------------------------------------------------------


def publish(path, data, digest=True):
  """Writes ``data`` to ``path`` atomically, as a training job publishes a
  model: its SHA-256 first, in the sidecar ``path.sha256`` (what a watched
  pickle needs to be loaded), then the file itself."""
  if digest:
    write_atomically(f'{path}.sha256',
                     f'{hashlib.sha256(data).hexdigest()}  '
                     f'{os.path.basename(path)}\n'.encode())
  write_atomically(path, data)
  return path


def write_atomically(path, data):
  tmp = f'{path}.{uuid.uuid4().hex}.tmp'
  with open(tmp, 'wb') as f:
    f.write(data)
  os.replace(tmp, path)


def save_model(path, factor, digest=True):
  """A LinearRegression that learned y = factor * x, published with its
  digest."""
  x = np.arange(10, dtype=float).reshape(-1, 1)
  return publish(path, pickle.dumps(
      LinearRegression().fit(x, factor * x.ravel())), digest)


def save_corrupt(path):
  return publish(path, b'this is not a pickled model')


def factor_of(model_id):
  """Model files are named <anything>x<factor>.pkl."""
  return float(os.path.basename(model_id).split('x')[-1].split('.')[0])


def streaming_pipeline():
  return beam.Pipeline(
      options=PipelineOptions(runner='DirectRunner', streaming=True))


def counters(result, suffix):
  found = result.metrics().query(MetricsFilter())['counters']
  return sum(c.committed for c in found if c.key.metric.name.endswith(suffix))


def numbered(p, n, interval=0.05, label='Tick'):
  """0..n-1 arriving one by one, ``interval`` seconds apart."""
  return (
      p
      | label >> PeriodicImpulse(
          data=list(range(n)), fire_interval=interval,
          start_timestamp=time.time())
      | f'{label}Array' >> beam.Map(lambda i: np.array([float(i)])))


def drop_files_at(schedule, settle=1.5):
  """A step that writes files when given elements pass: ``schedule`` maps an
  element index to ``(writer, path, *args)`` (runs before that element
  reaches RunInference, so the drop is ordered with the stream)."""
  def maybe_drop(x):
    job = schedule.get(int(x[0]))
    if job is not None:
      writer, *args = job
      writer(*args)
      # Give the watcher time to see the file even when a slow start made
      # the periodic source release its elements in one burst.
      time.sleep(settle)
    return x

  return beam.Map(maybe_drop)


def check_switches(n, phases, optional=()):
  """Matcher: every index 0..n-1 exactly once; each result's inference
  matches the model its model_id names; model ids by index follow
  ``phases`` (a list of ``(first index it may start at, factor)``) in order,
  each phase present (but the factors in ``optional``), the last one serving
  the last element."""
  def check(results):
    got = sorted(int(r.example[0]) for r in results)
    if got != list(range(n)):
      missing = sorted(set(range(n)) - set(got))
      raise BeamAssertException(
          f'elements lost or duplicated: {len(got)} results, missing '
          f'{missing[:10]}')
    by_index = {}
    for r in results:
      i = int(r.example[0])
      k = factor_of(r.model_id)
      if not np.isclose(float(np.ravel(r.inference)[0]), k * i):
        raise BeamAssertException(
            f'element {i}: inference {r.inference} is not from {r.model_id}')
      by_index[i] = k
    seq = [by_index[i] for i in range(n)]
    phase = 0
    for i, k in enumerate(seq):
      while phase < len(phases) and phases[phase][1] != k:
        phase += 1
      if phase == len(phases):
        raise BeamAssertException(
            f'element {i} served by x{k}, out of the order {phases}: {seq}')
      if i < phases[phase][0]:
        raise BeamAssertException(
            f'element {i} served by x{k} before it was dropped: {seq}')
    served = set(seq)
    for _, k in phases:
      if k not in served and k not in optional:
        raise BeamAssertException(f'model x{k} never served: {seq}')
    if seq[-1] != phases[-1][1]:
      raise BeamAssertException(f'last element not on the newest model: {seq}')

  return check


@pytest.fixture
def models(tmp_path):
  d = tmp_path / 'models'
  d.mkdir()
  return d


# -- the watched folder ----------------------------------------------------------


def test_watch_model_pattern_switches_mid_stream(models):
  first = save_model(str(models / 'model_x2.pkl'), 2)  # there before the start
  new = str(models / 'model_x3.pkl')
  n, drop_at = 40, 10
  p = streaming_pipeline()
  out = (
      numbered(p, n)
      | drop_files_at({drop_at: (save_model, new, 3)})
      | RunInference(
          SklearnModelHandlerNumpy(first),
          watch_model_pattern=str(models / '*.pkl'),
          interval=0.1))
  assert_that(out, check_switches(n, [(0, 2), (drop_at, 3)]))
  result = p.run()
  result.wait_until_finish()
  assert counters(result, 'model_x3_num_inferences') > 0
  assert counters(result, 'model_swaps') == 1
  assert counters(result, 'model_load_failures') == 0


def test_watch_file_pattern_side_input_and_corrupt_file(models):
  """A corrupt new file is reported and the old model keeps serving; the
  next good file is picked up."""
  first = save_model(str(models / 'm_x2.pkl'), 2)
  bad, good = str(models / 'm_x5.pkl'), str(models / 'm_x7.pkl')
  n = 45
  p = streaming_pipeline()
  side = p | 'Watch' >> WatchFilePattern(
      file_pattern=str(models / 'm_*.pkl'), interval=0.1)
  out = (
      numbered(p, n)
      | drop_files_at({10: (save_corrupt, bad), 25: (save_model, good, 7)})
      | RunInference(SklearnModelHandlerNumpy(first), model_metadata_pcoll=side))
  assert_that(out, check_switches(n, [(0, 2), (25, 7)]))
  result = p.run()
  result.wait_until_finish()
  assert counters(result, 'model_load_failures') == 1
  assert counters(result, 'model_swaps') == 1
  assert counters(result, 'm_x7_num_inferences') > 0


def test_newer_file_at_start_is_served_from_the_first_element(models):
  """A file newer than the pipeline's construction is there when the step
  starts: the handler's own model is never used."""
  first = save_model(str(models / 'a_x2.pkl'), 2)
  p = streaming_pipeline()
  watch = p | WatchFilePattern(str(models / '*.pkl'), interval=60)
  save_model(str(models / 'b_x4.pkl'), 4)  # after construction, before run
  out = (
      p | beam.Create([np.array([float(i)]) for i in range(5)])
      | RunInference(SklearnModelHandlerNumpy(first), model_metadata_pcoll=watch))
  assert_that(out, check_switches(5, [(0, 4)]))
  p.run().wait_until_finish()


def test_watch_file_pattern_as_a_pcollection_holds_the_newest_model(models):
  save_model(str(models / 'old_x1.pkl'), 1)
  p = streaming_pipeline()
  watch = p | WatchFilePattern(str(models / '*.pkl'))
  newest = save_model(str(models / 'new_x9.pkl'), 9)
  assert_that(
      watch, lambda got: got == [ModelMetadata(newest, 'new_x9')] or (
          _raise(f'got {got}')))
  p.run().wait_until_finish()


def _raise(msg):
  raise BeamAssertException(msg)


def test_stop_timestamp_ends_watching(models):
  first = save_model(str(models / 's_x2.pkl'), 2)
  n = 30
  p = streaming_pipeline()
  out = (
      numbered(p, n)
      | drop_files_at({10: (save_model, str(models / 's_x3.pkl'), 3)})
      | RunInference(
          SklearnModelHandlerNumpy(first),
          watch_model_pattern=str(models / '*.pkl'),
          interval=0.1,
          stop_timestamp=time.time() - 1))
  assert_that(out, check_switches(n, [(0, 2)]))
  p.run().wait_until_finish()


# -- ModelMetadata side inputs --------------------------------------------------


def test_model_metadata_side_input_switches_and_renames_metrics(models):
  first = save_model(str(models / 'x2.pkl'), 2)
  second = save_model(str(models / 'x3.pkl'), 3)
  p = streaming_pipeline()
  side = p | 'Side' >> beam.Create([ModelMetadata(second, 'challenger')])
  out = (
      p | beam.Create([np.array([float(i)]) for i in range(6)])
      | RunInference(SklearnModelHandlerNumpy(first), model_metadata_pcoll=side))
  assert_that(out, check_switches(6, [(0, 3)]))
  result = p.run()
  result.wait_until_finish()
  assert counters(result, 'challenger_num_inferences') == 6


def test_windowed_side_input_switches_per_window(models):
  """Beam's slowly-changing side input: the model for each window."""
  paths = {k: save_model(str(models / f'w_x{k}.pkl'), k) for k in (2, 3, 4)}
  base = 1_000_000_000
  side_items = [(base + 0, ModelMetadata('', '')),
                (base + 10, ModelMetadata(paths[3], 'three')),
                (base + 20, ModelMetadata(str(models / 'missing.pkl'), 'gone')),
                (base + 30, ModelMetadata(paths[4], 'four'))]
  p = streaming_pipeline()
  side = (
      p | 'Side' >> beam.Create(side_items)
      | 'SideTs' >> beam.Map(lambda x: window.TimestampedValue(x[1], x[0]))
      | 'SideWin' >> beam.WindowInto(window.FixedWindows(10)))
  main = (
      p | beam.Create(list(range(0, 40, 2)))
      | beam.Map(lambda i: window.TimestampedValue(np.array([float(i)]), base + i))
      | beam.WindowInto(window.FixedWindows(10)))
  out = main | RunInference(
      SklearnModelHandlerNumpy(paths[2]), model_metadata_pcoll=side)

  def check(results):
    got = {int(r.example[0]): factor_of(r.model_id) for r in results}
    want = {i: (2 if i < 10 else 3 if i < 30 else 4) for i in range(0, 40, 2)}
    if got != want:
      raise BeamAssertException(f'{got} != {want}')

  assert_that(out, check)
  result = p.run()
  result.wait_until_finish()
  assert counters(result, 'model_load_failures') == 1


# -- keyed refresh ------------------------------------------------------------------


def test_keyed_refresh_per_key_and_all_or_nothing(models):
  m = {
      name: save_model(str(models / f'{name}_x{k}.pkl'), k)
      for name, k in (('a', 2), ('b', 3), ('a2', 5), ('b2', 7), ('b3', 11))
  }
  bad = save_corrupt(str(models / 'bad_x0.pkl'))
  handler = KeyedModelHandler([
      KeyModelMapping(['a'], SklearnModelHandlerNumpy(m['a'])),
      KeyModelMapping(['b', 'c'], SklearnModelHandlerNumpy(m['b'])),
  ])

  def mapping(a, b, c):
    return [
        KeyModelPathMapping(keys=['a'], update_path=a, model_id=a),
        KeyModelPathMapping(keys=['b'], update_path=b, model_id=b),
        KeyModelPathMapping(keys=['c'], update_path=c, model_id=c)
    ]

  base = 1_000_000_000
  side_items = [
      (base + 0, mapping(m['a'], m['b'], m['b'])),
      (base + 10, mapping(m['a2'], m['b'], m['b'])),  # a moves
      (base + 20, mapping(bad, m['b2'], m['b2'])),  # a fails: nothing moves
      (base + 30, mapping(m['a2'], m['b2'], m['b3'])),  # b moves, c splits
  ]
  p = streaming_pipeline()
  side = (
      p | 'Side' >> beam.Create(side_items)
      | 'SideTs' >> beam.Map(lambda x: window.TimestampedValue(x[1], x[0]))
      | 'SideWin' >> beam.WindowInto(window.FixedWindows(10)))
  examples = [(key, t) for t in (1, 11, 21, 31) for key in 'abc']
  out = (
      p | beam.Create(examples)
      | beam.Map(lambda kt: window.TimestampedValue(
          (kt[0], np.array([float(kt[1])])), base + kt[1]))
      | beam.WindowInto(window.FixedWindows(10))
      | RunInference(handler, model_metadata_pcoll=side))
  want = {
      ('a', 1): 2, ('b', 1): 3, ('c', 1): 3,
      ('a', 11): 5, ('b', 11): 3, ('c', 11): 3,
      ('a', 21): 5, ('b', 21): 3, ('c', 21): 3,
      ('a', 31): 5, ('b', 31): 7, ('c', 31): 11,
  }

  def check(results):
    got = {}
    for key, r in results:
      t = int(r.example[0])
      k = factor_of(r.model_id)
      if not np.isclose(float(np.ravel(r.inference)[0]), k * t):
        raise BeamAssertException(f'{key},{t}: {r} not from {r.model_id}')
      got[(key, t)] = k
    if got != want:
      raise BeamAssertException(f'{got} != {want}')

  assert_that(out, check)
  p.run().wait_until_finish()


# -- load-then-swap, without a pipeline -------------------------------------------


def _engine(handler, **options):
  from runinference._core.batching import BatchConfig
  from runinference._core.engine import InferenceEngine
  from runinference._core.failures import ErrorPolicy
  engine = InferenceEngine(
      handler, namespace=None, inference_args=None, policy=ErrorPolicy(),
      batch_config=BatchConfig(), prebatched=False, tag=uuid.uuid4().hex,
      load_eagerly=True, **options)
  engine.setup()
  return engine


def test_swap_releases_the_old_model(models):
  engine = _engine(SklearnModelHandlerNumpy(save_model(str(models / 'r_x2.pkl'), 2)))
  old = weakref.ref(engine.holder.get().model)
  out = engine.run([np.array([1.0])]).outputs
  assert np.isclose(out[0].inference, 2)
  engine.refresh(ModelMetadata(save_model(str(models / 'r_x3.pkl'), 3), 'r3'))
  assert old() is None  # freed at once (no collection needed)
  out = engine.run([np.array([1.0])]).outputs
  assert np.isclose(out[0].inference, 3)
  assert out[0].model_id.endswith('r_x3.pkl')
  assert engine.metrics.prefix == 'r3_'


def test_failed_load_keeps_the_old_model(models, caplog):
  first = save_model(str(models / 'f_x2.pkl'), 2)
  engine = _engine(SklearnModelHandlerNumpy(first))
  current = engine.holder.get()
  engine.refresh(ModelMetadata(save_corrupt(str(models / 'f_x9.pkl')), 'bad'))
  assert engine.holder.get() is current
  assert 'keeps serving' in caplog.text
  out = engine.run([np.array([2.0])]).outputs
  assert np.isclose(out[0].inference, 4) and out[0].model_id == first
  assert engine.metrics.prefix == ''


def test_background_watcher_loads_while_old_model_serves(models):
  """The watcher loads in its own thread; the serving thread only switches
  (between batches) once the new model is ready."""
  from runinference._core.watch import WatchSpec
  first = save_model(str(models / 'g_x2.pkl'), 2)
  engine = _engine(
      SklearnModelHandlerNumpy(first),
      watch_spec=WatchSpec(str(models / '*.pkl'), 0.05, time.time(),
                           float('inf')))
  engine.refresher.start()
  try:
    save_model(str(models / 'g_x3.pkl'), 3)
    deadline = time.time() + 10
    while not engine.refresher.pending and time.time() < deadline:
      out = engine.run([np.array([1.0])]).outputs  # serving meanwhile
      assert np.isclose(out[0].inference, 2)
      time.sleep(0.01)
    engine.record_switches(engine.refresher.take())
    out = engine.run([np.array([1.0])]).outputs
    assert np.isclose(out[0].inference, 3)
  finally:
    engine.teardown()


def test_poller_offers_each_newer_file_once_and_retries_changed_failures(models):
  from runinference._core.watch import FilePatternPoller, WatchSpec
  save_model(str(models / 'p_x1.pkl'), 1)
  poller = FilePatternPoller(
      WatchSpec(str(models / '*.pkl'), 1, time.time(), float('inf')))
  assert poller.check() is None  # only files older than the start
  time.sleep(0.01)
  p2 = save_corrupt(str(models / 'p_x2.pkl'))
  md = poller.check()
  assert md == ModelMetadata(p2, 'p_x2')
  poller.failed(p2)
  assert poller.check() is None  # unchanged: not offered again
  time.sleep(0.01)
  save_model(p2, 2)  # rewritten: offered again
  assert poller.check() == md
  poller.loaded(p2)
  assert poller.check() is None
  expired = FilePatternPoller(
      WatchSpec(str(models / '*.pkl'), 1, 0, time.time() - 1))
  assert expired.check() is None


def test_watch_file_pattern_validates_arguments():
  with pytest.raises(ValueError, match='file_pattern'):
    WatchFilePattern('')
  with pytest.raises(ValueError, match='interval'):
    WatchFilePattern('/tmp/*.pkl', interval=0)
