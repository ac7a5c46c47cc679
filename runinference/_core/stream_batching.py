"""Batches that span bundles (``max_batch_duration_secs``), for streaming.

Streaming runners hand a DoFn small bundles, often of one element; batching
within a bundle then gives batches of one. With ``max_batch_duration_secs``
elements are kept in keyed state across bundles until the batch is full or
its oldest element has waited that long. Each row of such a batch carries
its own timestamp (``unstamp`` gives it back to its result): the batch is
emitted with one timestamp, its rows may have others.

On distributed runners this is Beam's ``BatchElements`` (a processing-time
timer flushes a batch when its time is up). Beam's local DirectRunner cannot
run that together with an unbounded source: a processing-time timer sends the
pipeline to the bundle-based engine, which fails on splittable sources such
as ``PeriodicImpulse`` ("... GroupByKey was not replaced as expected"). There
we batch with state and an event-time timer only, which the in-process
engine runs: a batch is flushed when full, when an element arrives after the
oldest one waited ``max_batch_duration_secs``, and at the end of the window.
(The in-process engine fires event-time timers when each bundle ends, so
there a batch holds what one bundle brought; the bundle-based engine, used
with ``TestStream``, batches across bundles.)
"""
from __future__ import annotations

import bisect
import logging
import os
import time
import typing
import uuid

import apache_beam as beam
from apache_beam import coders
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.utils.windowed_value import WindowedValue
from apache_beam.transforms.userstate import (BagStateSpec,
                                              ReadModifyWriteStateSpec,
                                              TimerSpec, on_timer)

from .batching import BatchConfig

_LOGGER = logging.getLogger(__name__)

# One key per worker process (as BatchElements does): each process batches
# the elements it receives.
_PROCESS_KEY = f'{os.getpid()}-{uuid.uuid4().hex}'


def _is_local_runner(pipeline) -> bool:
  runner = getattr(pipeline, 'runner', None)
  if runner is None:
    return False
  from apache_beam.runners.direct.direct_runner import (
      BundleBasedDirectRunner, SwitchingDirectRunner)
  from apache_beam.runners.portability.fn_api_runner import FnApiRunner
  return isinstance(
      runner, (SwitchingDirectRunner, BundleBasedDirectRunner, FnApiRunner))


def batch_across_bundles(pipeline, cfg: BatchConfig) -> beam.PTransform:
  """The batching step for ``max_batch_duration_secs``: lists of stamped
  rows (see ``unstamp``)."""
  if _is_local_runner(pipeline):
    return LocalStreamBatchElements(cfg)
  return StampedBatchElements(cfg)


def unstamp(batch: list, wv) -> list:
  """The rows of a batch from ``batch_across_bundles`` as WindowedValues,
  each with its own timestamp and the batch's window and pane."""
  windows, pane = wv.windows, wv.pane_info
  return [WindowedValue(value, ts, windows, pane) for value, ts in batch]


class _StampDoFn(beam.DoFn):
  def process(self, element, timestamp=beam.DoFn.TimestampParam):
    return [(element, timestamp)]


class _OnRow:
  """A per-element function (e.g. ``length_fn``) applied to a stamped row."""
  def __init__(self, fn):
    self.fn = fn

  def __call__(self, row):
    return self.fn(row[0])


class StampedBatchElements(beam.PTransform):
  """Beam's ``BatchElements`` over rows stamped with their timestamps."""
  def __init__(self, cfg: BatchConfig):
    super().__init__()
    self._cfg = cfg

  def expand(self, pcoll):
    kwargs = self._cfg.batch_elements_kwargs()
    if kwargs.get('length_fn') is not None:
      kwargs['length_fn'] = _OnRow(kwargs['length_fn'])
    return (pcoll
            | 'Stamp' >> beam.ParDo(_StampDoFn())
            | 'BatchElements' >> beam.BatchElements(**kwargs))


class _KeyDoFn(beam.DoFn):
  """Keys by process (and by length bucket when batching by length)."""
  def __init__(self, length_fn=None, boundaries=None):
    self._length_fn = length_fn
    self._boundaries = list(boundaries or ())

  def process(self, element):
    if self._length_fn is None:
      return [(_PROCESS_KEY, element)]
    try:
      bucket = bisect.bisect(self._boundaries, self._length_fn(element))
    except Exception:  # pylint: disable=broad-except
      # Not lost, nor the pipeline: the element batches with others whose
      # length is unknown and runs (or fails) on its own merits.
      _LOGGER.warning('batch_length_fn failed on %r; batching it apart.',
                      element, exc_info=True)
      return [(f'{_PROCESS_KEY}-unsized', element)]
    return [(f'{_PROCESS_KEY}-{bucket}', element)]


def _batching_dofn(coder, max_size: int, max_secs: float, clock):
  BUFFER = BagStateSpec(
      'buffer', coders.TupleCoder([coder, coders.TimestampCoder()]))
  COUNT = ReadModifyWriteStateSpec('count', coders.VarIntCoder())
  SINCE = ReadModifyWriteStateSpec('since', coders.FloatCoder())
  WINDOW_END = TimerSpec('window_end', TimeDomain.WATERMARK)

  class _BatchAcrossBundlesDoFn(beam.DoFn):
    def process(
        self,
        element,
        window=beam.DoFn.WindowParam,
        timestamp=beam.DoFn.TimestampParam,
        buffer=beam.DoFn.StateParam(BUFFER),
        count=beam.DoFn.StateParam(COUNT),
        since=beam.DoFn.StateParam(SINCE),
        window_end=beam.DoFn.TimerParam(WINDOW_END)):
      now = clock()
      n = count.read() or 0
      if n == 0:
        since.write(now)
        window_end.set(window.max_timestamp())
        started = now
      else:
        started = since.read()
      buffer.add((element[1], timestamp))
      n += 1
      count.write(n)
      if n >= max_size or now - started >= max_secs:
        batch = list(buffer.read())
        buffer.clear()
        count.clear()
        yield batch

    @on_timer(WINDOW_END)
    def at_window_end(
        self,
        buffer=beam.DoFn.StateParam(BUFFER),
        count=beam.DoFn.StateParam(COUNT)):
      batch = list(buffer.read())
      buffer.clear()
      count.clear()
      if batch:
        yield batch

  return _BatchAcrossBundlesDoFn()


class LocalStreamBatchElements(beam.PTransform):
  """Batches across bundles with state and an event-time timer only."""
  def __init__(self, cfg: BatchConfig, clock=time.time):
    super().__init__()
    self._cfg = cfg
    self._clock = clock

  def expand(self, pcoll):
    cfg = self._cfg
    coder = coders.registry.get_coder(pcoll)
    keyed = pcoll | 'Key' >> beam.ParDo(
        _KeyDoFn(cfg.length_fn, cfg.bucket_boundaries)).with_output_types(
            typing.Tuple[str, typing.Any])
    return keyed | 'Batch' >> beam.ParDo(
        _batching_dofn(
            coder, cfg.max_batch_size, float(cfg.max_batch_duration_secs or 0),
            self._clock))
