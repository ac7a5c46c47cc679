"""What kind of DoFn a DoFn is (per element, batched, or both), and the
batches Beam's SDK harness hands a batched DoFn, for runners that must make
them themselves (our Dask runner, the bundle-based DirectRunner's fix)."""
from __future__ import annotations

from typing import Callable, Iterable

import apache_beam as beam
from apache_beam.utils.windowed_value import WindowedBatch

#: Values per batch, as the SDK harness (operations.py) batches them.
MAX_BATCH_SIZE = 4096


def overrides(fn: beam.DoFn, name: str) -> bool:
  """Whether ``fn`` defines its own ``name`` method (Beam's own test)."""
  method = getattr(fn, name)
  return getattr(method, '__func__', method) is not getattr(beam.DoFn, name)


def takes_batches(fn: beam.DoFn) -> bool:
  """Whether ``fn`` takes batches only (``process_batch``, no ``process``)."""
  return overrides(fn, 'process_batch') and not overrides(fn, 'process')


def input_batches(windowed_values: list, fn: beam.DoFn) -> Iterable[WindowedBatch]:
  """``windowed_values`` (at most ``MAX_BATCH_SIZE``) as the batches
  ``fn.process_batch`` takes, each of one timestamp, windows and pane."""
  converter = getattr(fn, 'input_batch_converter', None)  # set by ParDo
  produce: Callable = converter.produce_batch if converter is not None else list
  return WindowedBatch.from_windowed_values(windowed_values, produce_fn=produce)
