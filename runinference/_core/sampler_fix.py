"""A fix for the local runner idling at the end of every bundle.

Beam's SDK harness (the DirectRunner's FnApiRunner, and the portable
runner's workers) times each step with a state sampler: a thread that
sleeps, wakes, charges the elapsed time to the current step, and sleeps
again -- 2 ms at first, growing by 1.2x a tick up to 200 ms. A bundle ends
by stopping that thread and *joining* it, and the thread only sees the stop
when its sleep ends: every bundle waits out the rest of the current tick,
about a twelfth of a short bundle's time and 0-200 ms (100 on average) for
any bundle past a second, on every fused stage. A 0.7 s columnar run waited
0-150 ms for nothing (from the ramp, a short bundle waits ~8% of its time
on average: an estimate, not measured).

With a 10 ms period that wait is at most 10 ms. The sampler's thread runs
without the GIL and does a few loads and adds per tick, so 100 ticks a
second cost nothing measurable, and step times are sampled more finely.
Only the default period changes (a caller passing its own keeps it), once,
when RunInference's or RunInferenceColumnar's DoFns are imported; a Beam
whose sampler takes no such default is left alone.
"""
from __future__ import annotations

import inspect
import logging

_LOGGER = logging.getLogger(__name__)

PERIOD_MS = 10
_PARAM = 'sampling_period_ms'


def install() -> bool:
  """Gives new state samplers a ``PERIOD_MS`` period; True if they have it."""
  try:
    from apache_beam.runners.worker import statesampler
  except Exception:  # pylint: disable=broad-except  (no SDK harness)
    return False
  init = statesampler.StateSampler.__init__
  names = list(inspect.signature(init).parameters)
  defaults = init.__defaults__ or ()
  if _PARAM not in names or names[-1] != _PARAM or len(defaults) != 1:
    return False  # a sampler this fix does not know: leave it as it is
  if defaults[0] == PERIOD_MS:
    return True
  if defaults[0] != getattr(statesampler, 'DEFAULT_SAMPLING_PERIOD_MS', None):
    return False  # someone chose another period already
  init.__defaults__ = (PERIOD_MS, )
  _LOGGER.debug('State samplers tick every %d ms.', PERIOD_MS)
  return True
