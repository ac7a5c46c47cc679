"""Chunk types of the columnar path: ``pyarrow.RecordBatch``, ``pyarrow.Table``
and ``pandas.DataFrame``, each behind the same small set of operations
(row count, column names, feature matrix, slice, take, append columns).

pyarrow and pandas are imported only when a chunk of theirs arrives, so the
package imports without them. Knows nothing of models or Beam."""
from __future__ import annotations

import sys
from typing import Any, Optional, Sequence

import numpy

from ..exceptions import InvalidInputTypeError, MissingColumnsError


class Chunk:
  """Operations on one chunk type (stateless; one instance per type)."""
  kind = ''

  def num_rows(self, chunk) -> int:
    return len(chunk)

  def column_names(self, chunk) -> list:
    raise NotImplementedError

  def check_features(self, chunk, features: Sequence[str]) -> None:
    """Raises MissingColumnsError / TypeError for problems every row shares."""
    names = self.column_names(chunk)
    present = set(names)
    missing = [c for c in features if c not in present]
    if missing:
      raise MissingColumnsError(
          f'The {self.kind} chunk has no column(s) {missing}; its columns are '
          f'{names}. feature_columns must name columns of every chunk.')
    for name in features:
      problem = self._non_numeric(chunk, name)
      if problem:
        raise InvalidInputTypeError(
            f'Feature column {name!r} of the {self.kind} chunk is {problem}, '
            'not numeric; convert it to numbers before RunInferenceColumnar '
            '(e.g. encode categories in a beam.Map over the chunks).')

  def _non_numeric(self, chunk, name) -> Optional[str]:
    return None

  def columns(self, chunk, names: Sequence[str]) -> list:
    """The named columns as 1-D numpy arrays."""
    raise NotImplementedError

  def matrix(self, chunk, names: Sequence[str], dtype=None) -> numpy.ndarray:
    """A C-ordered ``(rows, len(names))`` matrix of the named columns."""
    cols = self.columns(chunk, names)
    if dtype is None:
      dtype = numpy.result_type(*cols)
      if dtype.kind not in 'biufc':  # object columns (pandas): numbers wanted
        dtype = numpy.dtype(numpy.float64)
    out = numpy.empty((self.num_rows(chunk), len(cols)), dtype=dtype)
    for j, col in enumerate(cols):
      out[:, j] = col
    return out

  def frame(self, chunk, names: Sequence[str]):
    """The named columns as a pandas DataFrame (for DataFrame-input models)."""
    raise NotImplementedError

  def slice(self, chunk, lo: int, hi: int):
    raise NotImplementedError

  def take(self, chunk, rows: numpy.ndarray):
    raise NotImplementedError

  def with_columns(self, chunk, outputs: list):
    """The chunk with ``outputs`` (``[(name, array)]``, 1-D or 2-D arrays of
    one entry per row) appended; a 2-D array becomes one list column."""
    raise NotImplementedError


def _arrow_column(array) -> Any:
  """A 1-D or 2-D numpy array as an Arrow array (2-D: fixed-size lists)."""
  import pyarrow as pa
  if array.ndim == 2:
    width = array.shape[1]
    flat = pa.array(numpy.ascontiguousarray(array).reshape(-1))
    return pa.FixedSizeListArray.from_arrays(flat, width)
  return pa.array(numpy.ascontiguousarray(array))


class _Arrow(Chunk):
  def column_names(self, chunk) -> list:
    return list(chunk.schema.names)

  def _non_numeric(self, chunk, name) -> Optional[str]:
    import pyarrow as pa
    t = chunk.schema.field(name).type
    if pa.types.is_dictionary(t):
      t = t.value_type
    if (pa.types.is_integer(t) or pa.types.is_floating(t) or
        pa.types.is_boolean(t) or pa.types.is_decimal(t) or
        pa.types.is_null(t)):
      return None
    return f'of Arrow type {t}'

  def columns(self, chunk, names) -> list:
    import pyarrow as pa
    cols = []
    for name in names:
      col = chunk.column(name)
      t = col.type
      if pa.types.is_dictionary(t):
        col = col.cast(t.value_type)
      if pa.types.is_decimal(t) or pa.types.is_null(t):
        col = col.cast(pa.float64())
      # Nulls become NaN (integer columns with nulls become float64).
      cols.append(col.to_numpy(zero_copy_only=False))
    return cols

  def frame(self, chunk, names):
    return chunk.select(list(names)).to_pandas()

  def slice(self, chunk, lo, hi):
    return chunk.slice(lo, hi - lo)

  def take(self, chunk, rows):
    return chunk.take(rows)


