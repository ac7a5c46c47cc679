"""Switching the serving model while a pipeline runs: from a model-metadata
side input or a watched file pattern. A candidate is loaded beside the
current model, checked with a warm-up call -- and, with ``model_validation``,
evaluated against the serving model on a held-out sample -- and only then
swapped in; one that fails to load, to predict or to pass validation is
logged and counted, and the current model keeps serving.

``model_validation`` is any callable ``validation(candidate_predict,
serving_predict)`` returning a truthy/falsy result whose ``str`` names what
failed (``runinference.evaluation.ModelValidation`` is one); each
``predict`` maps a list of examples to the model's predictions. ``_core``
never imports the evaluation package: the object is handed in."""
from __future__ import annotations

import dataclasses
import logging
from typing import Any, Callable, Optional, Protocol, Sequence

import apache_beam as beam

from ..exceptions import ConfigurationTypeError, ModelRefreshRejected
from .model_holder import LoadedModel, ModelHolder, PreparedModel
from .watch import ModelWatcher, WatchSpec
from .types import ModelMetadata

_LOGGER = logging.getLogger(__name__)

#: How many of the latest examples are kept to check a refresh candidate.
RECENT_EXAMPLES = 4


@dataclasses.dataclass(frozen=True)
class RefreshTarget:
  """What a side input's value asks to switch to: ``path`` (or, for a
  multi-model KeyedModelHandler, a list of KeyModelPathMapping), the id that
  names the version, and the metrics prefix."""
  path: Any
  model_id: str
  name: str


def refresh_target(metadata: Any) -> Optional[RefreshTarget]:
  """The ``RefreshTarget`` of a side input's value, or None for "keep the
  current model" (no value, an empty side input, an empty model_id)."""
  if metadata is None or isinstance(metadata, beam.pvalue.EmptySideInput):
    return None
  if isinstance(metadata, ModelMetadata) or (
      hasattr(metadata, 'model_id') and hasattr(metadata, 'model_name')):
    if not metadata.model_id:
      return None
    return RefreshTarget(metadata.model_id, metadata.model_id,
                         metadata.model_name or '')
  if isinstance(metadata, (list, tuple)) and metadata and all(
      hasattr(m, 'update_path') for m in metadata):
    return RefreshTarget(list(metadata), repr(list(metadata)), '')
  raise ConfigurationTypeError(
      'model_metadata_pcoll must hold ModelMetadata (or, for a multi-model '
      'KeyedModelHandler, lists of KeyModelPathMapping); got '
      f'{type(metadata).__name__}: {metadata!r:.200}.')


@dataclasses.dataclass(frozen=True)
class SwitchOutcome:
  """One refresh attempt, for the serving thread to record: ``loaded`` is
  the model now serving (None when the attempt failed); ``rejected`` tells
  a candidate that loaded but failed its check from one that did not load."""
  model_id: str
  name: str
  loaded: Optional[LoadedModel] = None
  rejected: bool = False


class ModelValidationFn(Protocol):
  """What ``RunInference(model_validation=...)`` takes."""
  def __call__(self, candidate: Callable[[list], Any],
               serving: Optional[Callable[[list], Any]]) -> Any:
    ...


def check_model_validation(validation: Any) -> Any:
  if validation is not None and not callable(validation):
    raise ConfigurationTypeError(
        'model_validation must be callable as validation(candidate_predict, '
        'serving_predict) (e.g. runinference.evaluation.ModelValidation), got '
        f'{type(validation).__name__}.')
  return validation


def _predict(handler, model, inference_args) -> Callable[[list], Any]:
  return lambda examples: handler.run_inference(examples, model,
                                                inference_args)


