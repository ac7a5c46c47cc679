"""Beam shells around ``InferenceEngine``.

``GlobalBatchDoFn`` is the fast path (batch pipelines in the global window):
its ``process`` takes only the element, so Beam calls it through its cheapest
invoker. ``WindowedBatchDoFn`` carries each element's own timestamp and
window to its result (and reads the model-metadata side input)."""
from __future__ import annotations

from typing import Any, Callable, Optional

import apache_beam as beam
from apache_beam.pvalue import TaggedOutput

from .engine import InferenceEngine, Rejected, RunResult
from .failures import picklable_record
from .gc_pause import GcPause
from .runner_fix import install_all as _install_runner_fixes
from .stream_batching import unstamp
from .windowing import in_global_window

# The local runner otherwise keeps every bundle's metrics (runner_fix.py)
# and idles up to 200 ms at every bundle's end (sampler_fix.py).
_install_runner_fixes()

_global_wv = in_global_window
# Returned by process while an element waits in the batch (Beam warns about
# a process that returns None).
_NOTHING = ()


def _dead(tag: str, record):
  """A dead-letter output; an element Beam could not encode (a generator)
  is replaced in it by an ``UnpicklableElement``."""
  return TaggedOutput(tag, picklable_record(record))


class _EngineDoFn(beam.DoFn):
  def __init__(self, engine: InferenceEngine, stamped_batches: bool = False):
    self._engine = engine
    # Elements are batches cut across bundles, each row with its timestamp.
    self._stamped = stamped_batches

  def setup(self):
    self._engine.setup()

  def finish_bundle(self):
    outputs = []
    for batch in self._engine.batcher.drain():
      outputs.extend(self._finish_outputs(self._engine.run(batch, self._value_of)))
    self._engine.check_threshold()
    return outputs

  def teardown(self):
    self._engine.teardown()

  def _finish_outputs(self, result: RunResult) -> list:
    raise NotImplementedError(type(self))

  def _batch_of(self, element, wv=None):
    """Preprocesses ``element`` and adds it (in ``wv``, when given) to the
    batcher: the batch it completes, None while the batch fills, or the
    ``Rejected`` of a preprocess fn or of the batcher."""
    engine = self._engine
    item = element if wv is None else wv
    if engine.preprocess_fns:
      element = engine.preprocess(element)
      if type(element) is Rejected:
        return element
      item = element if wv is None else wv.with_value(element)
    if engine.prebatched:
      return [item]
    return engine.add(item, element)

  _value_of: Optional[Callable[[Any], Any]] = None


class GlobalBatchDoFn(_EngineDoFn):
  """Batches within a bundle; results keep the global window.

  With the engine's ``overlap``, a full batch's model call is submitted to
  the call thread and the batch before it is collected, so the model runs
  while the next batch is built; the last ones are collected in
  ``finish_bundle``.
  """
  def setup(self):
    # The cyclic GC stays off from a batch's model call until Beam has sent
    # its outputs downstream (see GcPause.resume_once_sent).
    self._gc = GcPause()
    super().setup()
    engine = self._engine
    self._plain = (
        engine.batcher.simple and not engine.preprocess_fns and
        not engine.prebatched)
    self._overlap = engine.overlap and not engine.prebatched
    self._flight = None

  def start_bundle(self):
    self._gc.resume()  # a failed bundle may have left it paused
    self._flight = None  # a failed bundle's call is not this bundle's
    # The hot path appends to the batcher's buffer through a reference of
    # its own and compares with a cached size (refreshed after each batch).
    batcher = self._engine.batcher
    self._buf = batcher.buffer if self._plain else None
    self._size = batcher.sizer.size

  def finish_bundle(self):
    self._gc.resume()
    if not self._overlap:
      return super().finish_bundle()
    engine = self._engine
    flights = [] if self._flight is None else [self._flight]
    self._flight = None
    flights.extend(engine.submit(batch) for batch in engine.batcher.drain())
    outputs = []
    for flight in flights:
      outputs.extend(self._finish_outputs(engine.collect(flight)))
    engine.check_threshold()
    return outputs

  def process(self, element):
    buf = self._buf
    if buf is not None:
      buf.append(element)
      if len(buf) < self._size:
        return _NOTHING
      batcher = self._engine.batcher
      self._buf = batcher.buffer = []
      outputs = self._outputs(buf)
      self._size = batcher.sizer.size
      return outputs
    batch = self._batch_of(element)
    if batch is None:
      return _NOTHING
    if type(batch) is Rejected:
      return [_dead(batch.tag, batch.record)]
    return self._outputs(batch)

  def teardown(self):
    if hasattr(self, '_gc'):  # setup ran
      self._gc.resume()
    super().teardown()

  def _outputs(self, batch):
    gc = self._gc
    gc.pause()
    try:
      if self._overlap:
        previous, self._flight = self._flight, self._engine.submit(batch)
        if previous is None:
          gc.resume()
          return _NOTHING
        result = self._engine.collect(previous)
      else:
        result = self._engine.run(batch)
    except BaseException:
      gc.resume()
      raise
    # A list of our own: it is emptied once sent.
    outputs = result.outputs + [_dead(d.tag, d.record) for d in result.dead]
    return gc.resume_once_sent(outputs)

  def _finish_outputs(self, result: RunResult) -> list:
    out: list = [_global_wv(o) for o in result.outputs]
    out.extend(TaggedOutput(d.tag, _global_wv(picklable_record(d.record)))
               for d in result.dead)
    return out


