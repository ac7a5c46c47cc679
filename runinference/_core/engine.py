"""The batch runner: batches in, outputs and dead letters out (model calls,
retries and bisection in ``calls``), post-processing, and the overlap of a
call with building the next batch. The DoFns in ``dofns`` are thin shells
around it; refresh lives in ``refresher``."""
from __future__ import annotations

import dataclasses
import time
from concurrent.futures import Future
from typing import Any, Callable, Optional, Sequence

from .batching import Batcher, BatchConfig, ElementFunctionError
from .calls import BatchCaller
from .failures import (FAILED_INFERENCES, DeadLetter, ErrorPolicy, describe,
                       postprocess_tag, preprocess_tag)
from .gc_pause import gc_paused
from .metrics import MetricsCollector
from .model_holder import ModelHolder
from .overlap import CallThread
from .watch import WatchSpec
from .model_swap import CandidateCheck, Refresher, SwitchOutcome
from .timeouts import TimeoutRunner


@dataclasses.dataclass
class RunResult:
  """A batch's outcome: ``outputs[i]`` belongs to ``items[i]``; ``dead``
  holds the records for the dead-letter outputs."""
  items: list
  outputs: list
  dead: list[DeadLetter]


@dataclasses.dataclass
class InFlight:
  """A batch of plain values whose model call was submitted
  (``InferenceEngine.submit``); ``InferenceEngine.collect`` turns it into a
  ``RunResult``."""
  items: list
  call: Future  # of a CallOutcome


@dataclasses.dataclass(frozen=True)
class Rejected:
  """An element that failed before batching (a preprocessing function, or
  its ``element_size_fn``/``batch_length_fn``): where it goes instead."""
  tag: str
  record: Any


