"""Where the core's metrics also go while they are recorded live.

The core records Beam metrics; a live registry above it (the report package's
``runinference.report.live``, behind ``--metrics-port`` and the CLI's
progress line) installs itself here when it is imported, so that the core
never imports it: ``install(registry)`` with an object that has
``counter(namespace, name)`` and ``distribution(namespace, name)`` returning
Beam-metric-like objects (``inc`` / ``update``).
"""
from __future__ import annotations

from typing import Any, Optional


class _LiveMetrics:
  """Plain Beam metrics until a live registry is installed."""

  registry: Optional[Any] = None

  def counter(self, namespace: str, name: str):
    if self.registry is not None:
      return self.registry.counter(namespace, name)
    from apache_beam.metrics.metric import Metrics
    return Metrics.counter(namespace, name)

  def distribution(self, namespace: str, name: str):
    if self.registry is not None:
      return self.registry.distribution(namespace, name)
    from apache_beam.metrics.metric import Metrics
    return Metrics.distribution(namespace, name)


live_metrics = _LiveMetrics()


def install(registry: Any) -> None:
  """Makes every metric the core creates from now on also record in
  ``registry``."""
  live_metrics.registry = registry
