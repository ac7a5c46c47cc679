"""Numeric column transforms (scaling, buckets); public in ``tft``."""
from __future__ import annotations

from collections.abc import Iterable
from typing import Optional, Union

from . import _ops
from ._stats import MOMENTS, QUANTILES
from ._tft_base import TFTOperation, register_input_dtype


class _VectorOp(TFTOperation):
  """A numeric column transformed as one vector by ``_vector``."""

  def _vector(self, x, column, ready):
    raise NotImplementedError

  def _apply(self, value, column, ready, index):
    return {column: self._vector(self._numeric(value, column), column, ready)}


class _MomentsOp(_VectorOp):
  _output_kind = 'float32'
  elementwise = False

  def _analyzers(self, index):
    return self._col_analyzers(
        index, MOMENTS, self._numeric, elementwise=self.elementwise)

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
    super().__init__(columns)
    self.elementwise = elementwise
    self.name = name

  def _vector(self, x, column, ready):
    m = ready[column]
    return _ops.z_score(x, m['mean'], m['var'])


@register_input_dtype(float)
class ScaleTo01(_MomentsOp):
  """(x - min) / (max - min); a constant column goes through a sigmoid."""
  def __init__(
      self,
      columns: list[str],
      elementwise: bool = False,
      name: Optional[str] = None):
    super().__init__(columns)
    self.elementwise = elementwise
    self.name = name

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
    super().__init__(columns)
    self.min_value = min_value
    self.max_value = max_value
    self.name = name
    if self.max_value <= self.min_value:
      raise ValueError('max_value must be greater than min_value')

  def _vector(self, x, column, ready):
    m = ready[column]
    return _ops.min_max(x, m['min'], m['max'], float(self.min_value),
                        float(self.max_value))


@register_input_dtype(float)
class ScaleToGaussian(TFTOperation):
  """Not available: TensorFlow Transform's Tukey-HH estimate has no
  equivalent here yet."""
  def __init__(self, columns: list[str], elementwise: bool = False,
               name: Optional[str] = None):
    raise NotImplementedError(
        'ScaleToGaussian is not implemented in runinference.transforms (it '
        "needs TensorFlow Transform's Tukey-HH estimator). Use ScaleToZScore, "
        'or Bucketize + ApplyBucketsWithInterpolation for skewed columns.')


@register_input_dtype(float)
class ApplyBuckets(TFTOperation):
  """Index i with ``bucket_boundaries[i-1] <= x < bucket_boundaries[i]``."""
  _output_kind = 'int64'
  _assign = staticmethod(_ops.apply_buckets)

  def __init__(
      self,
      columns: list[str],
      bucket_boundaries: Iterable[Union[int, float]],
      name: Optional[str] = None):
    super().__init__(columns)
    boundaries = list(bucket_boundaries)
    if boundaries != sorted(boundaries):
      raise ValueError(
          f'bucket_boundaries must be sorted ascending, got {boundaries}.')
    self.bucket_boundaries = [boundaries]
    self.name = name

  def apply_transform(self, data, output_column_name):
    return {
        output_column_name: self._assign(
            self._numeric(data, output_column_name), self.bucket_boundaries[0])
    }


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
      raise ValueError(f'num_buckets must be a positive int, got {num_buckets!r}.')
    if elementwise:
      raise NotImplementedError(
          'Bucketize(elementwise=True) is not supported; bucketize each '
          'position as its own column instead.')
    self.num_buckets = num_buckets
    self.epsilon = epsilon
    self.elementwise = elementwise
    self.name = name

  def _analyzers(self, index):
    return self._col_analyzers(
        index, QUANTILES, self._numeric, num_buckets=self.num_buckets)

  def _ready(self, stats, index):
    return {c: self._stat(stats, index, c, QUANTILES) for c in self.columns}

  def _vector(self, x, column, ready):
    return _ops.apply_buckets(x, ready[column])


