"""Columns of Arrow tables (columnar MLTransform input) as ``Column``s."""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from ._cells import read_cells, split_text
from ._columns import INDICES, STRINGS, Column, Reader


def read_arrow(chunked, reader: Reader, column: str, transform: str):
  """An Arrow column -> Column; nulls are refused row by row."""
  arr = chunked.combine_chunks() if isinstance(chunked, pa.ChunkedArray) else chunked
  if arr.null_count:
    return read_cells(arr.to_pylist(), reader, column, transform)
  typ = arr.type
  if pa.types.is_list(typ) or pa.types.is_large_list(typ) or pa.types.is_fixed_size_list(typ):
    inner = arr.flatten()
    if inner.null_count:
      return read_cells(arr.to_pylist(), reader, column, transform)
    offsets = _list_offsets(arr)
    return _typed(inner, offsets, reader, column, transform)
  return _typed(arr, None, reader, column, transform)


def _list_offsets(arr) -> np.ndarray:
  if pa.types.is_fixed_size_list(arr.type):
    size = arr.type.list_size
    return np.arange(len(arr) + 1, dtype=np.int64) * size
  offsets = np.asarray(arr.offsets, dtype=np.int64)
  return offsets - offsets[0]


def _typed(values: pa.Array, offsets, reader: Reader, column: str, transform: str):
  typ = values.type
  text = pa.types.is_string(typ) or pa.types.is_binary(typ) or \
      pa.types.is_large_string(typ) or pa.types.is_large_binary(typ)
  numeric = pa.types.is_integer(typ) or pa.types.is_floating(typ) or \
      pa.types.is_boolean(typ)
  if reader.kind == STRINGS and text:
    return split_text(values, offsets, reader.delimiter), {}
  if reader.kind == INDICES and (pa.types.is_integer(typ)):
    return Column(values.to_numpy().astype(np.int64), offsets), {}
  if reader.kind not in (STRINGS, INDICES) and numeric:
    col = Column(values.to_numpy(zero_copy_only=False).astype(np.float32), offsets)
    if reader.finite and not np.isfinite(col.values).all():
      cells = col.cells() if offsets is not None else col.values.tolist()
      return read_cells(cells, reader, column, transform)
    return col, {}
  return read_cells(pa.ListArray.from_arrays(pa.array(offsets), values).to_pylist()
                    if offsets is not None else values.to_pylist(),
                    reader, column, transform)
