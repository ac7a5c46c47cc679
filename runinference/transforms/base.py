"""``MLTransform`` and its building blocks, import-compatible with
``apache_beam.ml.transforms.base``.

Write mode computes full-pass statistics and writes readable artifacts (JSON,
plain-text vocabularies) under ``write_artifact_location``; read mode applies
the same transforms with the saved statistics to new data.
"""
from __future__ import annotations

import logging
import os
import uuid
from typing import Any, Generic, Optional, TypeVar

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics.metric import Metrics
from apache_beam.options.pipeline_options import PipelineOptions

from runinference.base import RunInferenceDLQ

from . import _artifacts
from ._embedding_handlers import (EmbeddingTypeAdapter,
                                  _dict_input_fn, _dict_output_fn,
                                  _EmbeddingHandler, _ImageEmbeddingHandler,
                                  _MultiModalEmbeddingHandler,
                                  _TextEmbeddingHandler)
from ._contract import (METRICS_NAMESPACE, ArtifactMode, BaseOperation, EmbeddingsManager,
                        MLTransformProvider, ProcessHandler)
from ._errors import ArtifactExistsError, ArtifactFormatError
from .._core.naming import relabel
from ._registry import register_artifact_class
from ..exceptions import (ConfigurationError, ConfigurationRuntimeError,
                          ConfigurationTypeError, MLTransformError)

_LOGGER = logging.getLogger(__name__)
_ATTRIBUTE_FILE_NAME = 'attributes.json'

__all__ = [
    'MLTransform', 'ProcessHandler', 'MLTransformProvider', 'BaseOperation',
    'EmbeddingsManager', 'ArtifactMode', 'EmbeddingTypeAdapter'
]

ExampleT = TypeVar('ExampleT')
MLTransformOutputT = TypeVar('MLTransformOutputT')

# Kept importable from here, as in the reference.
_KEEP = (_dict_input_fn, _dict_output_fn, _EmbeddingHandler,
         _ImageEmbeddingHandler, _MultiModalEmbeddingHandler,
         register_artifact_class)


def _map_errors_to_beam_row(element, cls_name=None):
  fields = {
      'element': element[0],
      'msg': str(element[1][1]),
      'stack': str(element[1][2]),
  }
  if cls_name is not None:
    fields['transform_name'] = cls_name
  return beam.Row(**fields)


