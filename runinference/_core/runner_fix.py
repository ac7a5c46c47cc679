"""A fix for the local runner's memory growing with every bundle.

Beam's ``FnApiRunner`` (the DirectRunner's engine) folds each bundle's
metrics into the totals so far with ``consolidate``, which is a *generator*:
``totals = consolidate(chain(bundle_metrics, totals))`` never runs, it nests
one more lazy ``chain`` per bundle and keeps every bundle's
``MonitoringInfo`` protos alive until the pipeline ends. A streaming
pipeline, which runs many small bundles for hours, grows without bound --
faster the more metrics a step reports per bundle, and RunInference reports
several (batch sizes, latencies, counts, per model), so its pipelines grew
faster than the same pipeline without it (issue 18, the soak). Consolidating
eagerly keeps one merged list per stage: the same totals, constant memory.
Installed once when RunInference's DoFns are imported; a Beam whose
``consolidate`` already returns a list is left alone.
"""
from __future__ import annotations

import logging

from . import sampler_fix

_LOGGER = logging.getLogger(__name__)
_installed = False


def _eager(consolidate):
  def consolidate_monitoring_infos(infos, *args, **kwargs):
    return list(consolidate(infos, *args, **kwargs))

  consolidate_monitoring_infos.runinference_eager = True  # type: ignore[attr-defined]
  return consolidate_monitoring_infos


def install() -> bool:
  """Makes the FnApiRunner consolidate metrics eagerly; True if it did."""
  global _installed
  if _installed:
    return True
  try:
    import inspect

    from apache_beam.runners.portability.fn_api_runner import fn_runner
  except Exception:  # pylint: disable=broad-except  (no such runner)
    return False
  current = getattr(fn_runner, 'consolidate_monitoring_infos', None)
  if current is None or getattr(current, 'runinference_eager', False):
    _installed = current is not None
    return _installed
  if not inspect.isgeneratorfunction(current):
    return False  # already eager in this Beam version
  fn_runner.consolidate_monitoring_infos = _eager(current)
  _installed = True
  _LOGGER.debug('FnApiRunner metrics are consolidated eagerly.')
  return True


def install_all() -> None:
  """Every local-runner fix: eager metrics (above) and a short state-sampler
  period (``sampler_fix.py``: no idle wait at bundle ends)."""
  install()
  sampler_fix.install()