def _value(wv):
  return wv.value


class WindowedBatchDoFn(_EngineDoFn):
  """Batches within a bundle across windows; each result keeps the
  timestamp, window and pane of its own input element."""
  _value_of = staticmethod(_value)

  def process(
      self, element, window=beam.DoFn.WindowParam,
      wv=beam.DoFn.WindowedValueParam):
    return self._handle(element, wv)

  def _handle(self, element, wv):
    engine = self._engine
    if self._stamped:
      return self._finish_outputs(
          engine.run(unstamp(element, wv), _value, cut_elsewhere=True))
    batch = self._batch_of(element, wv)
    if batch is None:
      return _NOTHING
    if type(batch) is Rejected:
      return [TaggedOutput(batch.tag,
                           wv.with_value(picklable_record(batch.record)))]
    return self._finish_outputs(engine.run(batch, _value))

  def _finish_outputs(self, result: RunResult):
    out = [item.with_value(o) for item, o in zip(result.items, result.outputs)]
    out.extend(
        TaggedOutput(d.tag, d.item.with_value(picklable_record(d.record)))
        for d in result.dead)
    return out


class SideInputDoFn(WindowedBatchDoFn):
  """Takes ``inference_args`` and/or ``ModelMetadata`` as side inputs (each
  argument is None when not given) and switches models on the metadata --
  or, when the engine watches a file pattern itself (``WatchFilePattern``),
  on what its watcher has loaded in the background."""
  def setup(self):
    super().setup()
    self._engine.refresher.start()

  def process(  # type: ignore[override]  # Beam passes the side inputs
      self,
      element,
      inference_args,
      model_metadata,
      window=beam.DoFn.WindowParam,
      wv=beam.DoFn.WindowedValueParam):
    engine = self._engine
    refresher = engine.refresher
    if inference_args is not None:
      engine.inference_args = inference_args
    # Elements buffered before a switch run on the model they arrived under.
    before = None
    if refresher.watcher is not None:
      if refresher.pending:
        before = self._drain()
        engine.record_switches(refresher.take())
    elif model_metadata is not None and refresher.wants(model_metadata):
      before = self._drain()
      engine.refresh(model_metadata)
    outputs = self._handle(element, wv)
    if before:
      return before + outputs if outputs else before
    return outputs

  def _drain(self):
    outputs = []
    for batch in self._engine.batcher.drain():
      outputs.extend(self._finish_outputs(self._engine.run(batch, _value)))
    return outputs


class PreprocessDoFn(beam.DoFn):
  """Preprocessing as its own step, for when batching happens in
  ``beam.BatchElements`` between it and inference."""
  def __init__(self, engine: InferenceEngine):
    self._engine = engine

  def process(self, element):
    element = self._engine.preprocess(element)
    if type(element) is Rejected:
      return [_dead(element.tag, element.record)]
    return [element]