class InferenceEngine(BatchCaller):
  """Runs a model handler over batches of items.

  ``items`` are whatever the caller carries (plain values, or Beam
  WindowedValues); ``value_of`` gives the model input of an item.
  """
  _RUNTIME = ('metrics', 'counts', 'batcher', 'timeout_runner', 'model_name',
              'refresher', 'calls')

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
      clock=time,
      run_preprocess: bool = True,
      watch_spec: Optional[WatchSpec] = None,
      refreshable: bool = False,
      refresh_sample: Optional[Sequence] = None,
      model_manager_args: Optional[dict] = None,
      overlap: Optional[bool] = False,
      model_validation: Optional[Callable] = None):
    """
    Args:
      prebatched: each item is a whole batch (``with_no_batching``).
      run_preprocess: False when preprocessing runs as a step of its own.
      watch_spec: a file pattern to poll for new models.
      refreshable: the model may be switched (keep recent examples to check
        a candidate with).
      refresh_sample: examples to check a refresh candidate with.
      model_validation: a candidate must pass it against the serving
        model before it is swapped in (see ``model_swap``).
      model_manager_args: hold the model in the process's central model
        manager (a memory budget shared by every step), None: hold it here.
      overlap: callers may ``submit`` batches, whose model calls then run
        on a thread of their own (see ``overlap``); the model is loaded
        there too. None: the handler's ``overlap_by_default()``, asked in
        ``setup`` on the worker (whether it has a GPU is the worker's fact,
        and asking may import a framework the submitting machine lacks).
    """
    self.handler = handler
    self.preprocess_fns = (
        list(handler.get_preprocess_fns()) if run_preprocess else [])
    self.postprocess_fns = list(handler.get_postprocess_fns())
    self.namespace = namespace or handler.get_metrics_namespace()
    self.inference_args = inference_args
    self.policy = policy
    self.batch_config = batch_config
    self.prebatched = prebatched
    self.load_eagerly = load_eagerly
    self.clock = clock
    self.watch_spec = watch_spec
    self.keep_recent = refreshable or watch_spec is not None
    self.refresh_sample = (
        None if refresh_sample is None else list(refresh_sample))
    self.model_validation = model_validation
    self.holder = ModelHolder(handler, tag, clock, model_manager_args)
    self.overlap = overlap
    self._init_runtime()

  def _init_runtime(self) -> None:
    super()._init_runtime()
    self.batcher = Batcher(self.batch_config)
    self.timeout_runner = TimeoutRunner(self.policy.timeout)
    self.model_name = ''
    self.refresher = Refresher(
        self.holder, self.watch_spec,
        CandidateCheck(self.refresh_sample, self.model_validation),
        lambda: self.inference_args)
    self.calls: Optional[CallThread] = CallThread() if self.overlap else None

  def setup(self) -> None:
    if self.overlap is None:
      self.overlap = bool(self.holder.handler.overlap_by_default())
      self.calls = CallThread() if self.overlap else None
    if self.calls is not None and self.load_eagerly:
      self.calls.call(self.holder.get)  # loaded on the thread that calls it
    self.setup_model(self.load_eagerly)

  def teardown(self) -> None:
    self.refresher.stop()
    self.timeout_runner.close()
    if self.calls is not None:
      self.calls.close()

  # -- refresh (recorded here: metrics belong to the serving thread) ----------
  def record_switches(self, outcomes: Sequence[SwitchOutcome]) -> None:
    for outcome in outcomes:
      if outcome.loaded is None:
        if self.metrics is not None:
          counter = (self.metrics.model_refresh_rejected if outcome.rejected
                     else self.metrics.model_load_failures)
          counter.inc()
        continue
      if outcome.name and self.metrics is not None:
        self.model_name = outcome.name
        self.metrics = MetricsCollector(self.namespace, outcome.name)
      if self.metrics is not None:
        self.metrics.model_swaps.inc()
        self.metrics.update_load_model_metrics(
            outcome.loaded.load_ms, outcome.loaded.byte_size)

  def refresh(self, metadata) -> None:
    """Switches to the model ``metadata`` (a side input's value) names."""
    outcome = self.refresher.switch(metadata)
    if outcome is not None:
      self.record_switches([outcome])

  # -- per element ------------------------------------------------------------
  def preprocess(self, value):
    """Runs the preprocessing fns; returns the value, or ``Rejected`` when
    one of them fails and exception handling is on."""
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
        return Rejected(preprocess_tag(i), (original, describe(exc)))
    return value

  def add(self, item, value):
    """Adds an item to the batcher: a full batch, None, or ``Rejected`` when
    the element's size or length function fails on it."""
    try:
      return self.batcher.add(item, value)
    except ElementFunctionError as err:
      return self._rejected(value, err)

  def _rejected(self, value, err: ElementFunctionError) -> Rejected:
    exc = err.__cause__ or err
    if not self.policy.catches(exc):
      raise exc
    self.counts[0] += 1
    self.counts[1] += 1
    return Rejected(FAILED_INFERENCES, ([value], describe(exc)))

  # -- per batch --------------------------------------------------------------
  def run(self, items: list,
          value_of: Optional[Callable[[Any], Any]] = None,
          cut_elsewhere: bool = False) -> RunResult:
    """Runs one batch (with ``prebatched``, one batch per item). A batch
    ``cut_elsewhere`` (across bundles) is split to ``max_batch_weight``."""
    with gc_paused():
      return self._run(items, value_of, cut_elsewhere)

  def submit(self, items: list) -> InFlight:
    """Starts the model call on a batch of plain values on the call thread
    (``overlap``) and returns at once; ``collect`` gives its result."""
    assert self.calls is not None, 'submit() needs an engine with overlap'
    call = self.calls.submit(
        lambda: self.timeout_runner(lambda: self._model_call(items)))
    return InFlight(items, call)

  def collect(self, flight: InFlight) -> RunResult:
    """Waits for a submitted batch (as long as its model call runs: bounded
    by ``with_exception_handling(timeout=)`` when set) and finishes it as
    ``run`` would: failures retried, bisected and dead-lettered here."""
    items = flight.items
    with gc_paused():
      if self.metrics is not None:
        self.metrics.flush_cached()
      self.counts[0] += len(items)
      try:
        outputs, failures = self._accept(items, flight.call.result()), []
      except BaseException as exc:  # pylint: disable=broad-except
        # The retries run on this thread: let later submitted calls finish
        # first, so the model is never called from two threads at once.
        assert self.calls is not None
        self.calls.wait_idle()
        outputs, failures = self._infer(items, exc)
      result = RunResult([], [], [])
      self._keep(items, items, outputs, failures, result)
      return result

  def _run(self, items: list, value_of, cut_elsewhere: bool) -> RunResult:
    if self.metrics is not None:
      self.metrics.flush_cached()
    if self.prebatched:
      return self._run_prebatched(items, value_of)
    values = items if value_of is None else [value_of(x) for x in items]
    result = RunResult([], [], [])
    if cut_elsewhere and self.batch_config.max_batch_weight:
      for part_items, part_values in self._split_by_weight(
          items, values, result):
        self._run_one(part_items, part_values, result)
    else:
      self._run_one(items, values, result)
    return result

  def _run_one(self, items: list, values: list, result: RunResult) -> None:
    self.counts[0] += len(items)
    outputs, failures = self._infer(values)
    self._keep(items, values, outputs, failures, result)

  def _keep(self, items: list, values: list, outputs: list, failures: list,
            result: RunResult) -> None:
    """Adds a batch's outputs (after post-processing) and dead letters to
    ``result``."""
    if failures:
      bad = set()
      for i, exc in failures:
        bad.add(i)
        result.dead.append(
            DeadLetter(items[i], FAILED_INFERENCES, ([values[i]], describe(exc))))
      self.counts[1] += len(failures)
      keep = [i for i in range(len(items)) if i not in bad]
      items = [items[i] for i in keep]
      outputs = [outputs[i] for i in keep]
    if self.postprocess_fns:
      items, outputs = self._postprocess(items, outputs, result.dead)
    if not result.outputs:
      result.items, result.outputs = items, outputs
    else:
      result.items.extend(items)
      result.outputs.extend(outputs)

  def _run_prebatched(self, items: list, value_of) -> RunResult:
    # Each item is a whole batch (with_no_batching, or BatchElements upstream).
    result = RunResult([], [], [])
    for item in items:
      batch = list(item if value_of is None else value_of(item))
      parts = self._split_by_weight([item] * len(batch), batch, result)
      for part_items, part in parts:
        self._run_one(part_items, part, result)
    return result

  def _split_by_weight(self, items: list, values: list, result: RunResult):
    """Parts of a batch cut elsewhere, each within ``max_batch_weight``;
    an element whose weight cannot be computed goes to ``result.dead``."""
    cfg = self.batch_config
    if not cfg.max_batch_weight or not items:
      return [(items, values)]
    size_fn: Callable[[Any], Any] = cfg.element_size_fn or len
    parts: list = []
    part_items: list = []
    part: list = []
    weight = 0
    for item, value in zip(items, values):
      try:
        w = Batcher.weigh(size_fn, value)
      except ElementFunctionError as err:
        rej = self._rejected(value, err)
        result.dead.append(DeadLetter(item, rej.tag, rej.record))
        continue
      if part and weight + w > cfg.max_batch_weight:
        parts.append((part_items, part))
        part_items, part, weight = [], [], 0
      part_items.append(item)
      part.append(value)
      weight += w
    if part:
      parts.append((part_items, part))
    return parts

  def _postprocess(self, items, results, dead: list[DeadLetter]):
    fns = self.postprocess_fns
    out_items, out = [], []
    for item, result in zip(items, results):
      for i, fn in enumerate(fns):
        try:
          result = fn(result)
        except Exception as exc:  # pylint: disable=broad-except
          if not self.policy.catches(exc):
            raise
          dead.append(DeadLetter(item, postprocess_tag(i),
                                 (result, describe(exc))))
          self.counts[1] += 1
          break
      else:
        out_items.append(item)
        out.append(result)
    return out_items, out
