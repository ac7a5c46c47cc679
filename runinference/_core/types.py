"""Result and metadata types shared by every module (public via ``base``)."""
from __future__ import annotations

import dataclasses
from typing import Any, Generic, NamedTuple, Optional, Sequence, TypeVar

import apache_beam as beam

KeyT = TypeVar('KeyT')


class PredictionResult(NamedTuple):
  """An input example with the model's inference for it."""
  example: Any
  inference: Any
  model_id: Optional[str] = None


PredictionResult.example.__doc__ = 'The input example.'
PredictionResult.inference.__doc__ = 'The model output for the example.'
PredictionResult.model_id.__doc__ = 'Id (path) of the model that produced it.'


class ModelMetadata(NamedTuple):
  """Names a model version: ``model_id`` is what loads it (a path or URI),
  ``model_name`` prefixes the metrics it produces."""
  model_id: str
  model_name: str


class RunInferenceDLQ(NamedTuple):
  """Dead-letter outputs of ``RunInference(...).with_exception_handling()``.

  Every failed record is ``(record, (exception_type, repr, traceback_lines))``;
  ``failed_inferences`` records are single-element batches ``([x], error)``
  because failing batches are bisected down to the rows that fail."""
  failed_inferences: beam.PCollection
  failed_preprocessing: Sequence[beam.PCollection]
  failed_postprocessing: Sequence[beam.PCollection]


@dataclasses.dataclass(frozen=True)
class KeyModelPathMapping(Generic[KeyT]):
  """Points ``keys`` of a multi-model KeyedModelHandler at a new model path."""
  keys: list
  update_path: str
  model_id: str = ''
