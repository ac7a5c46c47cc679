"""MLflow's scoring protocol: ``POST /invocations`` (``mlflow models serve``,
MLflow-built images, Databricks serving endpoints)."""
from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

from ..exceptions import InvalidInputError
from .._core.naming import publish
from .http_handler import (HttpModelHandler, check_choice, expect_list,
                           to_json)
from .remote_errors import AnswerFormatError

__all__ = ['MLflowModelHandler']

_FORMATS = ('dataframe_split', 'instances', 'inputs')
# How MLflow's scoring server says that the data sent could not be scored.
_ROW_MESSAGES = ('Failed to', 'evaluating the model', 'Incompatible input',
                 'could not convert', 'Invalid input')


class MLflowModelHandler(HttpModelHandler):
  """Scores rows on an MLflow model server.

  Rows are dicts (column → value) or sequences/arrays of feature values.
  ``payload_format`` picks the request body: ``'dataframe_split'`` (columns +
  data, for pyfunc models with a DataFrame signature), ``'instances'`` or
  ``'inputs'`` (tensor input). Each prediction is the JSON value the server
  answers for that row.
  """
  def __init__(
      self,
      base_url: str,
      *,
      payload_format: str = 'dataframe_split',
      columns: Optional[Sequence[str]] = None,
      params: Optional[Mapping[str, Any]] = None,
      **kwargs):
    """
    Args:
      base_url: the server, e.g. ``http://127.0.0.1:5000``.
      payload_format: ``'dataframe_split'``, ``'instances'`` or ``'inputs'``.
      columns: column names for rows given as sequences (dict rows carry
        their own); with ``dataframe_split`` only.
      params: MLflow inference ``params`` sent with every request.
      **kwargs: ``HttpModelHandler`` options.
    """
    check_choice('payload_format', payload_format, _FORMATS)
    super().__init__(base_url, **kwargs)
    self.payload_format = payload_format
    self.columns = list(columns) if columns is not None else None
    self.params = dict(params or {})

  def path(self, inference_args: dict) -> str:
    return '/invocations'

  def encode(self, batch, inference_args):
    if self.payload_format == 'dataframe_split':
      body: dict = {'dataframe_split': self._dataframe_split(batch)}
    else:
      body = {self.payload_format: [to_json(row) for row in batch]}
    params = {**self.params, **inference_args}
    if params:
      body['params'] = to_json(params)
    return body

  def _dataframe_split(self, batch) -> dict:
    first = batch[0]
    if isinstance(first, Mapping):
      columns = self.columns or [str(c) for c in first]
      try:
        data = [[to_json(row[c]) for c in columns] for row in batch]
      except (KeyError, TypeError) as e:
        raise InvalidInputError(
            f'MLflowModelHandler: every dict row needs the columns {columns}; '
            f'a row lacks {e}.') from e
      return {'columns': columns, 'data': data}
    data = [to_json(row) for row in batch]
    if any(not isinstance(row, list) for row in data):
      raise InvalidInputError(
          'MLflowModelHandler with dataframe_split takes rows that are dicts '
          'or sequences of feature values; got '
          f'{type(batch[0]).__name__}. Use payload_format="inputs" for '
          'tensors.')
    split: dict = {'data': data}
    if self.columns is not None:
      split['columns'] = self.columns
    return split

  def row_error(self, status, answer):
    """MLflow's scoring server answers 400 BAD_REQUEST (or
    INVALID_PARAMETER_VALUE) for data it fails to convert, check against
    the signature or predict on: about the rows. Not for a payload of the
    wrong format (``Received dictionary with input fields ...``)."""
    if status != 400 or not isinstance(answer, Mapping):
      return False
    message = str(answer.get('message', ''))
    return (answer.get('error_code') in ('BAD_REQUEST',
                                         'INVALID_PARAMETER_VALUE')
            and any(w in message for w in _ROW_MESSAGES))

  def decode(self, answer, batch):
    if isinstance(answer, Mapping):
      answer = answer['predictions']
    if isinstance(answer, Mapping):  # one list per output column
      columns = {n: expect_list(v, f'predictions[{n!r}]')
                 for n, v in answer.items()}
      for n, v in columns.items():
        if len(v) != len(batch):
          raise AnswerFormatError(
              f'expected {len(batch)} values (one per row) in '
              f'predictions[{n!r}], got {len(v)}')
      return [{n: v[i] for n, v in columns.items()}
              for i in range(len(batch))]
    return expect_list(answer, 'the predictions')


publish(globals(), 'runinference.remote')
