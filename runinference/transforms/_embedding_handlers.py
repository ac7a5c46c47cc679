"""Model handlers that run an ``EmbeddingsManager``'s model on dict/Row
columns, through ``runinference``'s RunInference (batching, model sharing,
length-aware batches, dead letters)."""
from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Iterable, Optional, TypeVar, Union, cast

import apache_beam as beam
import numpy as np
from ..exceptions import ConfigurationRuntimeError, InvalidInputTypeError

from runinference.base import ModelHandler
from runinference.exceptions import ColumnTypeError

InT = TypeVar('InT')
OutT = TypeVar('OutT')


@dataclass
class EmbeddingTypeAdapter(Generic[InT, OutT]):
  """How to get the texts out of a batch (``input_fn``) and put the
  embeddings back (``output_fn``)."""
  input_fn: Callable[[Sequence[InT]], list[str]]
  output_fn: Callable[[Sequence[InT], Sequence[Any]], list[OutT]]

  def __reduce__(self):
    return (self.__class__, (self.input_fn, self.output_fn))


def _as_dicts(batch):
  return [row._asdict() if hasattr(row, '_asdict') else row for row in batch]


def _dict_input_fn(columns: Sequence[str],
                   batch: Sequence[Union[dict[str, Any], beam.Row]]) -> list:
  """The values of ``columns``, row by row (row-major)."""
  batch = _as_dicts(batch)
  if not batch or not isinstance(batch[0], dict):
    raise InvalidInputTypeError(
        'Expected data to be dicts, got '
        f'{type(batch[0]) if batch else "an empty batch"} instead.')
  expected_keys = set(batch[0].keys())
  result = []
  for item in batch:
    keys = set(item.keys()) if isinstance(item, dict) else set()
    if keys != expected_keys:
      raise ConfigurationRuntimeError(
          'All dicts in batch must have the same keys. '
          f'extra keys: {keys - expected_keys}, '
          f'missing keys: {expected_keys - keys}')
    missing = set(columns) - keys
    if missing:
      raise ConfigurationRuntimeError(
          f'Data does not contain the following columns : {missing}.')
    result.extend(item[col] for col in columns)
  return result


def _dict_output_fn(columns: Sequence[str],
                    batch: Sequence[Union[dict[str, Any], beam.Row]],
                    embeddings: Sequence[Any]) -> list:
  """Copies of the rows with each column replaced by its embedding."""
  is_row = bool(batch) and hasattr(batch[0], '_asdict')
  result = []
  for i, item in enumerate(_as_dicts(batch)):
    item = dict(item)
    for j, col in enumerate(columns):
      item[col] = embeddings[i * len(columns) + j]
    result.append(beam.Row(**item) if is_row else item)
  return result


def _create_dict_adapter(
    columns: list[str]) -> EmbeddingTypeAdapter[dict[str, Any], dict[str, Any]]:
  return EmbeddingTypeAdapter(
      input_fn=cast(Callable, functools.partial(_dict_input_fn, columns)),
      output_fn=cast(Callable, functools.partial(_dict_output_fn, columns)))


#: Length buckets (characters) of text embeddings: each ~1.25x the last, so
#: a fixed-size batch (e.g. max_batch_size=32) pads little (1,000 ragged
#: sentences: ~5% fewer padded tokens than Beam's default 16..512 buckets).
TEXT_BUCKET_BOUNDARIES = tuple(sorted({round(8 * 1.25 ** k) for k in range(28)}))


def _text_length(columns: Sequence[str], row: Any) -> int:
  """Characters in a row's text columns: similar lengths batch together."""
  row = row._asdict() if hasattr(row, '_asdict') else row
  if not isinstance(row, dict):
    return 0
  return sum(len(v) for c in columns if isinstance(v := row.get(c), (str, bytes)))


