"""The base of the column transforms (``TFTOperation``) and the input-type
registry; the transforms themselves are in ``_tft_numeric`` / ``_tft_text``
and public in ``tft``."""
from __future__ import annotations

import logging
from typing import Any, Optional, Union

import apache_beam as beam
import numpy as np

from . import _ops
from ._stats import Analyzer
from .base import BaseOperation

_LOGGER = logging.getLogger(__name__)
# Declared input type of each transform (the reference's registry).
_EXPECTED_TYPES: dict[str, Union[int, str, float]] = {}


def register_input_dtype(type):  # pylint: disable=redefined-builtin
  def wrapper(fn):
    _EXPECTED_TYPES[fn.__name__] = type
    return fn

  return wrapper


def _as_array(value: Any) -> np.ndarray:
  if isinstance(value, np.ndarray):
    return value
  if isinstance(value, (list, tuple)):
    return np.asarray(value)
  return np.asarray([value])


def analyzer_key(index: int, col_pos: int, kind: str) -> str:
  return f't{index}_c{col_pos}_{kind}'


class TFTOperation(BaseOperation[np.ndarray, np.ndarray]):
  """Base of the column transforms.

  A custom transform subclasses it and implements
  ``apply_transform(data, output_column_name) -> {column: array}``, where
  ``data`` is one row's column as a 1-D numpy array. Built-in transforms that
  need full-pass statistics declare analyzers instead.
  """
  # dtype of the transformed column: 'float32', 'int64' or 'bytes'.
  _output_kind: Optional[str] = None

  def __init__(self, columns: list[str]) -> None:
    super().__init__(columns)
    if not columns:
      raise RuntimeError(
          'Columns are not specified. Please specify the column for the '
          f' op {self.__class__.__name__}')

  def get_ptransform_for_processing(self, **kwargs) -> beam.PTransform:
    from .handlers import TFTProcessHandler
    artifact_location = kwargs.get('artifact_location')
    if not artifact_location:
      raise RuntimeError(
          'artifact_location is not specified. Please specify the '
          f'artifact_location for the op {self.__class__.__name__}')
    params = {}
    if kwargs.get('artifact_mode'):
      params['artifact_mode'] = kwargs['artifact_mode']
    return TFTProcessHandler(artifact_location=artifact_location, **params)

  # -- protocol used by TFTProcessHandler ------------------------------------
  def _analyzers(self, index: int) -> list[Analyzer]:
    """The statistics this transform needs (none by default)."""
    return []

  def _ready(self, stats: dict, index: int) -> Any:
    """Statistics -> whatever ``_apply`` needs, computed once per worker."""
    return None

  def _apply(self, value: Any, column: str, ready: Any,
             index: int) -> dict[str, np.ndarray]:
    return self.apply_transform(_as_array(value), column)

  def _apply_batch(self, values: list, column: str, ready: Any,
                   index: int) -> Optional[list]:
    """Many rows' values of ``column`` at once: one output dict per row, or
    None when only the per-row path applies. The per-row path gives the
    same values; this one saves numpy's per-call overhead on scalars."""
    vector = getattr(self, '_vector', None)
    if vector is None or getattr(self, 'elementwise', False):
      return None
    if not all(type(v) in (float, int) for v in values):
      return None
    out = vector(np.array(values, dtype=np.float32), column, ready)
    return [{column: out[i:i + 1]} for i in range(len(values))]

  def apply_transform(self, data, output_column_name):
    raise NotImplementedError(
        f'{type(self).__name__} needs full-pass statistics: use it inside '
        'MLTransform (or subclass TFTOperation and implement apply_transform '
        'for a custom per-row transform).')

  def _numeric(self, value, column):
    return _ops.to_numeric(value, column, type(self).__name__)

  def _strings(self, value, column):
    toks = _ops.to_strings(value, column, type(self).__name__)
    delimiter = getattr(self, 'split_string_by_delimiter', None)
    return _ops.split_strings(toks, delimiter) if delimiter else toks

  def _col_analyzers(self, index, kind, prepare, **params) -> list[Analyzer]:
    name = type(self).__name__
    return [
        Analyzer(analyzer_key(index, j, kind), kind, c, name,
                 (lambda v, c=c: prepare(v, c)), dict(params))
        for j, c in enumerate(self.columns)
    ]

  def _stat(self, stats: dict, index: int, column: str, kind: str):
    return stats[analyzer_key(index, self.columns.index(column), kind)]


