"""Columns of a block: the values of many rows' cells in one flat array.

A ``Column`` holds ``values`` (a 1-D numpy array for numbers, a pyarrow
binary array for text) and ``offsets`` (``None`` when every cell is one
scalar; otherwise ``n + 1`` int64 offsets of each row's list, as Arrow's
list arrays). ``read_cells`` turns the raw cells of many rows into a Column
with C-level conversions, and finds the rows whose cell cannot be read (wrong
type, missing, non-finite where statistics need finite values) so that they
can be dead-lettered one by one.
"""
from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ._errors import ColumnTypeError, MissingColumnError

NUMERIC, STRINGS, INDICES, ANY = 'numeric', 'strings', 'indices', 'any'
_NUMBER_TYPES = frozenset((float, int, bool, np.float32, np.float64, np.int64,
                           np.int32, np.float16, np.int16, np.int8, np.uint8,
                           np.uint16, np.uint32, np.uint64, np.bool_))
_TEXT_TYPES = frozenset((str, bytes))
_SEQUENCE_TYPES = frozenset((list, tuple))
_LIST_CELLS = (list, tuple, np.ndarray)


class Missing:
  """Stands for the cell of a row that lacks the column (``row``: the row,
  for the error message; None for columnar input)."""
  __slots__ = ('row', )

  def __init__(self, row):
    self.row = row


@dataclass(frozen=True)
class Reader:
  """How a transform reads a column: as numbers (``finite``: rows with inf or
  NaN are refused), as text (split on ``delimiter``) or as int64 indices."""
  kind: str
  delimiter: Optional[str] = None
  finite: bool = False


@dataclass
class Column:
  values: Any  # np.ndarray (numbers) or pa.BinaryArray (text)
  offsets: Optional[np.ndarray] = None
  raw: bool = False  # values is an object array of the cells as they came

  def __len__(self) -> int:
    if self.offsets is None:
      return len(self.values)
    return len(self.offsets) - 1

  @property
  def is_text(self) -> bool:
    return isinstance(self.values, (pa.Array, pa.ChunkedArray))

  def lengths(self) -> np.ndarray:
    if self.offsets is None:
      return np.ones(len(self.values), dtype=np.int64)
    return np.diff(self.offsets)

  def width(self) -> Optional[int]:
    """The common list length of every row (1 for scalar cells), or None."""
    if self.offsets is None:
      return 1
    lengths = self.lengths()
    if len(lengths) and (lengths == lengths[0]).all():
      return int(lengths[0])
    return None if len(lengths) else 0

  def with_values(self, values) -> 'Column':
    return Column(values, self.offsets, self.raw)

  def take(self, rows: np.ndarray) -> 'Column':
    """The column of the given rows (sorted row indices)."""
    if self.offsets is None:
      return Column(_take(self.values, rows), None, self.raw)
    starts, ends = self.offsets[rows], self.offsets[rows + 1]
    lengths = ends - starts
    index = _ranges(starts, lengths)
    offsets = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return Column(_take(self.values, index), offsets)

  def numpy_values(self) -> np.ndarray:
    """Values as numpy (text as an object array of bytes)."""
    if self.is_text:
      return self.values.to_numpy(zero_copy_only=False)
    return self.values

  def cells(self) -> list:
    """One 1-D numpy array per row (the form rows carry their cells in)."""
    values = self.numpy_values()
    if self.raw:
      return list(values)
    if self.offsets is None:
      return list(values.reshape(-1, 1))
    width = self.width()
    if width is not None and width > 0:
      return list(values.reshape(-1, width))
    bounds = self.offsets.tolist()
    return [values[a:b] for a, b in zip(bounds[:-1], bounds[1:])]

  def to_arrow(self) -> pa.Array:
    if self.raw:
      return pa.array([np.asarray(c).reshape(-1) for c in self.values])
    values = self.values if self.is_text else pa.array(self.values)
    if self.offsets is None:
      return values
    return pa.ListArray.from_arrays(pa.array(self.offsets, pa.int32()
                                             if self.offsets[-1] < 2**31 else
                                             pa.int64()), values)


