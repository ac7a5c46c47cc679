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

  def emit(self, block: Block) -> list:
    """The block's output elements, as WindowedValues (a list: built with
    C-level loops, one Python step per row and column at most)."""
    if block.table is not None:
      return [WindowedValue(self._table(block), block.timestamps, block.windows)]
    position = {c: i for i, c in enumerate(block.order)}
    names = sorted(block.written, key=lambda c: position.get(c, len(position)))
    kinds = [(c, k) for c, k in self._kinds.items() if c not in block.written]
    n = len(block)
    rows = block.row_dicts()
    with gc_paused():
      # Rewritten columns keep their place in a row; new ones follow in order.
      outs = list(map(dict, rows)) if rows is not None else [{} for _ in range(n)]
      for name in names:
        for out, cell in zip(outs, block.written[name].cells()):
          out[name] = cell
      for col, kind in kinds:
        for out in outs:
          if col in out and not isinstance(out[col], np.ndarray):
            out[col] = as_kind(out[col], kind)
      values = list(map(_new_row, outs))
      if isinstance(block.timestamps, list) or isinstance(block.windows, list):
        stamps = block.timestamps if isinstance(block.timestamps, list) else \
            itertools.repeat(block.timestamps, n)
        wins = block.windows if isinstance(block.windows, list) else \
            itertools.repeat(block.windows, n)
        return list(map(WindowedValue, values, stamps, wins))
      # One WindowedValue copied per row (C) when all rows share timestamp
      # and windows: building each from a Timestamp costs more than the row.
      shared = WindowedValue(None, block.timestamps, block.windows)
      return list(map(shared.with_value, values))

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
