"""Model calls on one batch: load if needed, call, check and record the
result; an out-of-memory batch retried as halves; a ragged batch split by
shape; a failing batch bisected to its bad rows. ``InferenceEngine`` builds
on it; everything here runs on the step's thread except ``_model_call``,
which may run on the call thread (``overlap``) and records nothing."""
from __future__ import annotations

import dataclasses
import logging
import pickle
from typing import Any, Optional

from ..exceptions import InvalidInputTypeError, ResultCountError
from .batching import Batcher, group_by_shape
from .failures import (ErrorPolicy, bisect_failures, is_out_of_memory,
                       is_pickling_error)
from .metrics import MetricsCollector
from .model_holder import (LoadedModel, ModelHolder,
                           loading_ms_on_this_thread)
from .model_swap import RECENT_EXAMPLES, Refresher
from .step import InferenceStep
from .timeouts import TimeoutRunner, TooManyHungCalls


@dataclasses.dataclass
class CallOutcome:
  """What one model call gave: its results, how long it ran, and the model
  it loaded first (None when the model was already loaded)."""
  results: list
  nanos: int
  fresh_load: Optional[LoadedModel]
  loading_nanos: int = 0  # of ``nanos``, spent loading models inside the call


class BatchCaller(InferenceStep):
  """The model-call half of ``InferenceEngine`` (which sets these)."""
  holder: ModelHolder
  policy: ErrorPolicy
  batcher: Batcher
  timeout_runner: TimeoutRunner
  refresher: Refresher
  metrics: Optional[MetricsCollector]
  inference_args: Optional[dict]
  keep_recent: bool
  clock: Any  # the time module, or a test's fake clock

  def _model_call(self, values: list) -> CallOutcome:
    """One model call, loading the model first if needed; records nothing
    (it may run on the call thread)."""
    handler = self.holder.handler
    fresh = self.holder.loaded is None
    loaded = self.holder.get()
    loading_before = loading_ms_on_this_thread()
    start = self.clock.time_ns()
    try:
      results = handler.run_inference(values, loaded.model, self.inference_args)
      if not isinstance(results, list):
        results = list(results)
    except (TypeError, AttributeError, pickle.PickleError) as exc:
      if is_pickling_error(exc) and handler.share_model_across_processes():
        raise InvalidInputTypeError(
            'Pickling error encountered while running inference: a model '
            'shared across processes (share_model_across_processes) is '
            'called through a proxy that pickles every argument and result; '
            'send it picklable values (numpy arrays, lists, dicts of '
            f'those). Cause: {exc!r}') from exc
      raise
    return CallOutcome(
        results, self.clock.time_ns() - start, loaded if fresh else None,
        (loading_ms_on_this_thread() - loading_before) * 1_000_000)

  def _accept(self, values: list, outcome: CallOutcome) -> list:
    """A call's results, checked and recorded (metrics, batch sizing)."""
    handler = self.holder.handler
    results = outcome.results
    if outcome.fresh_load is not None and self.metrics is not None:
      self.metrics.update_load_model_metrics(
          outcome.fresh_load.load_ms, outcome.fresh_load.byte_size)
    n = len(values)
    if len(results) != n:
      raise ResultCountError(
          f'{type(handler).__name__}.run_inference returned {len(results)} '
          f'results for a batch of {n}; it must return one per example.')
    # Models loaded inside the call (a multi-model KeyedModelHandler's) say
    # nothing of how the batch size costs: sizing leaves that time out.
    self.batcher.sizer.observe(
        self.batcher.measure(values),
        max(0, outcome.nanos - outcome.loading_nanos) / 1e9)
    if self.metrics is not None:
      self.metrics.update(n, handler.get_num_bytes(values),
                          outcome.nanos // 1000)
    if self.keep_recent:
      self.refresher.check.recent = values[:RECENT_EXAMPLES]
    return results

  def _call(self, values: list) -> list:
    """One model call on a batch, with metrics; raises on failure."""
    return self._accept(
        values, self.timeout_runner(lambda: self._model_call(values)))

  def _call_backing_off(self, values: list) -> list:
    """``_call``, halving the batch when the model runs out of memory."""
    try:
      return self._call(values)
    except BaseException as exc:  # pylint: disable=broad-except
      return self._back_off(values, exc)

  def _back_off(self, values: list, exc: BaseException) -> list:
    """After ``exc`` on ``values``: when it is an out-of-memory error, runs
    the halves one after the other and never grows batches past the size
    that fit again; otherwise raises it."""
    if len(values) < 2 or not is_out_of_memory(exc):
      raise exc
    half = len(values) // 2
    self.batcher.sizer.cap(half)
    if self.metrics is not None:
      self.metrics.oom_backoffs.inc()
    logging.getLogger(__name__).warning(
        'A batch of %d ran out of memory; running it as halves, and batches '
        'of at most %d from now on.', len(values), half)
    return (self._call_backing_off(values[:half]) +
            self._call_backing_off(values[half:]))

  def _on_timeout(self, exc: BaseException) -> None:
    if not isinstance(exc, TooManyHungCalls):
      self.holder.drop()  # the hung call may have left it unusable

  def _infer(self, values: list, first: Optional[BaseException] = None):
    """Results aligned with ``values`` (None where failed) and the failures
    ``[(index, exception)]``. Ragged batches are split by shape; with
    exception handling a failing batch is bisected down to its bad rows.
    ``first``: the error a call on the whole batch already raised."""
    try:
      if first is None:
        return self._call_backing_off(values), []
      return self._back_off(values, first), []
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
    outcome = bisect_failures(
        len(values), lambda lo, hi: self._call_backing_off(values[lo:hi]),
        first,
        catches=self.policy.catches, on_timeout=self._on_timeout,
        enabled=self.policy.bisect)
    for ok in outcome.results:
      results[ok.start:ok.stop] = ok.value
    for bad in outcome.failures:
      failures.extend((i, bad.error) for i in bad.indices())
    if self.metrics is not None:
      self.metrics.failed_elements.inc(len(failures))
    return results, failures
