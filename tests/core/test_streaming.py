"""Streaming on the local DirectRunner: batching across bundles with
max_batch_duration_secs (on both local engines), unbounded sources, results
keeping their windows, and a model refresh inside a streaming batch stream."""
import itertools
import time

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_stream import TestStream
from apache_beam.testing.util import BeamAssertException, assert_that, equal_to
from apache_beam.transforms import window
from apache_beam.transforms.periodicsequence import PeriodicImpulse

from runinference._core.batching import BatchConfig
from runinference._core.stream_batching import (LocalStreamBatchElements,
                                                StampedBatchElements,
                                                batch_across_bundles)
from runinference.base import RunInference
from runinference.sklearn_inference import SklearnModelHandlerNumpy
from tests.helpers import EchoBatchHandler, MultiplierHandler
from tests.core.test_refresh import (check_switches, drop_files_at, numbered,
                                save_model)


def streaming_pipeline():
  return beam.Pipeline(
      options=PipelineOptions(runner='DirectRunner', streaming=True))


# TestStream runs on Beam's bundle-based engine, which drops what timers emit
# when the watermark jumps to infinity at any GroupByKey downstream -- also
# assert_that's (Beam's own BatchElements loses its last batch the same way).
# These tests therefore collect outputs in the process instead.
_COLLECTED: dict = {}


def _collect(x, key):
  _COLLECTED.setdefault(key, []).append(x)


def collected(p, pcoll, key):
  _COLLECTED.pop(key, None)
  _ = pcoll | f'Collect{key}' >> beam.Map(_collect, key)
  p.run().wait_until_finish()
  return sorted(_COLLECTED.pop(key, []))


def test_max_batch_duration_with_an_unbounded_source():
  """Beam's BatchElements(max_batch_duration_secs) needs a processing-time
  timer, which the local runner cannot combine with PeriodicImpulse; ours
  runs, and every element comes out once, soon after it arrived."""
  n = 30
  p = streaming_pipeline()
  out = (
      p | PeriodicImpulse(
          data=list(range(n)), fire_interval=0.02, start_timestamp=time.time())
      | beam.Map(lambda i: (i, time.time()))
      | RunInference(
          EchoBatchHandler(max_batch_duration_secs=0.5, max_batch_size=8))
      | beam.Map(lambda r: (r.example[0], time.time() - r.example[1])))

  def check(got):
    ids = sorted(i for i, _ in got)
    if ids != list(range(n)):
      raise BeamAssertException(f'lost or duplicated: {ids}')
    waited = max(w for _, w in got)
    if waited > 5:
      raise BeamAssertException(f'an element waited {waited:.1f}s')

  assert_that(out, check)
  p.run().wait_until_finish()


def test_max_batch_duration_batches_across_bundles():
  """With TestStream (the bundle-based engine) elements that arrive in
  separate bundles share a batch; the rest is flushed at the window end."""
  p = streaming_pipeline()
  stream = (
      TestStream().add_elements([1, 2]).advance_processing_time(1)
      .advance_watermark_to(10).add_elements([3, 4]).advance_processing_time(1)
      .add_elements([5]).advance_watermark_to_infinity())
  out = (
      p | stream
      | RunInference(EchoBatchHandler(max_batch_duration_secs=30, max_batch_size=3))
      | beam.Map(lambda r: (r.example, r.inference)))
  assert collected(p, out, 'across') == [
      (1, (1, 2, 3)), (2, (1, 2, 3)), (3, (1, 2, 3)), (4, (4, 5)), (5, (4, 5))]


_TICKS = itertools.count()


def _clock():
  # Each call is 0.4 s after the previous one.
  return next(_TICKS) * 0.4


def _values(stamped_batch):
  """The values of a batch of (value, timestamp) rows, sorted."""
  return sorted(value for value, _ in stamped_batch)


def test_batch_is_cut_when_its_oldest_element_waited_long_enough():
  p = streaming_pipeline()
  stream = TestStream().add_elements(list(range(10))).advance_watermark_to_infinity()
  cfg = BatchConfig(max_batch_size=100, max_batch_duration_secs=1.0)
  out = (
      p | stream | LocalStreamBatchElements(cfg, clock=_clock)
      | beam.Map(_values))
  # arrivals 0, .4, .8, 1.2 -> cut at the 4th; the last two at the window end
  assert collected(p, out, 'duration') == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_batches_respect_length_buckets_across_bundles():
  p = streaming_pipeline()
  words = ['a', 'bb', 'cccccccccccccccccccc', 'dd', 'eeeeeeeeeeeeeeeeeeeeeeee']
  stream = TestStream().add_elements(words).advance_watermark_to_infinity()
  cfg = BatchConfig(
      max_batch_size=10, max_batch_duration_secs=60, length_fn=len,
      bucket_boundaries=[5])
  out = p | stream | LocalStreamBatchElements(cfg) | beam.Map(_values)
  assert collected(p, out, 'buckets') == [
      ['a', 'bb', 'dd'], ['cccccccccccccccccccc', 'eeeeeeeeeeeeeeeeeeeeeeee']]


