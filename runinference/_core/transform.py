"""The RunInference PTransform: a short ``expand`` of named steps."""
from __future__ import annotations

import dataclasses
import time
import uuid
from typing import Any, Optional, Sequence

import apache_beam as beam
from apache_beam.options.pipeline_options import StandardOptions

from .batching import BatchConfig
from .dofns import (GlobalBatchDoFn, PreprocessDoFn, SideInputDoFn,
                    WindowedBatchDoFn)
from .contract import ModelHandler
from .engine import InferenceEngine
from .failures import (FAILED_INFERENCES, ErrorPolicy, check_exc_class,
                       postprocess_tag, preprocess_tag)
from ..exceptions import (ConfigurationError, ConfigurationTypeError,
                          UnsupportedOptionError)
from .options import reject_unknown
from .watch import watch_spec_of
from .model_swap import check_model_validation
from .stream_batching import batch_across_bundles
from .types import ModelMetadata, RunInferenceDLQ

_MAIN = 'main'


def _is_streaming(pipeline) -> bool:
  try:
    return bool(pipeline.options.view_as(StandardOptions).streaming)
  except Exception:  # pylint: disable=broad-except
    return False


def _model_manager_args(use: bool, args: Optional[dict]) -> Optional[dict]:
  """The central model manager's arguments, or None when it is off."""
  if not use:
    if args:
      raise ConfigurationError(
          'model_manager_args needs use_model_manager=True.')
    return None
  if args is not None and not isinstance(args, dict):
    raise ConfigurationTypeError(
        f'model_manager_args must be a dict, got {type(args).__name__}.')
  from .model_manager import ModelManager
  ModelManager(**(args or {}))  # unknown or bad options fail here
  return dict(args or {})