def _take(values, index: np.ndarray):
  if isinstance(values, (pa.Array, pa.ChunkedArray)):
    return values.take(pa.array(index, pa.int64()))
  return values[index]


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
  """Concatenated ``arange(s, s + l)`` for each start and length."""
  total = int(lengths.sum())
  if not total:
    return np.zeros(0, dtype=np.int64)
  keep = lengths > 0
  starts, lengths = starts[keep], lengths[keep]
  step = np.ones(total, dtype=np.int64)
  heads = np.zeros(len(lengths), dtype=np.int64)
  np.cumsum(lengths[:-1], out=heads[1:])
  step[0] = starts[0]
  step[heads[1:]] = starts[1:] - (starts[:-1] + lengths[:-1] - 1)
  return np.cumsum(step)


def gather(cells: list) -> Column:
  """Per-row 1-D arrays (a transform's outputs) as one Column."""
  arrays = [np.asarray(c).reshape(-1) for c in cells]
  lengths = np.fromiter(map(len, arrays), np.int64, len(arrays))
  kinds = {a.dtype.kind for a in arrays if a.size}
  if kinds and kinds <= set('biuf'):
    return Column(np.concatenate(arrays), offsets_of(lengths))
  flat = list(itertools.chain.from_iterable(arrays))
  if not kinds or set(map(type, flat)) <= {bytes}:
    return Column(pa.array(flat, pa.binary()), offsets_of(lengths))
  if set(map(type, flat)) <= _TEXT_TYPES | {np.str_, np.bytes_}:
    return Column(pa.array([v if isinstance(v, bytes) else str(v).encode()
                            for v in flat], pa.binary()), offsets_of(lengths))
  out = np.empty(len(arrays), dtype=object)
  out[:] = arrays
  return Column(out, None, raw=True)


def offsets_of(lengths) -> np.ndarray:
  offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
  np.cumsum(lengths, out=offsets[1:])
  return offsets


# -- reading raw cells ---------------------------------------------------------


def read_cells(cells: list, reader: Reader, column: str,
               transform: str) -> tuple[Column, dict[int, Exception]]:
  """Raw cells of many rows -> (Column of the readable rows, {row: error}).

  The column holds only the rows without an error, in order.
  """
  if reader.kind == ANY:
    return _read_any(cells, column, transform)
  fast = _read_fast(cells, reader)
  if fast is not None:
    col, bad = fast, {}
  else:
    col, bad = _read_rows(cells, reader, column, transform)
  if reader.finite and len(col.values):
    col, bad = _drop_non_finite(col, bad, len(cells), column, transform)
  return col, bad


def _read_any(cells: list, column: str, transform: str):
  bad = {}
  for i, cell in enumerate(cells):
    if isinstance(cell, Missing):
      try:
        _read_one(cell, Reader(ANY), column, transform)
      except Exception as e:  # pylint: disable=broad-except
        bad[i] = e
  good = [c for i, c in enumerate(cells) if i not in bad]
  out = np.empty(len(good), dtype=object)
  out[:] = good
  return Column(out, None, raw=True), bad


def _read_fast(cells: list, reader: Reader) -> Optional[Column]:
  """The common layouts (all scalars, all lists of one type) in C loops;
  None when the cells need the row-by-row path."""
  types = set(map(type, cells))
  if reader.kind == STRINGS:
    if types <= _TEXT_TYPES and len(types) == 1:
      return split_text(pa.array(cells), None, reader.delimiter)
    if types <= _SEQUENCE_TYPES:
      listed = _arrow_lists(cells, pa.binary())
      if listed is not None:
        return split_text(listed[0], listed[1], reader.delimiter)
      flat = list(itertools.chain.from_iterable(cells))
      inner = set(map(type, flat))
      if inner <= _TEXT_TYPES and len(inner) <= 1:
        lengths = np.fromiter(map(len, cells), np.int64, len(cells))
        arr = pa.array(flat, pa.binary() if bytes in inner else pa.string())
        return split_text(arr, offsets_of(lengths), reader.delimiter)
    return None
  dtype = np.int64 if reader.kind == INDICES else np.float32
  try:
    if types <= _NUMBER_TYPES and (reader.kind != INDICES or float not in types):
      return Column(np.array(cells, dtype=dtype), None)
    if types <= _SEQUENCE_TYPES:
      # Not for indices: Arrow's int64 lists take 1.0 as 1, and indices
      # refuse floats.
      listed = None if reader.kind == INDICES else _arrow_lists(cells, pa.float64())
      if listed is not None:
        return Column(listed[0].to_numpy().astype(dtype), listed[1])
      flat = list(itertools.chain.from_iterable(cells))
      inner = set(map(type, flat))
      if inner <= _NUMBER_TYPES and (reader.kind != INDICES or float not in inner):
        lengths = np.fromiter(map(len, cells), np.int64, len(cells))
        return Column(np.array(flat, dtype=dtype), offsets_of(lengths))
  except OverflowError:  # an int beyond the dtype's range: found row by row
    return None
  if types == {np.ndarray}:
    kinds = {c.dtype.kind for c in cells}
    ok = 'iub' if reader.kind == INDICES else 'iufb'
    if kinds <= set(ok) and all(c.ndim <= 1 for c in cells):
      lengths = np.fromiter(map(len, (c.reshape(-1) for c in cells)), np.int64,
                            len(cells))
      values = (np.concatenate([c.reshape(-1) for c in cells]) if cells else
                np.zeros(0))
      return Column(values.astype(dtype, copy=False), offsets_of(lengths))
  return None


