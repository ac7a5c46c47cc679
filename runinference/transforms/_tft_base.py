"""The base of the column transforms (``TFTOperation``) and the input-type
registry; the transforms themselves are in ``_tft_numeric`` / ``_tft_text``
and public in ``tft``."""
from __future__ import annotations

import logging
from typing import Any, Optional

import apache_beam as beam
import numpy as np

from ._columns import ANY, Column, Reader, gather
from ._stats import Analyzer
from ._contract import _EXPECTED_TYPES, BaseOperation, register_input_dtype
from ..exceptions import ConfigurationRuntimeError

_LOGGER = logging.getLogger(__name__)
# _EXPECTED_TYPES and register_input_dtype live in _contract (re-exported
# here and by tft, as in the reference).
_KEEP = (_EXPECTED_TYPES, register_input_dtype)


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
      raise ConfigurationRuntimeError(
          'Columns are not specified. Please specify the column for the '
          f' op {self.__class__.__name__}')

  def get_ptransform_for_processing(self, **kwargs) -> beam.PTransform:
    from .handlers import TFTProcessHandler
    artifact_location = kwargs.get('artifact_location')
    if not artifact_location:
      raise ConfigurationRuntimeError(
          'artifact_location is not specified. Please specify the '
          f'artifact_location for the op {self.__class__.__name__}')
    params = {}
    if kwargs.get('artifact_mode'):
      params['artifact_mode'] = kwargs['artifact_mode']
    return TFTProcessHandler(artifact_location=artifact_location, **params)

  # -- protocol used by the engine (``_engine``) ------------------------------
  # Each transform reads its columns with one ``Reader`` and transforms a
  # whole column of a block at once (``_apply_column``). A custom subclass
  # that only implements ``apply_transform`` is called row by row.
  _reader = Reader(ANY)

  def _analyzers(self, index: int) -> list[Analyzer]:
    """The statistics this transform needs (none by default)."""
    return []

  def _ready(self, stats: dict, index: int) -> Any:
    """Statistics -> whatever ``_apply_column`` needs, once per worker."""
    return None

  def _outputs(self, column: str) -> list[str]:
    """The columns transforming ``column`` writes."""
    return [column]

  def _output_kinds(self, column: str, kind: Optional[str]) -> dict:
    """{written column: its kind} for ``column`` of kind ``kind``."""
    return {c: self._output_kind or kind for c in self._outputs(column)}

  def _vocabulary_made(self) -> list[str]:
    """Columns whose vocabulary this transform computes."""
    return []

  def _vocabulary_needed(self) -> list[str]:
    """Columns that need a vocabulary computed by an earlier transform."""
    return []

  def _row_errors(self, col: Column, column: str, ready: Any) -> dict:
    """Rows of ``col`` this transform cannot apply to: {row: error}."""
    return {}

  def _apply_column(self, col: Column, column: str, ready: Any,
                    index: int) -> dict[str, Column]:
    """Transforms the column of many rows; by default row by row through
    ``apply_transform``."""
    outs = [self._apply_cell(cell, column, ready) for cell in col.cells()]
    names = outs[0].keys() if outs else self._outputs(column)
    return {name: gather([o[name] for o in outs]) for name in names}

  def _apply_cell(self, cell, column: str, ready: Any) -> dict:
    return self.apply_transform(_as_array(cell), column)

  def apply_transform(self, data, output_column_name):
    raise NotImplementedError(
        f'{type(self).__name__} needs full-pass statistics: use it inside '
        'MLTransform (or subclass TFTOperation and implement apply_transform '
        'for a custom per-row transform).')

  def _col_analyzers(self, index, kind, **params) -> list[Analyzer]:
    name = type(self).__name__
    return [
        Analyzer(analyzer_key(index, j, kind), kind, c, name, self._reader,
                 dict(params))
        for j, c in enumerate(self.columns)
    ]

  def _stat(self, stats: dict, index: int, column: str, kind: str):
    return stats[analyzer_key(index, self.columns.index(column), kind)]