def test_windows_and_timestamps_survive_streaming_batching():
  p = streaming_pipeline()
  stream = (
      TestStream().add_elements([window.TimestampedValue(i, i) for i in range(6)])
      .advance_watermark_to_infinity())
  out = (
      p | stream | beam.WindowInto(window.FixedWindows(3))
      | RunInference(EchoBatchHandler(max_batch_duration_secs=5, max_batch_size=10))
      | beam.Map(lambda r, w=beam.DoFn.WindowParam: (r.example, r.inference, w.start)))
  assert collected(p, out, 'windows') == [
      (0, (0, 1, 2), 0), (1, (0, 1, 2), 0), (2, (0, 1, 2), 0),
      (3, (3, 4, 5), 3), (4, (3, 4, 5), 3), (5, (3, 4, 5), 3)]


def test_unbounded_source_without_duration_batches_within_bundles():
  n = 20
  p = streaming_pipeline()
  out = (
      p | PeriodicImpulse(
          data=list(range(n)), fire_interval=0.02, start_timestamp=time.time())
      | RunInference(EchoBatchHandler())
      | beam.Map(lambda r: r.example))
  assert_that(out, equal_to(list(range(n))))
  p.run().wait_until_finish()


def test_refresh_while_batching_across_bundles(tmp_path):
  first = save_model(str(tmp_path / 'b_x2.pkl'), 2)
  n = 40
  p = streaming_pipeline()
  out = (
      numbered(p, n)
      # The drop is ordered with the stream only within a bundle: when a
      # slow start makes the periodic source release its elements in one
      # burst, elements before the drop reach RunInference after it, and
      # may all be served by the new model. What must hold whatever the
      # timing: every element once, from the model its id names, the old
      # model never after the new one, and the new one serving the end.
      | drop_files_at({10: (save_model, str(tmp_path / 'b_x3.pkl'), 3)})
      | RunInference(
          SklearnModelHandlerNumpy(
              first, max_batch_duration_secs=0.2, max_batch_size=16),
          watch_model_pattern=str(tmp_path / '*.pkl'),
          interval=0.1))
  assert_that(out, check_switches(n, [(0, 2), (0, 3)], optional=(2, )))
  p.run().wait_until_finish()


def test_distributed_runners_keep_beams_batch_elements():
  class FakeRunner:
    pass

  class FakePipeline:
    runner = FakeRunner()

  cfg = BatchConfig(max_batch_duration_secs=1)
  assert isinstance(
      batch_across_bundles(FakePipeline(), cfg), StampedBatchElements)
  local = beam.Pipeline(options=PipelineOptions(runner='DirectRunner'))
  assert isinstance(
      batch_across_bundles(local, cfg), LocalStreamBatchElements)


def test_streaming_refresh_example_switches_and_ends(tmp_path, capsys):
  import importlib.util
  from pathlib import Path
  path = Path(__file__).resolve().parents[2] / 'examples' / 'streaming_refresh.py'
  spec = importlib.util.spec_from_file_location('streaming_refresh', path)
  example = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(example)
  served = example.main(
      ['--workdir', str(tmp_path), '--items', '30', '--drop-after', '1.2'])
  assert sorted(served) == ['model_v1', 'model_v2']
  assert sorted(served['model_v1'] + served['model_v2']) == list(range(30))
  assert max(served['model_v1']) < min(served['model_v2'])
  assert 'switched: model_v1 -> model_v2' in capsys.readouterr().out


class _Stamp(beam.DoFn):
  def process(self, r, ts=beam.DoFn.TimestampParam, w=beam.DoFn.WindowParam):
    yield (r.example, int(ts.micros // 1_000_000), int(w.start))


def test_each_result_keeps_its_own_timestamp_with_max_batch_duration():
  """A batch gathered across bundles holds elements of several timestamps:
  each result keeps its own element's timestamp and window."""
  stream = (
      TestStream().add_elements(
          [window.TimestampedValue(i, 100 + i) for i in range(12)])
      .advance_watermark_to_infinity())
  handler = MultiplierHandler(max_batch_duration_secs=30, max_batch_size=5)
  p = streaming_pipeline()
  out = (p | stream | 'Fixed' >> beam.WindowInto(window.FixedWindows(6))
         | RunInference(handler) | beam.ParDo(_Stamp()))
  # Collected as a side effect: assert_that's own global-window grouping
  # drops what window-end timers emit after the watermark reached infinity.
  assert collected(p, out, 'stamps') == [
      (i, 100 + i, (100 + i) // 6 * 6) for i in range(12)]
