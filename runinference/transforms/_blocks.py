"""Blocks: many rows of an MLTransform at once, read column by column.

A block holds the rows (dicts, or one Arrow table for columnar input), each
row's timestamp and windows (one value when all rows share it), the columns
the current stage reads (``inputs``, converted and checked once) and the
columns the transforms wrote (``written``). Rows that cannot be read are
taken out of the block and reported (``Failure``) so that they can go to the
dead-letter output.

Once the first stage has read its columns, the row dicts keep only the
columns no transform rewrites (``strip``): the rest travels as columns.
A pickled block carries its rows as one pickled blob, unpickled only where
they are used (the statistics pass never unpickles them).
"""
from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from typing import Any, Optional, Union

import numpy as np
import pyarrow as pa

from ._arrow import read_arrow
from ._cells import read_cells, split_text
from ._columns import ANY, INDICES, STRINGS, Column, Missing, Reader
from ._errors import ColumnTypeError

ROWS, ARROW_BATCH, ARROW_TABLE, PANDAS = 'rows', 'arrow_batch', 'arrow_table', 'pandas'


@dataclass
class Failure:
  """A row taken out of a block: its element, where it was, why."""
  element: Any
  timestamp: Any
  windows: Any
  error: BaseException
  transform: str


@dataclass
class Block:
  n: int
  rows: Optional[list]  # row dicts (what no transform rewrites), or None
  table: Optional[pa.Table]  # columnar input
  form: str  # ROWS / ARROW_BATCH / ARROW_TABLE / PANDAS
  timestamps: Union[list, Any]  # per row, or one shared value
  windows: Union[list, Any]  # per row, or one shared value
  inputs: dict = field(default_factory=dict)  # (column, Reader) -> Column
  written: dict = field(default_factory=dict)  # column -> Column
  order: tuple = ()  # the rows' column order, once the rows are gone

  @classmethod
  def of_rows(cls, rows: list, timestamps, windows) -> 'Block':
    """``timestamps``/``windows``: one per row, or one shared by all."""
    return cls(len(rows), rows, None, ROWS, timestamps, windows)

  def __len__(self) -> int:
    return self.n

  def __getstate__(self):
    state = dict(self.__dict__)
    if isinstance(state['rows'], list):
      state['rows'] = _Pickled(pickle.dumps(state['rows'], pickle.HIGHEST_PROTOCOL))
    return state

  def estimated_bytes(self) -> int:
    """About the size of the block encoded, without encoding it: its
    columns' buffers, plus the rows' blob (or a guess per row dict)."""
    size = sum(_nbytes(c) for c in (*self.inputs.values(), *self.written.values()))
    if isinstance(self.rows, _Pickled):
      size += len(self.rows.blob)
    elif self.rows is not None:
      size += _ROW_DICT_BYTES * self.n
    if self.table is not None:
      size += self.table.nbytes
    return size

  def row_dicts(self) -> Optional[list]:
    """The row dicts (None when every column travels as a column)."""
    if isinstance(self.rows, _Pickled):
      self.rows = pickle.loads(self.rows.blob)
    return self.rows

  # -- reading -----------------------------------------------------------------
  def raw_cells(self, column: str) -> list:
    """The cells of ``column`` in every row (``Missing`` where a row lacks it)."""
    rows = self.row_dicts() or [{}] * self.n
    try:
      return [r[column] for r in rows]
    except (KeyError, TypeError):
      return [r[column] if column in r else Missing(r) for r in rows]

  def read(self, column: str, reader: Reader, transform: str) -> list[Failure]:
    """Converts ``column`` for ``reader`` (once per block); the rows it
    cannot be read from are taken out of the block and returned."""
    key = (column, reader)
    if key in self.inputs:
      return []
    if column in self.written:
      col, bad = convert(self.written[column], reader, column, transform), {}
    elif self.table is not None:
      if column in self.table.column_names:
        col, bad = read_arrow(self.table.column(column), reader, column,
                              transform)
      else:
        col, bad = read_cells([Missing(None)] * self.n, reader, column,
                              transform)
    else:
      col, bad = read_cells(self.raw_cells(column), reader, column, transform)
    failures = self.drop({i: (e, transform) for i, e in bad.items()})
    self.inputs[key] = col
    return failures

  def column(self, column: str, reader: Reader) -> Column:
    return self.inputs[(column, reader)]

  def write(self, column: str, col: Column) -> None:
    """Sets a transform's output column (later reads of it see this)."""
    self.written[column] = col
    if any(k[0] == column for k in self.inputs):
      self.inputs = {k: v for k, v in self.inputs.items() if k[0] != column}

  def strip(self, columns: frozenset) -> None:
    """Empties ``columns`` in the row dicts (they travel as columns now);
    a row keeps its keys in their order (the output keeps the input's
    column order). When no row has any other column, the rows go and only
    the first row's column order stays."""
    rows = self.row_dicts()
    if rows is None or not columns:
      return
    if set().union(*rows) <= columns:  # every row's keys, in one C pass
      self.order = tuple(rows[0]) if rows else ()
      self.rows = None
    else:
      self.rows = [{k: (None if k in columns else v) for k, v in r.items()}
                   for r in rows]

  def copy(self) -> 'Block':
    """A copy that can be changed without changing this block (columns and
    rows are never changed in place, only replaced)."""
    return Block(self.n, self.row_dicts(), self.table, self.form, self.timestamps,
                 self.windows, dict(self.inputs), dict(self.written), self.order)

  # -- taking rows out ---------------------------------------------------------
  def drop(self, bad: dict[int, tuple[Exception, str]]) -> list[Failure]:
    """Takes the rows in ``bad`` (row -> (error, transform)) out of the
    block, its columns included."""
    if not bad:
      return []
    keep = np.array([i for i in range(self.n) if i not in bad], dtype=np.int64)
    failures = [
        Failure(self.element(i), self.timestamp(i), self.window(i), e, name)
        for i, (e, name) in sorted(bad.items())
    ]
    self._keep_rows(keep)
    return failures

  def select(self, keep: np.ndarray) -> 'Block':
    """A new block of the rows ``keep`` (sorted indices), columns included."""
    out = self.copy()
    out._keep_rows(keep)
    return out

  def _keep_rows(self, keep: np.ndarray) -> None:
    index = keep.tolist()
    rows = self.row_dicts()
    if rows is not None:
      self.rows = [rows[i] for i in index]
    if self.table is not None:
      self.table = self.table.take(pa.array(keep, pa.int64()))
    if isinstance(self.timestamps, list):
      self.timestamps = [self.timestamps[i] for i in index]
    if isinstance(self.windows, list):
      self.windows = [self.windows[i] for i in index]
    self.inputs = {k: c.take(keep) for k, c in self.inputs.items()}
    self.written = {k: c.take(keep) for k, c in self.written.items()}
    self.n = len(index)

  def element(self, i: int) -> Any:
    """Row ``i`` as the transforms see it (for the dead-letter output)."""
    if self.table is not None:
      return self.table.slice(i, 1).to_pylist()[0]
    rows = self.row_dicts()
    row = dict(rows[i]) if rows is not None else {}
    for (name, _), col in self.inputs.items():
      if row.get(name) is None:  # absent, or emptied by ``strip``
        row[name] = _cell(col, i)
    for name, col in self.written.items():
      row[name] = _cell(col, i)
    return row

  def timestamp(self, i: int):
    return self.timestamps[i] if isinstance(self.timestamps, list) else self.timestamps

  def window(self, i: int):
    return self.windows[i] if isinstance(self.windows, list) else self.windows


