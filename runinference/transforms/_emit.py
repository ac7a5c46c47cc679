"""The last stage's output: rows as ``beam.Row`` (each with its own
timestamp and windows), or columnar batches in the form they came in."""
from __future__ import annotations

import itertools
import typing
from collections.abc import Sequence
from typing import Any, Optional

import apache_beam as beam
import numpy as np
from apache_beam.typehints import native_type_compatibility
from apache_beam.utils.windowed_value import WindowedValue

from .._core.gc_pause import gc_paused
from ._blocks import ARROW_BATCH, PANDAS, Block


def kind_of(typ) -> Optional[str]:
  """'float32' / 'int64' / 'bytes' for a column's declared type."""
  typ = native_type_compatibility.convert_builtin_to_typing(typ)
  if typing.get_origin(typ) in (list, Sequence, typing.Sequence,
                                typing.List) and typing.get_args(typ):
    typ = typing.get_args(typ)[0]
  if isinstance(typ, np.dtype):
    typ = typ.type
  if isinstance(typ, type):
    if issubclass(typ, (float, np.floating)):
      return 'float32'
    if issubclass(typ, (int, np.integer)):
      return 'int64'
    if issubclass(typ, (str, bytes, np.str_, np.bytes_)):
      return 'bytes'
  return None


def as_kind(value, kind: str) -> np.ndarray:
  if kind == 'bytes':
    items = value if isinstance(value, (list, tuple, np.ndarray)) else [value]
    return np.asarray([
        v.encode('utf-8') if isinstance(v, str) else v for v in items
    ], dtype=object)
  arr = np.asarray(value if isinstance(value, (list, tuple, np.ndarray)) else [value])
  return arr.astype(np.float32 if kind == 'float32' else np.int64).reshape(-1)


def _new_row(fields: dict) -> beam.Row:
  """``beam.Row(**fields)`` without copying the dict twice."""
  row = object.__new__(beam.Row)
  row.__dict__ = fields
  return row


class RowOutput:
  """Builds the output elements of a block. ``schema_kinds``: for rows of
  a schema'd PCollection, the kind of each input column (untouched columns
  are then given as arrays of that kind, as TensorFlow Transform does)."""
  def __init__(self, schema_kinds: Optional[dict]):
    self._kinds = {c: k for c, k in (schema_kinds or {}).items() if k}

  def emit(self, block: Block):
    if block.table is not None:
      yield WindowedValue(self._table(block), block.timestamps, block.windows)
      return
    position = {c: i for i, c in enumerate(block.order)}
    names = sorted(block.written, key=lambda c: position.get(c, len(position)))
    cells = [block.written[n].cells() for n in names]
    kinds = [(c, k) for c, k in self._kinds.items() if c not in block.written]
    n = len(block)
    rows = block.row_dicts()
    stamps = block.timestamps if isinstance(block.timestamps, list) else \
        itertools.repeat(block.timestamps, n)
    wins = block.windows if isinstance(block.windows, list) else \
        itertools.repeat(block.windows, n)
    # One WindowedValue copied per row (C) when all rows share timestamp and
    # windows: building each from a Timestamp costs more than the row.
    shared = None
    if not isinstance(block.timestamps, list) and not isinstance(block.windows, list):
      shared = WindowedValue(None, block.timestamps, block.windows)
    with gc_paused():
      for row, ts, win, *values in zip(rows or itertools.repeat(None, n), stamps,
                                       wins, *cells):
        if row is None:
          out = dict(zip(names, values))
        else:
          out = dict(row)
          out.update(zip(names, values))
        for col, kind in kinds:
          if col in out and not isinstance(out[col], np.ndarray):
            out[col] = as_kind(out[col], kind)
        value = _new_row(out)
        yield (shared.with_value(value) if shared is not None else
               WindowedValue(value, ts, win))

  @staticmethod
  def _table(block: Block) -> Any:
    table = block.table
    for name, col in block.written.items():
      arr = col.to_arrow()
      if name in table.column_names:
        table = table.set_column(table.column_names.index(name), name, arr)
      else:
        table = table.append_column(name, arr)
    if block.form == ARROW_BATCH:  # a block is never emitted empty
      return table.combine_chunks().to_batches()[0]
    if block.form == PANDAS:
      return table.to_pandas()
    return table