def _arrow_lists(cells: list, item_type: pa.DataType) -> Optional[tuple]:
  """(values, int64 offsets) of list cells whose items all convert to
  ``item_type`` (numbers to float64; str and bytes to binary), in one C
  pass; None when a cell or an item is null or of another type (the
  generic path then finds the row)."""
  try:
    lists = pa.array(cells, pa.list_(item_type))
  except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, TypeError):
    return None
  if lists.null_count or lists.values.null_count:
    return None
  return lists.values, np.asarray(lists.offsets, dtype=np.int64)


def _read_rows(cells, reader, column, transform):
  """Row by row: each cell converted on its own, failures kept per row."""
  arrays, bad = [], {}
  for i, cell in enumerate(cells):
    try:
      arrays.append(_read_one(cell, reader, column, transform))
    except Exception as e:  # pylint: disable=broad-except
      bad[i] = e
  lengths = np.fromiter(map(len, arrays), np.int64, len(arrays))
  # Scalar cells (not lists) keep a scalar column, as the fast path makes it.
  scalar = not any(isinstance(c, _LIST_CELLS) for i, c in enumerate(cells)
                   if i not in bad)
  offsets = None if scalar else offsets_of(lengths)
  if reader.kind == STRINGS:
    flat = list(itertools.chain.from_iterable(arrays))
    return split_text(pa.array(flat, pa.binary()), offsets,
                      reader.delimiter), bad
  dtype = np.int64 if reader.kind == INDICES else np.float32
  values = np.concatenate(arrays).astype(dtype) if arrays else np.zeros(0, dtype)
  return Column(values, offsets), bad


def _read_one(cell, reader: Reader, column: str, transform: str) -> list:
  if isinstance(cell, Missing):
    has = (f' (its columns: {sorted(cell.row)})'
           if isinstance(cell.row, dict) else '')
    raise MissingColumnError(
        f'{transform} reads column {column!r}, which this row lacks{has}. '
        'Check the `columns` of the transform or add the column to every row.')
  if cell is None:
    raise ColumnTypeError(
        f'{transform} reads column {column!r}, which is None in this row. '
        'Fill missing values before MLTransform, or filter such rows out.')
  if reader.kind == STRINGS:
    items = cell if isinstance(cell, (list, tuple, np.ndarray)) else [cell]
    out = []
    for v in np.asarray(items, dtype=object).reshape(-1):
      if isinstance(v, (bytes, np.bytes_)):
        out.append(bytes(v))
      elif isinstance(v, (str, np.str_)):
        out.append(str(v).encode('utf-8'))
      else:
        raise ColumnTypeError(
            f'{transform} needs text (str or bytes) in column {column!r}, got '
            f'{describe(cell)}. Convert the column to strings first.')
    return out
  try:
    arr = np.asarray(cell if isinstance(cell, _LIST_CELLS) else [cell])
    if arr.dtype == object:
      arr = _object_numbers(arr)
  except (ValueError, TypeError, OverflowError) as e:
    raise ColumnTypeError(
        f'{transform} cannot read column {column!r} as numbers: '
        f'{describe(cell)} ({e}). Each cell must be a number or a flat list '
        'of numbers (within float32 range).') from None
  if not arr.size:
    return arr.reshape(-1).astype(np.int64 if reader.kind == INDICES else
                                  np.float32)
  ok = 'iub' if reader.kind == INDICES else 'iufb'
  if arr.dtype.kind not in ok:
    what = ('integer indices (e.g. the output of ComputeAndApplyVocabulary)'
            if reader.kind == INDICES else 'numbers')
    raise ColumnTypeError(
        f'{transform} needs {what} in column {column!r}, got '
        f'{describe(cell)}. Convert the column to int/float (or a list of '
        'them), or apply a string transform (e.g. ComputeAndApplyVocabulary) '
        'to it instead.')
  return arr.reshape(-1)


