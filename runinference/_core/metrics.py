"""RunInference metrics: the reference's names, under the handler's namespace."""
from __future__ import annotations

from typing import Any, Callable, Optional

from .live_hook import live_metrics


def counter(namespace: str, name: str):
  """A Beam counter that the live registry (``--metrics-port``) sees too, as
  ``MetricsCollector``'s: for metrics recorded outside it (a remote
  handler's request counters)."""
  return live_metrics.counter(namespace, name)


def distribution(namespace: str, name: str):
  """A Beam distribution that the live registry sees too (see ``counter``)."""
  return live_metrics.distribution(namespace, name)


class MetricsCollector:
  """Counters and distributions for one model (or one key cohort).

  ``prefix`` is the model name after a refresh, or ``'<cohort key>-'`` for a
  model of a multi-model KeyedModelHandler; as in the reference, an ``_``
  joins it to the metric name (``five-_num_inferences``).
  """
  def __init__(self, namespace: str, prefix: str = ''):
    self.namespace = namespace
    if prefix:
      prefix = f'{prefix}_'
    self.prefix = prefix

    # Beam metrics that the live registry (--metrics-port) also sees.
    def counter(name):
      return live_metrics.counter(namespace, prefix + name)

    def dist(name):
      return live_metrics.distribution(namespace, prefix + name)

    self.num_inferences = counter('num_inferences')
    self.failed_batches_counter = counter('failed_batches_counter')
    self.failed_elements = counter('failed_inferences')
    self.inference_request_batch_size = dist('inference_request_batch_size')
    self.inference_request_batch_byte_size = dist(
        'inference_request_batch_byte_size')
    self.inference_batch_latency_micro_secs = dist(
        'inference_batch_latency_micro_secs')
    self.model_byte_size = dist('model_byte_size')
    self.load_model_latency_milli_secs = dist('load_model_latency_milli_secs')
    self.model_load_failures = counter('model_load_failures')
    self.model_swaps = counter('model_swaps')
    self.oom_backoffs = counter('oom_backoffs')
    self.model_refresh_rejected = counter('model_refresh_rejected')
    self._pending_load: Optional[tuple[int, int]] = None

  def update(self, num_elements: int, num_bytes: int, latency_us: int) -> None:
    self.num_inferences.inc(num_elements)
    self.inference_request_batch_size.update(num_elements)
    self.inference_request_batch_byte_size.update(num_bytes)
    self.inference_batch_latency_micro_secs.update(latency_us)

  def cache_load_model_metrics(self, latency_ms: int, byte_size: int) -> None:
    # Metrics recorded in DoFn.setup are dropped by some runners, so loads
    # done there are reported with the first batch.
    self._pending_load = (latency_ms, byte_size)

  def update_load_model_metrics(self, latency_ms: int, byte_size: int) -> None:
    self.load_model_latency_milli_secs.update(latency_ms)
    self.model_byte_size.update(byte_size)

  def flush_cached(self) -> None:
    if self._pending_load is not None:
      self.update_load_model_metrics(*self._pending_load)
      self._pending_load = None


class _StepState:
  """What Beam's metric updaters read from a state tracker: the container
  metrics go to (and no step name for log records)."""
  name_context = None

  def __init__(self, container):
    self.metrics_container = container


class _StepTracker:
  """A stand-in for the Beam state tracker on a thread that Beam did not
  start: every metric updated there goes to one step's container."""
  def __init__(self, container):
    self._state = _StepState(container)

  def current_state(self):
    return self._state

  def update_metric(self, typed_metric_name, value):
    self._state.metrics_container.get_metric_cell(typed_metric_name).update(
        value)


def carry_step_metrics(fn: Callable[[], Any]) -> Callable[[], Any]:
  """``fn`` made to record its Beam metrics in the container of the step
  running now, whichever thread later calls it.

  Beam finds the container through a thread-local state tracker, so metrics
  updated on a worker thread (a model call run in the background) would be
  dropped. Metric cells are thread-safe.
  """
  from apache_beam.metrics.execution import MetricsEnvironment
  from apache_beam.runners.worker import statesampler
  container = MetricsEnvironment.current_container()
  if container is None:
    return fn
  tracker = _StepTracker(container)

  def run():
    previous = statesampler.get_current_tracker()
    statesampler.set_current_tracker(tracker)
    try:
      return fn()
    finally:
      statesampler.set_current_tracker(previous)
  return run