class CandidateCheck:
  """A warm-up call of a refresh candidate on ``sample`` (given by the
  user) or else on the latest examples served; without either the candidate
  is accepted unchecked. Then, with ``validation``, the candidate must pass
  it against the serving model (read from ``serving``, the holder)."""
  def __init__(self, sample: Optional[Sequence] = None,
               validation: Optional[ModelValidationFn] = None):
    self.sample = None if sample is None else list(sample)
    self.validation = check_model_validation(validation)
    self.recent: list = []

  def examples(self) -> list:
    return self.sample if self.sample is not None else self.recent

  def __call__(self, prepared: PreparedModel,
               inference_args: Optional[dict],
               serving: Optional[ModelHolder] = None) -> None:
    self._warm_up(prepared, inference_args)
    if self.validation is not None:
      self._validate(prepared, inference_args, serving)

  def _validate(self, prepared: PreparedModel, inference_args,
                serving: Optional[ModelHolder]) -> None:
    try:
      serving_predict = None
      if serving is not None:
        current = serving.get()
        serving_predict = _predict(serving.handler, current.model,
                                   inference_args)
      result = self.validation(
          _predict(prepared.handler, prepared.loaded.model, inference_args),
          serving_predict)
    except Exception as exc:  # pylint: disable=broad-except
      raise ModelRefreshRejected(
          f'Model {prepared.loaded.model_id!r} could not be validated: '
          f'{exc!r}. The current model keeps serving.') from exc
    if not result:
      raise ModelRefreshRejected(
          f'Model {prepared.loaded.model_id!r} failed validation against '
          f'the serving model: {result}. The current model keeps serving.')
    _LOGGER.info('Model %r passed validation: %s', prepared.loaded.model_id,
                 result)

  def _warm_up(self, prepared: PreparedModel,
               inference_args: Optional[dict]) -> None:
    examples = self.examples()
    if not examples:
      return
    try:
      out = prepared.handler.run_inference(
          examples, prepared.loaded.model, inference_args)
      n = len(out if isinstance(out, list) else list(out))
    except Exception as exc:  # pylint: disable=broad-except
      raise ModelRefreshRejected(
          f'Model {prepared.loaded.model_id!r} loaded but failed its warm-up '
          f'call on {len(examples)} example(s): {exc!r}. The current model '
          'keeps serving.') from exc
    if n != len(examples):
      raise ModelRefreshRejected(
          f'Model {prepared.loaded.model_id!r} returned {n} predictions for '
          f'{len(examples)} warm-up example(s); the current model keeps '
          'serving.')


class Refresher:
  """Refresh for one ``ModelHolder``: ``switch(metadata)`` for a side
  input, or a background ``ModelWatcher`` over ``watch_spec`` whose loads
  the serving thread picks up with ``take()``."""
  def __init__(
      self,
      holder: ModelHolder,
      watch_spec: Optional[WatchSpec],
      check: CandidateCheck,
      inference_args: Callable[[], Optional[dict]]):
    self.holder = holder
    self.watch_spec = watch_spec
    self.check = check
    self._inference_args = inference_args
    self.current_model_id: Optional[str] = None
    self.watcher: Optional[ModelWatcher] = None

  def wants(self, metadata: Any) -> bool:
    """Whether ``metadata`` (a side input's value) names another model."""
    target = refresh_target(metadata)
    return target is not None and target.model_id != self.current_model_id

  def _prepare(self, path: Any, model_id: str) -> PreparedModel:
    prepared = self.holder.prepare(path, model_id)
    if isinstance(path, list):
      return prepared  # per-key updates: each key's handler loads on demand
    try:
      self.check(prepared, self._inference_args(), self.holder)
    except BaseException:
      self.holder.discard(prepared)
      raise
    return prepared

  def switch(self, metadata: Any) -> Optional[SwitchOutcome]:
    """Loads, checks and swaps in the model ``metadata`` names (now, on this
    thread); None when it names the current model."""
    target = refresh_target(metadata)
    if target is None or target.model_id == self.current_model_id:
      return None
    self.current_model_id = target.model_id
    try:
      prepared = self._prepare(target.path, target.model_id)
    except Exception as exc:  # pylint: disable=broad-except
      _LOGGER.error(
          'Model refresh to %r failed; the current model keeps serving.',
          target.model_id, exc_info=True)
      return SwitchOutcome(target.model_id, target.name,
                           rejected=isinstance(exc, ModelRefreshRejected))
    return SwitchOutcome(target.model_id, target.name,
                         self.holder.commit(prepared))

  # -- a watched file pattern -------------------------------------------------
  def start(self) -> None:
    """Polls ``watch_spec`` in the background; a newer file already there is
    loaded now and served from the first element on."""
    if self.watch_spec is None or self.watcher is not None:
      return
    self.watcher = ModelWatcher(
        self.watch_spec, lambda md: self._prepare(md.model_id, md.model_id))
    self.watcher.poll()
    self.watcher.start()

  def stop(self) -> None:
    if self.watcher is not None:
      self.watcher.stop()
      self.watcher = None

  @property
  def pending(self) -> bool:
    """Whether the watcher has something to hand over (cheap)."""
    return self.watcher is not None and self.watcher.pending

  def take(self) -> list[SwitchOutcome]:
    """Swaps in what the watcher loaded (the last good one wins)."""
    if self.watcher is None:
      return []
    outcomes = []
    for event in self.watcher.take():
      md = event.metadata
      if event.prepared is None:
        outcomes.append(SwitchOutcome(
            md.model_id, md.model_name,
            rejected=isinstance(event.error, ModelRefreshRejected)))
        continue
      self.current_model_id = md.model_id
      outcomes.append(SwitchOutcome(md.model_id, md.model_name,
                                    self.holder.commit(event.prepared)))
    return outcomes