class RunInference(beam.PTransform):
  """Runs a model over a PCollection of examples.

  Output: one prediction (by default a ``PredictionResult``) per input
  element. Batching, model sharing and failure handling come from the
  ``model_handler``; see ``with_exception_handling`` for the dead-letter
  outputs.
  """
  def __init__(
      self,
      model_handler: ModelHandler,
      clock=time,
      inference_args: Optional[dict[str, Any]] = None,
      metrics_namespace: Optional[str] = None,
      *,
      model_metadata_pcoll: Optional[beam.PCollection] = None,
      watch_model_pattern: Optional[str] = None,
      model_identifier: Optional[str] = None,
      refresh_sample: Optional[Sequence[Any]] = None,
      overlap: Optional[bool] = None,
      model_validation: Optional[Any] = None,
      **kwargs):
    """
    Args:
      model_handler: how to load and run the model.
      inference_args: extra keyword arguments for every model call.
      metrics_namespace: namespace of the metrics (default: the handler's).
      model_metadata_pcoll: a PCollection of ``ModelMetadata`` (read as a
        singleton side input) that switches the model while the pipeline runs.
      watch_model_pattern: a file glob; the newest matching file becomes the
        model (shorthand for ``model_metadata_pcoll=WatchFilePattern(...)``;
        ``interval``, ``stop_timestamp`` and ``allow_pickle`` -- load a
        watched pickle without its ``.sha256`` digest, docs/security.md --
        go to it).
      model_identifier: share one loaded model between RunInference steps
        that name the same identifier.
      refresh_sample: examples a new model (from ``model_metadata_pcoll`` or
        ``watch_model_pattern``) must predict before it replaces the current
        one; by default the latest examples served are used.
      overlap: run model calls on a thread of their own, so the model
        works on one batch while the pipeline builds the next (batch
        pipelines in the global window). Default: the handler's
        ``overlap_by_default()`` (on for remote handlers and models on a
        GPU, where the CPU is free while the model runs; off on the CPU).
      model_validation: a new model (from ``model_metadata_pcoll`` or
        ``watch_model_pattern``) is swapped in only if it passes this check
        against the serving one, e.g.
        ``runinference.evaluation.ModelValidation``; a refused model is
        logged and counted (``model_refresh_rejected``).
    """
    super().__init__()
    if not isinstance(model_handler, ModelHandler) and not all(
        hasattr(model_handler, m) for m in ('load_model', 'run_inference')):
      raise ConfigurationTypeError(
          'RunInference needs a ModelHandler (with load_model and '
          f'run_inference), got {type(model_handler).__name__}.')
    if inference_args is not None and not isinstance(
        inference_args, (dict, beam.pvalue.AsSideInput)):
      raise ConfigurationTypeError(
          'inference_args must be a dict of keyword arguments for the model '
          f'call (or a side input such as beam.pvalue.AsDict), got '
          f'{type(inference_args).__name__}.')
    self._model_handler = model_handler
    self._inference_args = inference_args
    self._clock = clock
    self._metrics_namespace = metrics_namespace
    self._model_metadata_pcoll = model_metadata_pcoll
    self._watch_model_pattern = watch_model_pattern
    if 'monitoring_transform' in kwargs:
      raise UnsupportedOptionError(
          "RunInference option 'monitoring_transform' is not supported by "
          'runinference; read the run report (runinference.report) or the '
          'live metrics instead.')
    self._manager_args = _model_manager_args(
        kwargs.pop('use_model_manager', False),
        kwargs.pop('model_manager_args', None))
    reject_unknown(
        'RunInference', kwargs,
        ['interval', 'stop_timestamp', 'allow_pickle', 'clock',
         'inference_args',
         'metrics_namespace', 'model_metadata_pcoll', 'watch_model_pattern',
         'model_identifier', 'refresh_sample', 'use_model_manager',
         'model_manager_args', 'overlap', 'model_validation'],
        ' interval, stop_timestamp and allow_pickle go with '
        'watch_model_pattern.')
    if refresh_sample is not None and (
        isinstance(refresh_sample, (str, bytes)) or
        not hasattr(refresh_sample, '__len__') or not len(refresh_sample)):
      raise ConfigurationError(
          'refresh_sample must be a non-empty list of examples (what the '
          f'model takes), got {refresh_sample!r:.100}.')
    self._refresh_sample = refresh_sample
    if overlap is not None and not isinstance(overlap, bool):
      raise ConfigurationTypeError(
          f'overlap must be True, False or None (the default), got '
          f'{overlap!r}.')
    self._overlap = overlap
    if model_validation is not None and not (
        watch_model_pattern or model_metadata_pcoll is not None):
      raise ConfigurationError(
          'model_validation gates a model refresh: it needs '
          'watch_model_pattern or model_metadata_pcoll.')
    self._model_validation = check_model_validation(model_validation)
    if 'allow_pickle' in kwargs and not watch_model_pattern:
      raise ConfigurationError(
          'allow_pickle goes with watch_model_pattern (it configures its '
          'WatchFilePattern); with model_metadata_pcoll, pass it to '
          'WatchFilePattern(..., allow_pickle=True).')
    self._kwargs = kwargs
    self._model_tag = model_identifier or uuid.uuid4().hex
    self._policy = ErrorPolicy()

  @classmethod
  def from_callable(cls, model_handler_provider, **kwargs):
    """Builds the transform from a callable returning the ModelHandler
    (for cross-language pipelines)."""
    return cls(model_handler_provider(**kwargs))

  def annotations(self):
    return {
        'model_handler': str(self._model_handler),
        'model_handler_type': (
            f'{type(self._model_handler).__module__}.'
            f'{type(self._model_handler).__qualname__}'),
        'model_identifier': self._model_tag,
        **super().annotations()
    }

  def with_exception_handling(
      self,
      *,
      exc_class=Exception,
      use_subprocess: bool = False,
      threshold: float = 1,
      timeout: Optional[float] = None,
      bisect: bool = True):
    """Send failures to dead-letter outputs instead of failing the pipeline.

    The transform then returns ``(main, RunInferenceDLQ)``. A failing batch is
    bisected so only the rows that fail reach ``failed_inferences`` (each as
    ``([row], (exc_type, repr, traceback))``); the rest of the batch still
    reaches ``main``.

    Args:
      exc_class: exception class(es) to catch; others fail the pipeline.
      use_subprocess: not supported (accepted for compatibility; raises).
      threshold: fail the pipeline when more than this share of elements fail.
      timeout: seconds a model load plus one batch may take; a batch that
        runs longer is dead-lettered and the model is reloaded.
      bisect: split failing batches to isolate the bad rows (default True).
    """
    if use_subprocess:
      raise UnsupportedOptionError(
          'with_exception_handling(use_subprocess=True) is not supported by '
          'runinference; use timeout= to guard against hung models.')
    check_exc_class(exc_class)
    if not 0 <= threshold <= 1:
      raise ConfigurationError(
          f'threshold must be between 0 and 1, got {threshold}.')
    if timeout is not None and not timeout > 0:
      raise ConfigurationError(
          f'timeout must be > 0 seconds, got {timeout!r}.')
    self._policy = ErrorPolicy(
        enabled=True,
        exc_class=exc_class,
        threshold=threshold,
        timeout=timeout,
        bisect=bisect)
    return self

  # -- expand ---------------------------------------------------------------
  def _metadata_pcoll(self, pipeline):
    if self._watch_model_pattern:
      from .watch import WatchFilePattern
      extra = {
          k: self._kwargs[k]
          for k in ('interval', 'stop_timestamp', 'allow_pickle')
          if k in self._kwargs
      }
      return pipeline | 'WatchFilePattern' >> WatchFilePattern(
          file_pattern=self._watch_model_pattern, **extra)
    return self._model_metadata_pcoll

  def _engine(self, batch_config, prebatched, load_eagerly, **options):
    return InferenceEngine(
        self._model_handler,
        namespace=self._metrics_namespace,
        inference_args=(
            None if isinstance(self._inference_args, beam.pvalue.AsSideInput)
            else self._inference_args),
        policy=self._policy,
        batch_config=batch_config,
        prebatched=prebatched,
        tag=self._model_tag,
        load_eagerly=load_eagerly,
        clock=self._clock,
        refresh_sample=self._refresh_sample,
        model_manager_args=self._manager_args,
        model_validation=self._model_validation,
        **options)

  def _plan(self, pcoll) -> '_Plan':
    """Everything ``expand`` decides before it builds the graph."""
    pipeline = pcoll.pipeline
    handler = self._model_handler
    args_side = isinstance(self._inference_args, beam.pvalue.AsSideInput)
    if not args_side:
      handler.validate_inference_args(self._inference_args)
    batch_config = BatchConfig.from_kwargs(handler.batch_elements_kwargs())
    metadata = self._metadata_pcoll(pipeline)
    skip_batching = handler.should_skip_batching()
    cross_bundle = (
        not skip_batching and batch_config.max_batch_duration_secs is not None)
    # A WatchFilePattern output is not waited for as a side input: the
    # inference DoFn polls the pattern itself (works on every runner).
    watch_spec = watch_spec_of(metadata)
    side_inputs = metadata is not None or args_side
    windowed = (cross_bundle or side_inputs or _is_streaming(pipeline) or
                not pcoll.windowing.is_default())
    engine = self._engine(
        batch_config,
        prebatched=skip_batching,
        load_eagerly=metadata is None and self._policy.timeout is None,
        # With cross-bundle batching, preprocessing is a step of its own.
        run_preprocess=not cross_bundle,
        watch_spec=watch_spec,
        refreshable=metadata is not None,
        # None: the handler decides on the worker (engine.setup).
        overlap=(not windowed and not skip_batching and self._overlap))
    side = []
    if side_inputs:
      side = [
          self._inference_args if args_side else None,
          None if metadata is None else
          # Watched: never read (lazy), kept so the graph has Beam's shape.
          beam.pvalue.AsIter(metadata) if watch_spec is not None else
          beam.pvalue.AsSingleton(metadata)
      ]
    return _Plan(engine, batch_config, cross_bundle, side, windowed)

  def _preprocess(self, pcoll, plan: '_Plan'):
    """Preprocessing as its own step (before cross-bundle batching)."""
    n = len(self._model_handler.get_preprocess_fns())
    if not n:
      return pcoll, []
    tags = [preprocess_tag(i) for i in range(n)]
    pre_engine = self._engine(
        plan.batch_config, prebatched=False, load_eagerly=False)
    out = pcoll | 'BeamML_RunInference_Preprocess' >> beam.ParDo(
        PreprocessDoFn(pre_engine)).with_outputs(*tags, main=_MAIN)
    return out[_MAIN], [out[t] for t in tags]

  def _inference_dofn(self, pcoll, plan: '_Plan'):
    stamped = plan.cross_bundle and not plan.engine.prebatched
    if plan.side:
      return SideInputDoFn(plan.engine, stamped)
    if plan.windowed:
      return WindowedBatchDoFn(plan.engine, stamped)
    return GlobalBatchDoFn(plan.engine)

  def expand(self, pcoll):
    plan = self._plan(pcoll)
    pre_dead = []
    if plan.cross_bundle:
      # Batches that span bundles need state and timers (see _stream_batching).
      pcoll, pre_dead = self._preprocess(pcoll, plan)
      pcoll = pcoll | 'BeamML_BatchElements' >> batch_across_bundles(
          pcoll.pipeline, plan.batch_config)
    pardo = beam.ParDo(self._inference_dofn(pcoll, plan),
                       *plan.side).with_resource_hints(
                           **self._model_handler.get_resource_hints())
    if not self._policy.enabled:
      return pcoll | 'BeamML_RunInference' >> pardo
    handler = self._model_handler
    pre_tags = [
        preprocess_tag(i) for i in range(len(handler.get_preprocess_fns()))]
    post_tags = [
        postprocess_tag(i) for i in range(len(handler.get_postprocess_fns()))]
    outputs = pcoll | 'BeamML_RunInference' >> pardo.with_outputs(  # type: ignore[attr-defined]
        FAILED_INFERENCES, *pre_tags, *post_tags, main=_MAIN)
    return outputs[_MAIN], RunInferenceDLQ(
        failed_inferences=outputs[FAILED_INFERENCES],
        failed_preprocessing=pre_dead or [outputs[t] for t in pre_tags],
        failed_postprocessing=[outputs[t] for t in post_tags])


@dataclasses.dataclass
class _Plan:
  engine: InferenceEngine
  batch_config: BatchConfig
  cross_bundle: bool
  side: list
  windowed: bool  # each result keeps its own element's window


__all__ = ['RunInference', 'ModelMetadata']
