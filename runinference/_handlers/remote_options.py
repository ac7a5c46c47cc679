"""Checking a remote handler's numeric options, and its request metrics
(unknown options are rejected by ``ModelHandler`` itself)."""
from __future__ import annotations

from ..exceptions import ConfigurationError
from .._core import metrics as core_metrics

__all__ = ['RemoteMetrics', 'check_positive']


class RemoteMetrics:
  """Counters and a latency distribution under the handler's namespace,
  made by the metrics layer (so ``--metrics-port`` sees them too)."""
  def __init__(self, namespace: str):
    c = lambda name: core_metrics.counter(namespace, name)
    self.requests = c('remote_requests')
    self.retries = c('remote_retries')
    self.request_failures = c('remote_request_failures')
    self.failed_batches = c('remote_failed_batches')
    self.throttled_ms = c('remote_throttled_ms')
    # The name Beam's throttling signal uses (whole seconds).
    self.throttled_secs = c('cumulativeThrottlingSeconds')
    self.backoff_ms = c('remote_backoff_ms')
    self.latency_ms = core_metrics.distribution(namespace,
                                                'remote_request_latency_ms')

  def throttled(self, seconds: float) -> None:
    self.throttled_ms.inc(int(seconds * 1000))
    if seconds >= 1:
      self.throttled_secs.inc(int(seconds))


def check_positive(name: str, value, allow_zero: bool = False) -> None:
  low = 0 if allow_zero else 1
  if isinstance(value, bool) or not isinstance(value, int) or value < low:
    raise ConfigurationError(
        f'{name} must be an integer >= {low}, got {value!r}.')