@dataclass
class _Pickled:
  blob: bytes


_ROW_DICT_BYTES = 64  # a guess: only Beam's size counters read it


def _nbytes(col: Column) -> int:
  offsets = 0 if col.offsets is None else col.offsets.nbytes
  return int(getattr(col.values, 'nbytes', 0)) + offsets


def _cell(col: Column, i: int):
  return col.take(np.array([i])).cells()[0]


# -- reading a column an earlier transform wrote -------------------------------


def to_text_column(col: Column, reader: Reader, column: str,
                   transform: str) -> Column:
  """A column an earlier transform wrote, read as text."""
  if not col.is_text:
    raise ColumnTypeError(
        f'{transform} needs text in column {column!r}, but an earlier '
        f'transform made it {col.values.dtype} numbers. Reorder the '
        'transforms or use another column.')
  values = col.values
  if reader.delimiter:
    split = split_text(values, None, reader.delimiter)
    offsets = split.offsets
    row_offsets = offsets if col.offsets is None else offsets[col.offsets]
    return Column(split.values, row_offsets)
  return col


def convert(col: Column, reader: Reader, column: str,
            transform: str) -> Column:
  """A column an earlier transform of this block wrote, read by ``reader``."""
  if reader.kind == ANY:
    return col
  if col.raw:
    return read_cells(col.cells(), reader, column, transform)[0]
  if reader.kind == STRINGS:
    return to_text_column(col, reader, column, transform)
  if col.is_text:
    raise ColumnTypeError(
        f'{transform} needs numbers in column {column!r}, but an earlier '
        'transform made it text. Reorder the transforms or use another column.')
  if reader.kind == INDICES:
    if col.values.dtype.kind not in 'iu':
      raise ColumnTypeError(
          f'{transform} needs integer indices in column {column!r} (e.g. '
          'the output of ComputeAndApplyVocabulary), got '
          f'{col.values.dtype} values.')
    return col.with_values(col.values.astype(np.int64, copy=False))
  return col.with_values(col.values.astype(np.float32, copy=False))