class MLTransform(beam.PTransform, Generic[ExampleT, MLTransformOutputT]):
  """Applies data-processing transforms (``tft`` column transforms,
  embeddings) to a PCollection of dicts or ``beam.Row``.

  Exactly one of ``write_artifact_location`` (compute statistics, write
  artifacts, apply) and ``read_artifact_location`` (apply saved artifacts;
  no ``transforms`` then) must be given.
  """
  def __init__(
      self,
      *,
      write_artifact_location: Optional[str] = None,
      read_artifact_location: Optional[str] = None,
      transforms: Optional[list[MLTransformProvider]] = None):
    super().__init__()
    if read_artifact_location and write_artifact_location:
      raise ConfigurationError(
          'Only one of read_artifact_location or write_artifact_location can '
          'be specified to initialize MLTransform')
    if not read_artifact_location and not write_artifact_location:
      raise ConfigurationError(
          'Either a read_artifact_location or write_artifact_location must be '
          'specified to initialize MLTransform')
    if read_artifact_location:
      if transforms:
        raise ConfigurationError(
            'Transforms should not be passed in read mode. In read mode, '
            'the transforms are read from the artifact location.')
      self._parent_artifact_location = read_artifact_location
      self._artifact_mode = ArtifactMode.CONSUME
    else:
      self._parent_artifact_location = write_artifact_location
      self._artifact_mode = ArtifactMode.PRODUCE
    self.transforms = list(transforms or [])
    self._counter = Metrics.counter(
        MLTransform, f'BeamML_{self.__class__.__name__}')
    self._with_exception_handling = False
    self._exception_handling_args: dict[str, Any] = {}

  def expand(self, pcoll):
    for t in self.transforms:
      self._validate_transform(t)
    if self._artifact_mode == ArtifactMode.PRODUCE:
      ptransforms = _MLTransformToPTransformMapper(
          transforms=self.transforms,
          artifact_location=self._parent_artifact_location,
          artifact_mode=self._artifact_mode,
          pipeline_options=pcoll.pipeline.options,
      ).create_and_save_ptransform_list()
    else:
      ptransforms = _MLTransformToPTransformMapper.load_transforms_from_artifact_location(
          self._parent_artifact_location)
    errors = []
    for i, ptransform in enumerate(ptransforms):
      label = f'Step{i}_{type(ptransform).__name__}'
      if self._with_exception_handling and hasattr(
          ptransform, 'with_exception_handling'):
        pcoll, bad = pcoll | label >> ptransform.with_exception_handling(
            **self._exception_handling_args)
        errors.append(_dead_letters(bad, ptransform, label))
      else:
        pcoll = pcoll | label >> ptransform
    _ = pcoll.pipeline | 'MLTransformMetricsUsage' >> MLTransformMetricsUsage(self)
    if self._with_exception_handling:
      bad = errors | 'FlattenDeadLetters' >> beam.Flatten(pipeline=pcoll.pipeline)
      return pcoll, bad
    return pcoll

  def with_transform(self, transform: MLTransformProvider):
    """Appends a transform; returns this MLTransform."""
    self._validate_transform(transform)
    self.transforms.append(transform)
    return self

  def _validate_transform(self, transform):
    if not isinstance(transform, MLTransformProvider):
      raise ConfigurationTypeError(
          'transform must be a subclass of BaseOperation. '
          'Got: %s instead.' % type(transform))

  def with_exception_handling(
      self, *, exc_class=Exception, use_subprocess=False, threshold=1):
    """Rows that fail a transform go to a second output of ``beam.Row(element,
    msg, stack, transform_name)`` instead of failing the pipeline; the
    transform then returns ``(good, bad)``."""
    self._with_exception_handling = True
    self._exception_handling_args = {
        'exc_class': exc_class,
        'use_subprocess': use_subprocess,
        'threshold': threshold
    }
    return self


def _dead_letters(bad, ptransform, label):
  if isinstance(bad, RunInferenceDLQ):
    name = ptransform.annotations()['model_handler']
    return bad.failed_inferences | f'{label}_Errors' >> beam.Map(
        _map_errors_to_beam_row, name)
  if not isinstance(bad, beam.PCollection):
    raise MLTransformError(f'Unexpected type for bad_results: {type(bad)}')
  return bad


class MLTransformMetricsUsage(beam.PTransform):
  """Counts one use of MLTransform and of each transform it runs."""
  def __init__(self, ml_transform: MLTransform):
    super().__init__()
    self._ml_transform = ml_transform

  def expand(self, pipeline):
    names = [type(t).__name__ for t in self._ml_transform.transforms]

    def increment(_):
      Metrics.counter(METRICS_NAMESPACE, 'BeamML_MLTransform').inc()
      for name in names:
        Metrics.counter(METRICS_NAMESPACE, f'BeamML_{name}').inc()

    return pipeline | beam.Impulse() | beam.Map(increment)


class _JsonTransformAttributeManager:
  """Saves the steps of an MLTransform as readable JSON (``attributes.json``)
  and rebuilds them in read mode."""
  @staticmethod
  def save_attributes(ptransform_list, artifact_location, steps=None, **kwargs):
    """``steps``: the JSON of each PTransform when the caller knows it (the
    mapper does); otherwise each PTransform must describe itself."""
    path = os.path.join(artifact_location, _ATTRIBUTE_FILE_NAME)
    if FileSystems.exists(path):
      raise ArtifactExistsError(
          f'The artifact location {artifact_location} already exists and '
          f'contains {_ATTRIBUTE_FILE_NAME}. Please specify a different '
          'location (each MLTransform in write mode needs its own).')
    if steps is None:
      steps = [_step_json(p, artifact_location) for p in ptransform_list]
    _artifacts.write_sealed_json(path, {'format': _artifacts.FORMAT, 'steps': steps})

  @staticmethod
  def load_attributes(artifact_location):
    """Checks all the artifacts (manifests, registered classes, statistics)
    before any step is built, then builds the steps."""
    _import_builtin_steps()
    steps = _artifacts.read_attributes(
        os.path.join(artifact_location, _ATTRIBUTE_FILE_NAME))
    return [_load_step(s, artifact_location) for s in steps]


