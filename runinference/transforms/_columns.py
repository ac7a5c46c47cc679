"""Columns of a block: the values of many rows' cells in one flat array.

A ``Column`` holds ``values`` (a 1-D numpy array for numbers, a pyarrow
binary array for text) and ``offsets`` (``None`` when every cell is one
scalar; otherwise ``n + 1`` int64 offsets of each row's list, as Arrow's
list arrays). ``_cells.read_cells`` makes Columns from the raw cells of rows.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import pyarrow as pa

NUMERIC, STRINGS, INDICES, ANY = 'numeric', 'strings', 'indices', 'any'


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
  if set(map(type, flat)) <= {str, bytes, np.str_, np.bytes_}:
    return Column(pa.array([v if isinstance(v, bytes) else str(v).encode()
                            for v in flat], pa.binary()), offsets_of(lengths))
  out = np.empty(len(arrays), dtype=object)
  out[:] = arrays
  return Column(out, None, raw=True)


def offsets_of(lengths) -> np.ndarray:
  offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
  np.cumsum(lengths, out=offsets[1:])
  return offsets
