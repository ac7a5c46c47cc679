"""What kind of DoFn a DoFn is: per element, batched, or both."""
from __future__ import annotations

import apache_beam as beam


def overrides(fn: beam.DoFn, name: str) -> bool:
  """Whether ``fn`` defines its own ``name`` method (Beam's own test)."""
  method = getattr(fn, name)
  return getattr(method, '__func__', method) is not getattr(beam.DoFn, name)


def takes_batches(fn: beam.DoFn) -> bool:
  """Whether ``fn`` takes batches only (``process_batch``, no ``process``)."""
  return overrides(fn, 'process_batch') and not overrides(fn, 'process')
