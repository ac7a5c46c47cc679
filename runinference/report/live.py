"""Live RunInference metrics: a process-global registry that a running
pipeline updates and a Prometheus endpoint (or a progress display) reads.

Off by default: ``counter_inc`` / ``distribution_update`` return after one
module-global check until ``enable()`` (or ``serve()``) turns recording on.

    server = live_metrics.serve(port=9400)       # http://127.0.0.1:9400/metrics
    ... run the pipeline ...
    server.stop()

Values are per process: with a multi-process runner each worker process has
its own registry (serve from the process that runs the work, or use the
runner's own metrics).
"""
from __future__ import annotations

import dataclasses
import re
import threading
from typing import Any, Iterator, Optional

__all__ = [
    'Distribution', 'LiveCounter', 'LiveDistribution', 'MetricsServer',
    'Snapshot', 'counter', 'counter_inc', 'disable', 'distribution',
    'distribution_update', 'enable', 'enabled', 'error_sample',
    'error_samples', 'reset', 'serve', 'snapshot', 'step_count', 'step_counts'
]

_enabled = False
_lock = threading.Lock()
_counters: dict[tuple[str, str], int] = {}
_distributions: dict[tuple[str, str], 'Distribution'] = {}
# The first dead letters of the run, for the report: (step, error, example).
_errors: list[tuple[str, str, str]] = []
# Rows per YAML step, for the progress line: (step, 'in' | 'out') -> rows.
_steps: dict[tuple[str, str], int] = {}
MAX_ERROR_SAMPLES = 20


@dataclasses.dataclass
class Distribution:
  """Count, sum, min and max of the values recorded (as Beam's)."""
  count: int = 0
  sum: int = 0
  min: Optional[int] = None
  max: Optional[int] = None

  def update(self, value: int) -> None:
    self.count += 1
    self.sum += value
    self.min = value if self.min is None else min(self.min, value)
    self.max = value if self.max is None else max(self.max, value)

  @property
  def mean(self) -> float:
    return self.sum / self.count if self.count else 0.0


@dataclasses.dataclass(frozen=True)
class Snapshot:
  """A copy of every counter and distribution at one moment."""
  counters: dict[tuple[str, str], int]
  distributions: dict[tuple[str, str], Distribution]

  def counter(self, name: str, namespace: Optional[str] = None) -> int:
    """Sum of the counters called ``name`` (ending in ``_name`` for a
    model-prefixed one), over every namespace unless one is given."""
    return sum(v for (ns, n), v in self.counters.items()
               if _matches(ns, n, name, namespace))

  def distribution(self, name: str,
                   namespace: Optional[str] = None) -> Distribution:
    total = Distribution()
    for (ns, n), d in self.distributions.items():
      if _matches(ns, n, name, namespace) and d.count:
        total.count += d.count
        total.sum += d.sum
        total.min = d.min if total.min is None else min(total.min, d.min)
        total.max = d.max if total.max is None else max(total.max, d.max)
    return total


def _matches(ns, n, name, namespace) -> bool:
  return (namespace is None or ns == namespace) and n == name


def enabled() -> bool:
  return _enabled


def enable() -> None:
  """Start recording (``serve`` does this too)."""
  global _enabled
  _enabled = True


def disable() -> None:
  global _enabled
  _enabled = False


def reset() -> None:
  """Forget every value recorded so far."""
  with _lock:
    _counters.clear()
    _distributions.clear()
    _errors.clear()
    _steps.clear()


def error_sample(step: str, error: str, example: str = '') -> None:
  """Keeps one dead letter (the first ``MAX_ERROR_SAMPLES`` of the run) for
  the run report, when recording is on."""
  if not _enabled:
    return
  with _lock:
    if len(_errors) < MAX_ERROR_SAMPLES:
      _errors.append((str(step), str(error), str(example)[:200]))


def step_count(step: str, direction: str, rows: int = 1) -> None:
  """Counts ``rows`` into (``direction='in'``) or out of a pipeline step,
  when recording is on (the CLI's per-step progress; not exported)."""
  if not _enabled:
    return
  key = (step, direction)
  with _lock:
    _steps[key] = _steps.get(key, 0) + rows


def step_counts() -> dict[str, dict[str, int]]:
  """``{step: {'in': rows, 'out': rows}}``, steps by name."""
  with _lock:
    out: dict[str, dict[str, int]] = {}
    for (step, direction), rows in sorted(_steps.items()):
      out.setdefault(step, {'in': 0, 'out': 0})[direction] = rows
    return out


def error_samples() -> list[tuple[str, str, str]]:
  """The dead letters kept so far, as ``(step, error, example)``."""
  with _lock:
    return list(_errors)


def counter_inc(namespace: str, name: str, value: int = 1) -> None:
  if not _enabled:
    return
  key = (namespace, name)
  with _lock:
    _counters[key] = _counters.get(key, 0) + value


def distribution_update(namespace: str, name: str, value: int) -> None:
  if not _enabled:
    return
  key = (namespace, name)
  with _lock:
    dist = _distributions.get(key)
    if dist is None:
      dist = _distributions[key] = Distribution()
    dist.update(int(value))


