"""Reading the raw cells of many rows into a ``Column``.

``read_cells`` converts with C-level loops (numpy, Arrow) when the cells have
a common layout, and otherwise row by row, finding the rows whose cell cannot
be read (wrong type, missing, text that is not UTF-8, non-finite where
statistics need finite values) so that they can be dead-lettered one by one.
"""
from __future__ import annotations

import itertools
import re
from typing import Any, Optional

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ._columns import ANY, INDICES, STRINGS, Column, Missing, Reader, offsets_of
from ._errors import ColumnTypeError, MissingColumnError

_NUMBER_TYPES = frozenset((float, int, bool, np.float32, np.float64, np.int64,
                           np.int32, np.float16, np.int16, np.int8, np.uint8,
                           np.uint16, np.uint32, np.uint64, np.bool_))
_TEXT_TYPES = frozenset((str, bytes))
_SEQUENCE_TYPES = frozenset((list, tuple))
_LIST_CELLS = (list, tuple, np.ndarray)


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
    try:
      return _read_fast_text(cells, types, reader)
    except UnicodeEncodeError:  # a str that is not UTF-8: found row by row
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


def _read_fast_text(cells: list, types: set, reader: Reader) -> Optional[Column]:
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
        try:
          out.append(str(v).encode('utf-8'))
        except UnicodeEncodeError as e:
          raise ColumnTypeError(
              f'{transform} needs text that can be encoded as UTF-8 in column '
              f'{column!r}, got {v!r:.60} ({e.reason} at position {e.start}). '
              "Decode the source with errors='replace' or drop such rows."
          ) from None
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
