"""Batched DoFns (``process_batch``) on the Dask runner.

A DoFn that defines only ``process_batch`` gets its partition's elements as
batches, as Beam's SDK harness hands them over: up to ``MAX_BATCH_SIZE``
values at a time, grouped by timestamp, windows and pane. Batches as
*outputs* (``process_batch`` without ``@yields_elements``, or ``process``
with ``@yields_batches``) are not supported: the bags hold elements.
"""
from __future__ import annotations

from typing import Iterable

import apache_beam as beam
from apache_beam.runners.common import DoFnSignature
from apache_beam.utils.windowed_value import WindowedBatch

from .._core.dofn_kinds import (MAX_BATCH_SIZE, input_batches, overrides,
                                takes_batches)
from ..exceptions import UnsupportedOnDaskError


def check_supported(fn: beam.DoFn, label: str) -> None:
  """Raises ``UnsupportedOnDaskError`` when ``fn`` would output batches."""
  signature = DoFnSignature(fn)
  # The markers Beam's own DoFnRunner reads (set by beam.DoFn.yields_*).
  batches_out = (
      (takes_batches(fn) and not getattr(
          signature.process_batch_method.method_value,
          '_beam_yields_elements', False)) or
      (overrides(fn, 'process') and getattr(
          signature.process_method.method_value, '_beam_yields_batches',
          False)))
  if batches_out:
    raise UnsupportedOnDaskError(
        f'Step {label!r} outputs batches (process_batch without '
        '@beam.DoFn.yields_elements, or process with @yields_batches); the '
        'Dask runner passes elements between steps. Yield elements, or run '
        'this pipeline on the DirectRunner, Flink or Dataflow.')


def as_batches(elements: Iterable, fn: beam.DoFn) -> Iterable[WindowedBatch]:
  """``elements`` (windowed values) as the batches ``fn.process_batch``
  takes, each of one timestamp, windows and pane."""
  chunk: list = []
  for wv in elements:
    chunk.append(wv)
    if len(chunk) >= MAX_BATCH_SIZE:
      yield from input_batches(chunk, fn)
      chunk = []
  if chunk:
    yield from input_batches(chunk, fn)
