"""Numeric column transforms (scaling, buckets); public in ``tft``.

Non-finite values: the transforms that compute statistics (ScaleToZScore,
ScaleTo01, ScaleByMinMax, Bucketize, ScaleToGaussian) refuse rows holding inf
or NaN (they go to the dead-letter output, or fail the pipeline without
exception handling), so statistics never see them. ApplyBuckets and
ApplyBucketsWithInterpolation use fixed boundaries and keep TensorFlow
Transform's rules: -inf/inf go to the first/last bucket, NaN to the last
(interpolation: NaN gives 0.5).
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Optional, Union

import numpy as np

from . import _ops
from ._columns import NUMERIC, Column, Reader
from ._errors import ColumnTypeError
from ._stats import MOMENTS, QUANTILES, TUKEY, rows_matrix
from ._tft_base import TFTOperation, register_input_dtype
from ..exceptions import ConfigurationError, UnsupportedOptionError

_FINITE = Reader(NUMERIC, finite=True)


class _VectorOp(TFTOperation):
  """A numeric column transformed as one vector by ``_vector``."""
  _reader = _FINITE
  elementwise = False

  def _vector(self, x, column, ready):
    raise NotImplementedError

  def _row_errors(self, col, column, ready):
    """With ``elementwise``, rows whose length differs from the statistics'
    (computed over the length most rows have; ``ready`` is None before
    statistics exist, when nothing is refused yet)."""
    if not self.elementwise or not len(col) or not ready:
      return {}
    lengths = col.lengths()
    want = _width(ready, column)
    if want is None or (lengths == want).all():
      return {}
    return {
        int(i): ColumnTypeError(
            f'{type(self).__name__}(elementwise=True) on column {column!r}: '
            f'this row has {lengths[i]} values, the statistics have {want}. '
            'Every row must have the same length.')
        for i in np.flatnonzero(lengths != want)
    }

  def _apply_column(self, col, column, ready, index):
    if self.elementwise:
      x = rows_matrix(col, type(self).__name__).astype(np.float32)
      return {column: Column(self._vector(x, column, ready).reshape(-1),
                             col.offsets)}
    return {column: col.with_values(self._vector(col.values, column, ready))}

  def apply_transform(self, data, output_column_name):
    if self._analyzers(0):
      return super().apply_transform(data, output_column_name)
    return {output_column_name: self._vector(
        np.asarray(data, dtype=np.float32).reshape(-1), output_column_name, None)}


def _width(ready, column) -> Optional[int]:
  """The row length elementwise statistics were computed for."""
  stat = ready[column] if ready else None
  if isinstance(stat, dict):
    center = stat.get('mean', stat.get('location'))
    return len(center) if isinstance(center, list) else None
  return None


class _MomentsOp(_VectorOp):
  _output_kind = 'float32'

  def __init__(
      self,
      columns: list[str],
      elementwise: bool = False,
      name: Optional[str] = None):
    super().__init__(columns)
    self.elementwise = elementwise
    self.name = name

  def _analyzers(self, index):
    return self._col_analyzers(index, MOMENTS, elementwise=self.elementwise)

  def _ready(self, stats, index):
    return {c: self._stat(stats, index, c, MOMENTS) for c in self.columns}


@register_input_dtype(float)
class ScaleToZScore(_MomentsOp):
  """(x - mean) / std over the whole column (population variance); a constant
  column is only centred."""
  def __init__(
      self,
      columns: list[str],
      *,
      elementwise: bool = False,
      name: Optional[str] = None):
    super().__init__(columns, elementwise, name)

  def _vector(self, x, column, ready):
    m = ready[column]
    return _ops.z_score(x, m['mean'], m['var'])


@register_input_dtype(float)
class ScaleTo01(_MomentsOp):
  """(x - min) / (max - min); a constant column goes through a sigmoid."""

  def _vector(self, x, column, ready):
    m = ready[column]
    return _ops.min_max(x, m['min'], m['max'], 0.0, 1.0)


@register_input_dtype(float)
class ScaleByMinMax(_MomentsOp):
  """Scales the column linearly to [min_value, max_value]."""
  def __init__(
      self,
      columns: list[str],
      min_value: float = 0.0,
      max_value: float = 1.0,
      name: Optional[str] = None):
    super().__init__(columns, name=name)
    self.min_value = min_value
    self.max_value = max_value
    if self.max_value <= self.min_value:
      raise ConfigurationError('max_value must be greater than min_value')

  def _vector(self, x, column, ready):
    m = ready[column]
    return _ops.min_max(x, m['min'], m['max'], float(self.min_value),
                        float(self.max_value))


@register_input_dtype(float)
class ScaleToGaussian(_VectorOp):
  """Maps the column to a near-Gaussian distribution with the inverse Tukey
  HH transform, its parameters estimated over the whole column (as
  TensorFlow Transform's ``scale_to_gaussian``)."""
  _output_kind = 'float32'

  def __init__(self, columns: list[str], elementwise: bool = False,
               name: Optional[str] = None):
    super().__init__(columns)
    self.elementwise = elementwise
    self.name = name

  def _analyzers(self, index):
    return self._col_analyzers(index, TUKEY, elementwise=self.elementwise)

  def _ready(self, stats, index):
    return {c: self._stat(stats, index, c, TUKEY) for c in self.columns}

  def _vector(self, x, column, ready):
    from ._gaussian import gaussianize
    return gaussianize(x, ready[column])


@register_input_dtype(float)
class ApplyBuckets(_VectorOp):
  """Index i with ``bucket_boundaries[i-1] <= x < bucket_boundaries[i]``."""
  _output_kind = 'int64'
  _reader = Reader(NUMERIC)
  _assign = staticmethod(_ops.apply_buckets)

  def __init__(
      self,
      columns: list[str],
      bucket_boundaries: Iterable[Union[int, float]],
      name: Optional[str] = None):
    super().__init__(columns)
    boundaries = list(bucket_boundaries)
    if boundaries != sorted(boundaries):
      raise ConfigurationError(
          f'bucket_boundaries must be sorted ascending, got {boundaries}.')
    self.bucket_boundaries = [boundaries]
    self.name = name

  def _vector(self, x, column, ready):
    return self._assign(x, self.bucket_boundaries[0])


@register_input_dtype(float)
class ApplyBucketsWithInterpolation(ApplyBuckets):
  """Position of x between the given boundaries, normalised to [0, 1]."""
  _output_kind = 'float32'
  _assign = staticmethod(_ops.buckets_with_interpolation)


@register_input_dtype(float)
class Bucketize(_VectorOp):
  """Buckets of equal population: boundaries are the column's quantiles."""
  _output_kind = 'int64'

  def __init__(
      self,
      columns: list[str],
      num_buckets: int,
      *,
      epsilon: Optional[float] = None,
      elementwise: bool = False,
      name: Optional[str] = None):
    super().__init__(columns)
    if not isinstance(num_buckets, int) or num_buckets < 1:
      raise ConfigurationError(f'num_buckets must be a positive int, got {num_buckets!r}.')
    if elementwise:
      raise UnsupportedOptionError(
          'Bucketize(elementwise=True) is not supported; bucketize each '
          'position as its own column instead.')
    self.num_buckets = num_buckets
    self.epsilon = epsilon
    self.elementwise = elementwise
    self.name = name

  def _analyzers(self, index):
    return self._col_analyzers(index, QUANTILES, num_buckets=self.num_buckets)

  def _ready(self, stats, index):
    return {c: self._stat(stats, index, c, QUANTILES) for c in self.columns}

  def _vector(self, x, column, ready):
    return _ops.apply_buckets(x, ready[column])