class _RecordBatch(_Arrow):
  kind = 'pyarrow.RecordBatch'

  def num_rows(self, chunk) -> int:
    return chunk.num_rows

  def with_columns(self, chunk, outputs):
    import pyarrow as pa
    schema, arrays = chunk.schema, list(chunk.columns)
    for name, values in outputs:
      array = _arrow_column(values)
      schema = schema.append(pa.field(name, array.type))
      arrays.append(array)
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


class _Table(_Arrow):
  kind = 'pyarrow.Table'

  def num_rows(self, chunk) -> int:
    return chunk.num_rows

  def with_columns(self, chunk, outputs):
    import pyarrow as pa
    # The new columns are cut like the table's first column, so that
    # to_batches() keeps giving whole record batches.
    lengths = [len(c) for c in chunk.column(0).chunks] if chunk.num_columns else []
    for name, values in outputs:
      array = _arrow_column(values)
      parts, start = [], 0
      for n in lengths:
        parts.append(array.slice(start, n))
        start += n
      column = pa.chunked_array(parts or [array], type=array.type)
      chunk = chunk.append_column(pa.field(name, array.type), column)
    return chunk


class _DataFrame(Chunk):
  kind = 'pandas.DataFrame'

  def column_names(self, chunk) -> list:
    return list(chunk.columns)

  def _non_numeric(self, chunk, name) -> Optional[str]:
    dtype = chunk[name].dtype
    # numpy and nullable/Arrow-backed numbers; object columns may hold
    # numbers (a bad value then fails its own row).
    if getattr(dtype, 'kind', 'O') in 'biufc' or dtype == object:
      return None
    return f'of dtype {dtype}'

  def columns(self, chunk, names) -> list:
    cols = []
    for name in names:
      series = chunk[name]
      if isinstance(series.dtype, numpy.dtype) and series.dtype != object:
        cols.append(series.to_numpy())
      elif series.dtype == object:
        cols.append(numpy.asarray(series.to_numpy(), dtype=numpy.float64))
      else:  # nullable extension dtypes: NA becomes NaN
        cols.append(series.to_numpy(dtype=numpy.float64, na_value=numpy.nan))
    return cols

  def frame(self, chunk, names):
    return chunk[list(names)]

  def slice(self, chunk, lo, hi):
    return chunk.iloc[lo:hi]

  def take(self, chunk, rows):
    return chunk.iloc[rows]

  def with_columns(self, chunk, outputs):
    out = chunk.copy(deep=False)
    for name, values in outputs:
      if values.ndim == 2:
        import pandas as pd
        out[name] = pd.Series(
            pd.arrays.ArrowExtensionArray(_arrow_column(values)),
            index=out.index)
      else:
        out[name] = values
    return out


_RECORD_BATCH, _TABLE, _FRAME = _RecordBatch(), _Table(), _DataFrame()
_BY_TYPE: dict = {}


def chunk_ops(chunk) -> Chunk:
  """The operations for ``chunk``'s type, or TypeError."""
  ops = _BY_TYPE.get(type(chunk))
  if ops is not None:
    return ops
  module = type(chunk).__module__ or ''
  if module.startswith('pyarrow'):
    import pyarrow as pa
    if isinstance(chunk, pa.RecordBatch):
      ops = _RECORD_BATCH
    elif isinstance(chunk, pa.Table):
      ops = _TABLE
  pd = sys.modules.get('pandas')
  if ops is None and pd is not None and isinstance(chunk, pd.DataFrame):
    ops = _FRAME
  if ops is None:
    raise InvalidInputTypeError(
        'RunInferenceColumnar takes chunks of rows -- pyarrow.RecordBatch, '
        'pyarrow.Table or pandas.DataFrame elements (e.g. from '
        f'beam.io.ReadFromParquetBatched) -- but got {type(chunk).__name__}. '
        'For one example per element, use runinference.base.RunInference.')
  _BY_TYPE[type(chunk)] = ops
  return ops