class LiveCounter:
  """A Beam counter that also counts in this registry (when enabled)."""
  __slots__ = ('_beam', '_key')

  def __init__(self, beam_counter, namespace: str, name: str):
    self._beam = beam_counter
    self._key = (namespace, name)

  def inc(self, n: int = 1) -> None:
    self._beam.inc(n)
    if _enabled:
      counter_inc(*self._key, n)

  def dec(self, n: int = 1) -> None:
    self.inc(-n)


class LiveDistribution:
  """A Beam distribution that also records in this registry (when
  enabled)."""
  __slots__ = ('_beam', '_key')

  def __init__(self, beam_distribution, namespace: str, name: str):
    self._beam = beam_distribution
    self._key = (namespace, name)

  def update(self, value: int) -> None:
    self._beam.update(value)
    if _enabled:
      distribution_update(*self._key, value)


def counter(namespace: str, name: str) -> LiveCounter:
  """``Metrics.counter(namespace, name)`` that the live registry sees too."""
  from apache_beam.metrics.metric import Metrics
  return LiveCounter(Metrics.counter(namespace, name), namespace, name)


def distribution(namespace: str, name: str) -> LiveDistribution:
  """``Metrics.distribution(namespace, name)`` that the live registry sees
  too."""
  from apache_beam.metrics.metric import Metrics
  return LiveDistribution(Metrics.distribution(namespace, name), namespace,
                          name)


def snapshot() -> Snapshot:
  with _lock:
    return Snapshot(
        dict(_counters),
        {k: dataclasses.replace(d) for k, d in _distributions.items()})


# --- Prometheus text format -------------------------------------------------
# Model-prefixed names ('five-_num_inferences', 'v2_num_inferences') become
# one family per metric with the prefix as the ``model`` label.
_KNOWN = sorted(('num_inferences', 'failed_batches_counter', 'failed_inferences',
                 'model_load_failures', 'model_swaps',
                 'inference_request_batch_size',
                 'inference_request_batch_byte_size',
                 'inference_batch_latency_micro_secs', 'model_byte_size',
                 'load_model_latency_milli_secs'),
                key=len, reverse=True)


def _family(name: str) -> tuple[str, str]:
  """(metric family, model label) of a recorded metric name."""
  for known in _KNOWN:
    if name.endswith(known):
      return known, name[:-len(known)].rstrip('_').rstrip('-')
  return re.sub(r'[^a-zA-Z0-9_]', '_', name), ''


class _Collector:
  """A prometheus_client collector over the registry's snapshot."""

  def collect(self) -> Iterator:
    from prometheus_client.core import (CounterMetricFamily,
                                        GaugeMetricFamily,
                                        SummaryMetricFamily)
    snap = snapshot()
    families: dict[str, Any] = {}

    def family(kind, key: str, doc: str):
      if key not in families:
        families[key] = kind(key, doc, labels=['namespace', 'model'])
      return families[key]

    for (ns, name), value in sorted(snap.counters.items()):
      fam, model = _family(name)
      family(CounterMetricFamily, f'runinference_{fam}',
             f'RunInference counter {fam}').add_metric([ns, model], value)
    for (ns, name), dist in sorted(snap.distributions.items()):
      fam, model = _family(name)
      family(SummaryMetricFamily, f'runinference_{fam}',
             f'RunInference distribution {fam}').add_metric(
                 [ns, model], dist.count, dist.sum)
      family(GaugeMetricFamily, f'runinference_{fam}_max',
             f'Largest {fam} so far').add_metric([ns, model], dist.max or 0)
    yield from families.values()


@dataclasses.dataclass
class MetricsServer:
  """A running exporter; ``url`` is its scrape address."""
  host: str
  port: int
  _server: object = dataclasses.field(repr=False)
  _thread: threading.Thread = dataclasses.field(repr=False)

  @property
  def url(self) -> str:
    return f'http://{self.host}:{self.port}/metrics'

  def stop(self, timeout: float = 5.0) -> None:
    self._server.shutdown()
    self._server.server_close()
    self._thread.join(timeout)


def serve(port: int = 0, host: str = '127.0.0.1') -> MetricsServer:
  """Serves the live metrics in Prometheus text format on ``host:port``
  (port 0: a free port, see ``.port``) and turns recording on."""
  try:
    from prometheus_client import CollectorRegistry, start_http_server
  except ImportError as e:
    from runinference.exceptions import MissingDependencyError
    raise MissingDependencyError(
        'live metrics need prometheus_client: '
        "pip install 'runinference[cli]'") from e
  registry = CollectorRegistry(auto_describe=False)
  registry.register(_Collector())
  server, thread = start_http_server(port, addr=host, registry=registry)
  enable()
  return MetricsServer(host, server.server_address[1], server, thread)


def _install() -> None:
  """Every metric the core creates from now on records here too (when
  enabled): the core exposes the hook, this module installs itself."""
  import sys
  from runinference._core import live_hook
  live_hook.install(sys.modules[__name__])


_install()