def _import_builtin_steps() -> None:
  """Defines (hence registers) our own steps before artifacts are read: fixed
  imports, never a name taken from an artifact."""
  from . import tft  # noqa: F401
  from .embeddings import huggingface  # noqa: F401


def _step_json(ptransform, parent: str, provider=None) -> dict:
  if hasattr(ptransform, 'to_json'):  # TFTProcessHandler
    return ptransform.to_json(parent)
  if provider is not None:
    return {'kind': 'provider', 'transform': provider.to_json()}
  raise ArtifactFormatError(
      f'{type(ptransform).__name__} cannot be saved in MLTransform artifacts: '
      'only transforms built from MLTransformProvider steps can.')


def _load_step(step: dict, parent: str):
  if step['kind'] == 'tft':
    from .handlers import TFTProcessHandler
    return TFTProcessHandler(
        artifact_location=os.path.join(parent, step['dir']),
        artifact_mode=ArtifactMode.CONSUME)
  provider = _artifacts.decode_object(
      step['transform'], os.path.join(parent, _ATTRIBUTE_FILE_NAME))
  return provider.get_ptransform_for_processing(
      artifact_location=os.path.join(parent, uuid.uuid4().hex[:6]),
      artifact_mode=ArtifactMode.CONSUME)


_transform_attribute_manager = _JsonTransformAttributeManager
# The reference's name for it (its artifacts are jsonpickle; ours plain JSON).
_JsonPickleTransformAttributeManager = _JsonTransformAttributeManager


class _MLTransformToPTransformMapper:
  """Turns MLTransform's steps into PTransforms (consecutive column
  transforms share one TFTProcessHandler) and saves/loads them."""
  def __init__(
      self,
      transforms: list[MLTransformProvider],
      artifact_location: str,
      artifact_mode: str = ArtifactMode.PRODUCE,
      pipeline_options: Optional[PipelineOptions] = None,
  ):
    self.transforms = transforms
    self._parent_artifact_location = artifact_location
    self.artifact_mode = artifact_mode
    self.pipeline_options = pipeline_options
    self._providers: dict[int, MLTransformProvider] = {}

  def create_and_save_ptransform_list(self):
    ptransform_list = self.create_ptransform_list()
    self.save_transforms_in_artifact_location(ptransform_list)
    return ptransform_list

  def create_ptransform_list(self):
    previous_type = None
    ptransform_list = []
    self._providers = {}
    for transform in self.transforms:
      if not isinstance(transform, MLTransformProvider):
        raise ConfigurationRuntimeError(
            'Transforms must be instances of MLTransformProvider and '
            'implement get_ptransform_for_processing() method.')
      current = transform.get_ptransform_for_processing(
          artifact_location=os.path.join(
              self._parent_artifact_location, uuid.uuid4().hex[:6]),
          artifact_mode=self.artifact_mode)
      appendable = hasattr(current, 'append_transform')
      if type(current) != previous_type or not appendable:  # pylint: disable=unidiomatic-typecheck
        ptransform_list.append(current)
        previous_type = type(current)
        self._providers[id(current)] = transform
      if appendable:
        ptransform_list[-1].append_transform(transform)
    return ptransform_list

  def save_transforms_in_artifact_location(self, ptransform_list):
    providers = self._providers
    steps = [
        _step_json(p, self._parent_artifact_location, providers.get(id(p)))
        for p in ptransform_list
    ]
    _transform_attribute_manager.save_attributes(
        ptransform_list=ptransform_list,
        artifact_location=self._parent_artifact_location,
        steps=steps,
        options=self.pipeline_options)

  @staticmethod
  def load_transforms_from_artifact_location(artifact_location):
    return _transform_attribute_manager.load_attributes(artifact_location)


relabel(globals(), MLTransformMetricsUsage)
