"""The inference step as a plain object: batching, model holding, failure
isolation and metrics composed; the DoFns in ``_dofn`` are thin shells."""
from __future__ import annotations

import gc
import logging
import time
from typing import Any, Callable, Optional

from ..exceptions import ResultCountError
from .batching import Batcher, BatchConfig, group_by_shape, split_by_weight
from .failures import (FAILED_INFERENCES, ErrorPolicy, TimeoutRunner, describe,
                      postprocess_tag, preprocess_tag)
from .metrics import MetricsCollector
from .model_holder import ModelHolder
from .refresh import ModelWatcher, refresh_target
from .step import ModelStep

_LOGGER = logging.getLogger(__name__)


class _Failed(Exception):
  """Marks an element that failed a pre/postprocessing step."""


class InferenceEngine(ModelStep):
  """Runs a model handler over batches of items.

  ``items`` are whatever the caller carries (plain values, or Beam
  WindowedValues); ``value_of`` gives the model input of an item. Every call
  returns ``(main, dead)``: ``main`` a list of ``(item, output)``-aligned
  pairs as two lists, ``dead`` a list of ``(item, tag, record)``.
  """
  def __init__(
      self,
      handler,
      *,
      namespace: Optional[str],
      inference_args: Optional[dict],
      policy: ErrorPolicy,
      batch_config: BatchConfig,
      prebatched: bool,
      tag: str,
      load_eagerly: bool,
      clock=time):
    self.handler = handler
    self.preprocess_fns = list(handler.get_preprocess_fns())
    self.postprocess_fns = list(handler.get_postprocess_fns())
    self.namespace = namespace or handler.get_metrics_namespace()
    self.inference_args = inference_args
    self.policy = policy
    self.batch_config = batch_config
    self.prebatched = prebatched
    self.load_eagerly = load_eagerly
    self.clock = clock
    self.holder = ModelHolder(handler, tag, clock)
    self._init_runtime()

  _RUNTIME = ('metrics', 'batcher', 'timeout_runner', 'counts', 'model_name',
              'watcher', '_current_model_id')

  def _init_runtime(self):
    super()._init_runtime()
    self.batcher = Batcher(self.batch_config)
    self.timeout_runner = TimeoutRunner(self.policy.timeout)
    self.model_name = ''

  def setup(self) -> None:
    self.setup_model(self.load_eagerly)

  # -- refresh ---------------------------------------------------------------
  # Load first, then swap: the current model serves until the new one is
  # loaded; one that fails to load is logged and counted and changes nothing.
  watch_spec = None  # a WatchSpec: poll a file pattern (set by RunInference)
  watcher = None

  def wants_refresh(self, metadata) -> bool:
    """Whether ``metadata`` (a side input's value) names another model."""
    target = refresh_target(metadata)
    return target is not None and target[1] != getattr(
        self, '_current_model_id', None)

  def refresh(self, metadata) -> None:
    """Switch to the model in ``metadata`` (a side input's value) now."""
    if not self.wants_refresh(metadata):
      return
    path, model_id, name = refresh_target(metadata)
    self._current_model_id = model_id
    try:
      prepared = self.holder.prepare(path, model_id)
    except Exception:  # pylint: disable=broad-except
      _LOGGER.exception(
          'Model refresh to %r failed; the current model keeps serving.',
          model_id)
      self._refresh_failed()
      return
    self._switch(prepared, name)

  def start_watching(self) -> None:
    """Poll ``watch_spec`` in the background; a newer file already there is
    loaded now and served from the first element on."""
    if self.watch_spec is None or self.watcher is not None:
      return
    self.watcher = ModelWatcher(
        self.watch_spec, lambda md: self.holder.prepare(md.model_id, md.model_id))
    self.watcher.poll()
    self.watcher.start()

  def stop_watching(self) -> None:
    if self.watcher is not None:
      self.watcher.stop()
      self.watcher = None

  def poll_refresh(self) -> None:
    """Switch to a model the watcher has loaded, if any (cheap otherwise)."""
    watcher = self.watcher
    if watcher is None or not watcher.pending:
      return
    for event in watcher.take():
      if event.error is not None:
        self._refresh_failed()
      else:
        self._current_model_id = event.metadata.model_id
        self._switch(event.prepared, event.metadata.model_name)

  def _refresh_failed(self) -> None:
    if self.metrics is not None:
      self.metrics.model_load_failures.inc()

  def _switch(self, prepared, name: str) -> None:
    loaded = self.holder.commit(prepared)
    if name and self.metrics is not None:
      self.model_name = name
      self.metrics = MetricsCollector(self.namespace, name)
    if self.metrics is not None:
      self.metrics.model_swaps.inc()
      self.metrics.update_load_model_metrics(loaded.load_ms, loaded.byte_size)

  # -- per element -------------------------------------------------------------
  def preprocess(self, value):
    """Runs the preprocessing fns; returns the value, or ``(_Failed, tag,
    record)`` when one of them fails and exception handling is on."""
    # get_preprocess_fns() lists them in the order they run (the last
    # applied first); dead-letter indices follow that order.
    for i, fn in enumerate(self.preprocess_fns):
      original = value
      try:
        value = fn(value)
      except Exception as exc:  # pylint: disable=broad-except
        if not self.policy.catches(exc):
          raise
        self.counts[1] += 1
        return (_Failed, preprocess_tag(i), (original, describe(exc)))
    return value

  # -- per batch ---------------------------------------------------------------
  def run(self, items: list, value_of: Optional[Callable[[Any], Any]] = None):
    """Runs one batch. Returns ``(main_items, outputs, dead)``."""
    if not gc.isenabled():
      return self._run(items, value_of)
    # A batch allocates one result object per example at once; with the
    # cyclic GC on, that triggers repeated collections over the whole heap
    # (measured: ~10x the cost of building the results). One collection
    # after the batch does the same work once.
    gc.disable()
    try:
      return self._run(items, value_of)
    finally:
      gc.enable()

  def _run(self, items: list, value_of: Optional[Callable[[Any], Any]]):
    if self.metrics is not None:
      self.metrics.flush_cached()
    values = items if value_of is None else [value_of(x) for x in items]
    if self.prebatched:
      return self._run_prebatched(items, values)
    self.counts[0] += len(items)
    results, failures = self._infer(values)
    dead = []
    if failures:
      ok = set(range(len(items))) - {i for i, _ in failures}
      for i, exc in failures:
        dead.append((items[i], FAILED_INFERENCES, ([values[i]], describe(exc))))
      self.counts[1] += len(failures)
      keep = sorted(ok)
      items = [items[i] for i in keep]
      results = [results[i] for i in keep]
    if self.postprocess_fns:
      items, results = self._postprocess(items, results, dead)
    return items, results, dead

  def _run_prebatched(self, items, batches):
    # Each item is a whole batch (with_no_batching, or BatchElements upstream).
    out_items, outputs, dead = [], [], []
    for item, batch in zip(items, batches):
      batch = list(batch)
      for part in split_by_weight(batch, batch, self.batch_config):
        self.counts[0] += len(part)
        results, failures = self._infer(part)
        bad = {i for i, _ in failures}
        for i, exc in failures:
          dead.append((item, FAILED_INFERENCES, ([part[i]], describe(exc))))
        self.counts[1] += len(failures)
        good = [results[i] for i in range(len(part)) if i not in bad]
        good_items = [item] * len(good)
        if self.postprocess_fns:
          good_items, good = self._postprocess(good_items, good, dead)
        out_items.extend(good_items)
        outputs.extend(good)
    return out_items, outputs, dead

  def _postprocess(self, items, results, dead):
    fns = self.postprocess_fns
    out_items, out = [], []
    for item, result in zip(items, results):
      for i, fn in enumerate(fns):
        try:
          result = fn(result)
        except Exception as exc:  # pylint: disable=broad-except
          if not self.policy.catches(exc):
            raise
          dead.append((item, postprocess_tag(i), (result, describe(exc))))
          self.counts[1] += 1
          break
      else:
        out_items.append(item)
        out.append(result)
    return out_items, out

  def _call(self, values: list) -> list:
    """One model call on a batch, with metrics; raises on failure."""
    handler = self.holder.handler

    def call():
      loaded = self.loaded_model()
      start = self.clock.time_ns()
      results = handler.run_inference(values, loaded.model, self.inference_args)
      if not isinstance(results, list):
        results = list(results)
      return results, self.clock.time_ns() - start

    results, nanos = self.timeout_runner(call)
    n = len(values)
    if len(results) != n:
      raise ResultCountError(
          f'{type(handler).__name__}.run_inference returned {len(results)} '
          f'results for a batch of {n}; it must return one per example.')
    self.batcher.sizer.observe(n, nanos / 1e9)
    if self.metrics is not None:
      self.metrics.update(n, handler.get_num_bytes(values), nanos // 1000)
    return results

  def _infer(self, values: list):
    """Results aligned with ``values`` (None where failed) and the failures
    ``[(index, exception)]``. Ragged batches are split by shape; with
    exception handling a failing batch is bisected down to its bad rows."""
    try:
      return self._call(values), []
    except BaseException as exc:  # pylint: disable=broad-except
      first = exc
    results: list = [None] * len(values)
    failures: list = []
    groups = group_by_shape(values) if len(values) > 1 else [[0]]
    if len(groups) > 1:
      for idx in groups:
        sub, sub_fail = self._infer([values[i] for i in idx])
        for j, i in enumerate(idx):
          results[i] = sub[j]
        failures.extend((idx[j], e) for j, e in sub_fail)
      return results, failures
    if self.metrics is not None:
      self.metrics.failed_batches_counter.inc()
    if not self.policy.catches(first):
      raise first
    if isinstance(first, TimeoutError):
      self.holder.drop()
      return results, [(i, first) for i in range(len(values))]
    self._bisect(values, list(range(len(values))), first, results, failures)
    if self.metrics is not None:
      self.metrics.failed_elements.inc(len(failures))
    return results, failures

  def _bisect(self, values, idx, exc, results, failures):
    if len(idx) == 1 or not self.policy.bisect:
      failures.extend((i, exc) for i in idx)
      return
    mid = len(idx) // 2
    for half in (idx[:mid], idx[mid:]):
      try:
        sub = self._call([values[i] for i in half])
      except BaseException as e:  # pylint: disable=broad-except
        if not self.policy.catches(e):
          raise
        if isinstance(e, TimeoutError):
          self.holder.drop()
          failures.extend((i, e) for i in half)
          continue
        self._bisect(values, half, e, results, failures)
      else:
        for i, r in zip(half, sub):
          results[i] = r
