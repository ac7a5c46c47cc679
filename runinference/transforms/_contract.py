"""The types every part of ``runinference.transforms`` shares: what a step
(``MLTransformProvider``), a column transform (``BaseOperation``) and the
handler that applies them (``ProcessHandler``) are, the artifact modes, and
the input types registered for column transforms. A leaf: it imports no
other module of the package above the artifact registry and spec encoder,
so planning, applying and the operations all depend on it, never on
``base``."""
from __future__ import annotations

import abc
from typing import Any, Generic, Optional, TypeVar, Union

import apache_beam as beam
from apache_beam.metrics.metric import Metrics

from . import _registry, _specs
from ._embedding_handlers import EmbeddingTypeAdapter, _create_dict_adapter
from ..exceptions import ConfigurationError, ConfigurationTypeError

__all__ = [
    'ArtifactMode', 'MLTransformProvider', 'BaseOperation', 'ProcessHandler',
    'EmbeddingsManager', 'register_input_dtype'
]

OperationInputT = TypeVar('OperationInputT')
OperationOutputT = TypeVar('OperationOutputT')

# The namespace of MLTransform's counters: MLTransform's public name, as the
# reference counts under its own MLTransform class.
METRICS_NAMESPACE = 'runinference.transforms.base.MLTransform'

# Column transform class name -> the element type its columns hold.
_EXPECTED_TYPES: dict[str, Union[int, str, float]] = {}


def register_input_dtype(type):  # pylint: disable=redefined-builtin
  """Declares the input type of a column transform class (a decorator)."""
  def wrapper(fn):
    _EXPECTED_TYPES[fn.__name__] = type
    return fn

  return wrapper


class ArtifactMode(object):
  PRODUCE = 'produce'
  CONSUME = 'consume'


class MLTransformProvider:
  """A data-processing step usable in ``MLTransform``: subclasses implement
  ``get_ptransform_for_processing``. The constructor arguments are recorded
  so that write mode can save the step as JSON and read mode rebuild it
  (every subclass is registered as it is defined, so artifacts may name it)."""
  def __init_subclass__(cls, **kwargs):
    super().__init_subclass__(**kwargs)
    _registry.auto_register(cls)

  def __new__(cls, *args, **kwargs):
    obj = super().__new__(cls)
    obj._init_args = (args, dict(kwargs))
    return obj

  @abc.abstractmethod
  def get_ptransform_for_processing(self, **kwargs) -> beam.PTransform:
    """Returns a PTransform that processes the data."""

  def get_counter(self):
    return Metrics.counter(METRICS_NAMESPACE,
                           f'BeamML_{self.__class__.__name__}')

  def to_json(self) -> dict:
    """This step as ``{class, args, kwargs}`` (what read mode rebuilds)."""
    return _specs.encode_object(self, getattr(self, '_init_args', ((), {})))


class BaseOperation(Generic[OperationInputT, OperationOutputT],
                    MLTransformProvider,
                    abc.ABC):
  def __init__(self, columns: list[str]) -> None:
    """Base of the column transforms; ``columns`` are the columns it applies to."""
    self.columns = columns

  @abc.abstractmethod
  def apply_transform(self, data: OperationInputT,
                      output_column_name: str) -> dict[str, OperationOutputT]:
    """Transforms one column's data; returns ``{output column: data}``."""

  def __call__(self, data: OperationInputT,
               output_column_name: str) -> dict[str, OperationOutputT]:
    return self.apply_transform(data, output_column_name)


class ProcessHandler(beam.PTransform, abc.ABC):
  """Only for internal use. No backwards compatibility guarantees."""
  @abc.abstractmethod
  def append_transform(self, transform: BaseOperation):
    """Appends a transform to the handler."""


class EmbeddingsManager(MLTransformProvider):
  """Base of the embedding steps (``SentenceTransformerEmbeddings`` ...):
  names the columns to embed (or a ``type_adapter``) and the batching."""
  # Batch rows of similar text length together (set by text models).
  length_aware_batching = False

  def __init__(
      self,
      *,
      columns: Optional[list[str]] = None,
      type_adapter: Optional[EmbeddingTypeAdapter] = None,
      load_model_args: Optional[dict[str, Any]] = None,
      min_batch_size: Optional[int] = None,
      max_batch_size: Optional[int] = None,
      large_model: bool = False,
      **kwargs):
    self.load_model_args = load_model_args or {}
    self.min_batch_size = min_batch_size
    self.max_batch_size = max_batch_size
    self.large_model = large_model
    self.columns = columns
    if columns is not None:
      self.type_adapter = _create_dict_adapter(columns)
    elif type_adapter is not None:
      self.type_adapter = type_adapter
    else:
      raise ConfigurationError('Either columns or type_adapter must be specified')
    self.inference_args = kwargs.pop('inference_args', {})
    if kwargs:
      raise ConfigurationTypeError(
          f'{type(self).__name__} got unexpected argument(s) {sorted(kwargs)}; '
          'known: columns, type_adapter, load_model_args, min_batch_size, '
          'max_batch_size, large_model, inference_args.')

  @abc.abstractmethod
  def get_model_handler(self):
    """Returns the framework's model handler."""

  def get_columns_to_apply(self):
    return self.columns
