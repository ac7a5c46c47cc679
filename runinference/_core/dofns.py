"""Beam shells around ``InferenceEngine``.

``GlobalBatchDoFn`` is the fast path (batch pipelines in the global window):
its ``process`` takes only the element, so Beam calls it through its cheapest
invoker. ``WindowedBatchDoFn`` carries each element's own timestamp and
window to its result (and reads the model-metadata side input)."""
from __future__ import annotations

import apache_beam as beam
from apache_beam.pvalue import TaggedOutput
from apache_beam.transforms.window import GlobalWindows

from .engine import InferenceEngine, _Failed

_global_wv = GlobalWindows.windowed_value
# Returned by process while an element waits in the batch (Beam warns about
# a process that returns None).
_NOTHING = ()


def _failed(value) -> bool:
  return type(value) is tuple and len(value) == 3 and value[0] is _Failed


class _EngineDoFn(beam.DoFn):
  def __init__(self, engine: InferenceEngine):
    self._engine = engine

  def setup(self):
    self._engine.setup()

  def finish_bundle(self):
    outputs = []
    for batch in self._engine.batcher.drain():
      outputs.extend(self._finish_outputs(batch))
    self._engine.check_threshold()
    return outputs


class GlobalBatchDoFn(_EngineDoFn):
  """Batches within a bundle; results keep the global window."""
  def setup(self):
    super().setup()
    engine = self._engine
    self._plain = (
        engine.batcher.simple and not engine.preprocess_fns and
        not engine.prebatched)

  def process(self, element):
    if self._plain:
      batcher = self._engine.batcher
      buf = batcher.buffer
      buf.append(element)
      if len(buf) < batcher.sizer.size:
        return _NOTHING
      batcher.buffer = []
      return self._outputs(buf)
    engine = self._engine
    if engine.preprocess_fns:
      element = engine.preprocess(element)
      if _failed(element):
        return [TaggedOutput(element[1], element[2])]
    if engine.prebatched:
      batch = [element]
    else:
      batch = engine.batcher.add(element, element)
      if batch is None:
        return _NOTHING
    return self._outputs(batch)

  def _outputs(self, batch):
    _, outputs, dead = self._engine.run(batch)
    if dead:
      outputs = outputs + [TaggedOutput(tag, rec) for _, tag, rec in dead]
    return outputs

  def _finish_outputs(self, batch):
    _, outputs, dead = self._engine.run(batch)
    out = [_global_wv(o) for o in outputs]
    out.extend(TaggedOutput(tag, _global_wv(rec)) for _, tag, rec in dead)
    return out


def _value(wv):
  return wv.value


class WindowedBatchDoFn(_EngineDoFn):
  """Batches within a bundle across windows; each result keeps the
  timestamp, window and pane of its own input element."""
  def process(
      self, element, window=beam.DoFn.WindowParam,
      wv=beam.DoFn.WindowedValueParam):
    return self._handle(element, wv)

  def _handle(self, element, wv):
    engine = self._engine
    if engine.preprocess_fns:
      element = engine.preprocess(element)
      if _failed(element):
        return [TaggedOutput(element[1], wv.with_value(element[2]))]
      wv = wv.with_value(element)
    if engine.prebatched:
      batch = [wv]
    else:
      batch = engine.batcher.add(wv, element)
      if batch is None:
        return _NOTHING
    return self._finish_outputs(batch)

  def _finish_outputs(self, batch):
    items, outputs, dead = self._engine.run(batch, _value)
    out = [item.with_value(o) for item, o in zip(items, outputs)]
    out.extend(TaggedOutput(tag, item.with_value(rec)) for item, tag, rec in dead)
    return out


class SideInputDoFn(WindowedBatchDoFn):
  """Takes ``inference_args`` and/or ``ModelMetadata`` as side inputs (each
  argument is None when not given) and switches models on the metadata --
  or, when the engine watches a file pattern itself (``WatchFilePattern``),
  on what its watcher has loaded in the background."""
  def setup(self):
    super().setup()
    self._engine.start_watching()

  def process(
      self,
      element,
      inference_args,
      model_metadata,
      window=beam.DoFn.WindowParam,
      wv=beam.DoFn.WindowedValueParam):
    engine = self._engine
    if inference_args is not None:
      engine.inference_args = inference_args
    # Elements buffered before a switch run on the model they arrived under.
    before = None
    if engine.watcher is not None:
      if engine.watcher.pending:
        before = self._drain()
        engine.poll_refresh()
    elif model_metadata is not None and engine.wants_refresh(model_metadata):
      before = self._drain()
      engine.refresh(model_metadata)
    outputs = self._handle(element, wv)
    if before:
      return before + outputs if outputs else before
    return outputs

  def _drain(self):
    outputs = []
    for batch in self._engine.batcher.drain():
      outputs.extend(self._finish_outputs(batch))
    return outputs

  def teardown(self):
    self._engine.stop_watching()


class PreprocessDoFn(beam.DoFn):
  """Preprocessing as its own step, for when batching happens in
  ``beam.BatchElements`` between it and inference."""
  def __init__(self, engine: InferenceEngine):
    self._engine = engine

  def process(self, element):
    element = self._engine.preprocess(element)
    if _failed(element):
      return [TaggedOutput(element[1], element[2])]
    return [element]