def _object_numbers(arr: np.ndarray) -> np.ndarray:
  """An object array whose items are all numbers, as a numeric array."""
  if all(type(v) in _NUMBER_TYPES for v in arr.reshape(-1)):
    return arr.astype(np.float64)
  return arr


def describe(value: Any) -> str:
  if isinstance(value, np.ndarray):
    return f'a numpy array of dtype {value.dtype}'
  if isinstance(value, (list, tuple)) and value:
    kinds = sorted({type(v).__name__ for v in value})
    return f'a {type(value).__name__} of {"/".join(kinds)}'
  return f'{type(value).__name__} {value!r:.60}'


def _drop_non_finite(col: Column, bad: dict, n: int, column: str,
                     transform: str):
  finite = np.isfinite(col.values)
  if finite.all():
    return col, bad
  kept = np.array([i for i in range(n) if i not in bad], dtype=np.int64)
  if col.offsets is None:
    row_ok = finite
  else:
    bad_values = np.flatnonzero(~finite)
    rows_with_bad = np.searchsorted(col.offsets, bad_values, side='right') - 1
    row_ok = np.ones(len(col), dtype=bool)
    row_ok[rows_with_bad] = False
  bad = dict(bad)
  for j in np.flatnonzero(~row_ok):
    values = (col.values[j:j + 1] if col.offsets is None else
              col.values[col.offsets[j]:col.offsets[j + 1]])
    worst = values[~np.isfinite(values)][0]
    bad[int(kept[j])] = ColumnTypeError(
        f'{transform} computes statistics over column {column!r}, and this '
        f'row holds a non-finite value ({worst}): statistics never include '
        'inf or NaN. Replace or drop such values before MLTransform (the '
        'row went to the dead-letter output).')
  return col.take(np.flatnonzero(row_ok)), bad


# -- text ----------------------------------------------------------------------


def _binary(arr: pa.Array) -> pa.Array:
  if pa.types.is_binary(arr.type):
    return arr
  if pa.types.is_large_binary(arr.type) or pa.types.is_large_string(arr.type):
    return arr.cast(pa.large_binary())
  return arr.cast(pa.binary())


def split_text(tokens: pa.Array, offsets: Optional[np.ndarray],
               delimiter: Optional[str]) -> Column:
  """Text as a binary Column, each token split on any character of
  ``delimiter`` (empty pieces dropped, as TensorFlow's string_split does)."""
  tokens = _binary(tokens)
  if not delimiter:
    return Column(tokens, offsets)
  if len(delimiter.encode('utf-8')) == 1:
    parts = pc.split_pattern(tokens, delimiter.encode('utf-8'))
  else:
    parts = pc.split_pattern_regex(
        tokens, '[' + re.escape(delimiter) + ']')
  pieces = pc.list_flatten(parts)
  inner = np.asarray(parts.offsets, dtype=np.int64)
  inner = inner - inner[0]
  keep = np.asarray(pc.binary_length(pieces)) > 0
  if not keep.all():
    kept_before = np.zeros(len(keep) + 1, dtype=np.int64)
    np.cumsum(keep, out=kept_before[1:])
    inner = kept_before[inner]
    pieces = pieces.filter(pa.array(keep))
  row_offsets = inner if offsets is None else inner[offsets]
  return Column(pieces, row_offsets)