class _EmbeddingHandler(ModelHandler):
  """Runs ``embeddings_manager``'s model on the manager's columns of each row
  (dicts or ``beam.Row``) and returns the rows with embeddings in place."""
  def __init__(self, embeddings_manager):
    self.embedding_config = embeddings_manager
    self._underlying = embeddings_manager.get_model_handler()
    self.columns = embeddings_manager.get_columns_to_apply()

  def load_model(self):
    return self._underlying.load_model()

  def _validate_column_data(self, batch):
    pass

  def _prepare(self, values: list) -> list:
    """The model inputs from the validated column values."""
    return values

  def _column_of(self, index: int) -> str:
    """Which column the ``index``-th value (row-major) came from."""
    cols = self.columns
    if not cols:
      return 'the embedded column'
    return f'column {cols[index % len(cols)]!r}'

  def run_inference(self, batch, model, inference_args=None):
    texts = self.embedding_config.type_adapter.input_fn(batch)
    self._validate_column_data(batch=texts)
    texts = self._prepare(texts)
    prediction = self._underlying.run_inference(texts, model, inference_args)
    if isinstance(prediction, np.ndarray):
      seq = prediction.tolist()
    elif isinstance(prediction, Iterable) and not isinstance(
        prediction, (str, bytes)):
      seq = list(prediction)
    else:
      seq = [prediction]
    return self.embedding_config.type_adapter.output_fn(batch, seq)

  def get_metrics_namespace(self) -> str:
    return (self._underlying.get_metrics_namespace() or
            'BeamML_EmbeddingHandler')

  def batch_elements_kwargs(self) -> Mapping[str, Any]:
    kwargs = dict(self._underlying.batch_elements_kwargs() or {})
    cfg = self.embedding_config
    if not kwargs:
      if cfg.max_batch_size:
        kwargs['max_batch_size'] = cfg.max_batch_size
      if cfg.min_batch_size:
        kwargs['min_batch_size'] = cfg.min_batch_size
    if getattr(cfg, 'length_aware_batching', False) and self.columns:
      if 'length_fn' not in kwargs:
        kwargs['length_fn'] = functools.partial(_text_length, self.columns)
        kwargs.setdefault('bucket_boundaries', TEXT_BUCKET_BOUNDARIES)
    return kwargs

  def share_model_across_processes(self) -> bool:
    return self._underlying.share_model_across_processes()

  def set_environment_vars(self):
    self._underlying.set_environment_vars()

  def __repr__(self):
    return self._underlying.__repr__()

  def validate_inference_args(self, _):
    pass


class _TextEmbeddingHandler(_EmbeddingHandler):
  """Embeds text columns; bytes are decoded as UTF-8, anything but str/bytes
  is a ``ColumnTypeError`` (a TypeError) naming the column."""
  def _validate_column_data(self, batch):
    for i, value in enumerate(batch):
      if not isinstance(value, (str, bytes)):
        raise ColumnTypeError(
            'Embeddings can only be generated on dict[str, str]. '
            f'Got dict[str, {type(value)}] instead: {self._column_of(i)} '
            f'holds {value!r:.80}.')

  def _prepare(self, values: list) -> list:
    if not any(isinstance(v, bytes) for v in values):
      return values
    out = []
    for i, value in enumerate(values):
      if isinstance(value, bytes):
        try:
          value = value.decode('utf-8')
        except UnicodeDecodeError as e:
          raise ColumnTypeError(
              f'Embeddings need text: {self._column_of(i)} holds bytes that '
              f'are not UTF-8 ({e}).') from e
      out.append(value)
    return out

  def get_metrics_namespace(self) -> str:
    return (self._underlying.get_metrics_namespace() or
            'BeamML_TextEmbeddingHandler')


class _ImageEmbeddingHandler(_EmbeddingHandler):
  """Embeds image columns; plain scalars/strings are a TypeError."""
  def _validate_column_data(self, batch):
    if isinstance(batch[0], (int, str, float, bool)):
      raise InvalidInputTypeError(
          'Embeddings can only be generated on dict[str, Image].'
          f'Got dict[str, {type(batch[0])}] instead.')

  def get_metrics_namespace(self) -> str:
    return (self._underlying.get_metrics_namespace() or
            'BeamML_ImageEmbeddingHandler')


class _MultiModalEmbeddingHandler(_EmbeddingHandler):
  """Embeds dataclass columns (image/video/text); scalars are a TypeError."""
  def _validate_column_data(self, batch):
    if isinstance(batch[0], (int, str, float, bool)):
      raise InvalidInputTypeError(
          'Embeddings can only be generated on '
          ' dict[str, dataclass] types. '
          f'Got dict[str, {type(batch[0])}] instead.')

  def get_metrics_namespace(self) -> str:
    return (self._underlying.get_metrics_namespace() or
            'BeamML_MultiModalEmbeddingHandler')
