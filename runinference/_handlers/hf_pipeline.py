"""``HuggingFacePipelineModelHandler``: a ``transformers.pipeline`` on raw
inputs (text, image paths, ...). ``transformers`` is imported when the
pipeline loads. Text runs length-aware (see ``hf_text``)."""
from __future__ import annotations

import enum
import logging
import os
from typing import Any, Callable, Optional, Sequence, Union

from ..exceptions import ModelFileNotFoundError, ModelSourceError
from .._core.contract import ModelHandler
from .._core.naming import publish
from .._core.results import to_results
from . import sub_batches
from .common import (ConfigurationError, ConfigurationRuntimeError,
                     check_types, cuda_usable, getsizeof_sum,
                     parse_device, require, warn_gpu_fallback)
from .hf_text import run_text_batch

__all__ = ['HuggingFacePipelineModelHandler', 'PipelineTask']

_LOGGER = logging.getLogger('runinference.huggingface_inference')
_WHO = 'HuggingFacePipelineModelHandler'


class PipelineTask(str, enum.Enum):
  """Tasks of ``transformers.pipeline`` (pass one, or its string, as
  ``task`` to HuggingFacePipelineModelHandler)."""
  AudioClassification = 'audio-classification'
  AutomaticSpeechRecognition = 'automatic-speech-recognition'
  Conversational = 'conversational'
  DepthEstimation = 'depth-estimation'
  DocumentQuestionAnswering = 'document-question-answering'
  FeatureExtraction = 'feature-extraction'
  FillMask = 'fill-mask'
  ImageClassification = 'image-classification'
  ImageFeatureExtraction = 'image-feature-extraction'
  ImageSegmentation = 'image-segmentation'
  ImageTextToText = 'image-text-to-text'
  ImageToImage = 'image-to-image'
  ImageToText = 'image-to-text'
  MaskGeneration = 'mask-generation'
  NER = 'ner'
  ObjectDetection = 'object-detection'
  QuestionAnswering = 'question-answering'
  SentimentAnalysis = 'sentiment-analysis'
  Summarization = 'summarization'
  TableQuestionAnswering = 'table-question-answering'
  TextClassification = 'text-classification'
  TextGeneration = 'text-generation'
  Text2TextGeneration = 'text2text-generation'
  TextToAudio = 'text-to-audio'
  TokenClassification = 'token-classification'
  Translation = 'translation'
  VideoClassification = 'video-classification'
  VisualQuestionAnswering = 'visual-question-answering'
  VQA = 'vqa'
  ZeroShotAudioClassification = 'zero-shot-audio-classification'
  ZeroShotClassification = 'zero-shot-classification'
  ZeroShotImageClassification = 'zero-shot-image-classification'
  ZeroShotObjectDetection = 'zero-shot-object-detection'
  Translation_XX_to_YY = 'translation_XX_to_YY'


# Pipelines whose inputs are text (a str, or a dict such as a text pair).
_TEXT_TASKS = frozenset({
    'feature-extraction', 'fill-mask', 'ner', 'token-classification',
    'sentiment-analysis', 'text-classification', 'summarization',
    'text-generation', 'text2text-generation', 'zero-shot-classification',
    'translation', 'question-answering'
})


def _is_text_task(task: str) -> bool:
  return task in _TEXT_TASKS or task.startswith('translation')


def _default_pipeline_inference_fn(
    batch: Sequence[Any], pipeline: Any,
    inference_args: Optional[dict[str, Any]]) -> Any:
  """One pipeline call over the whole batch (``batch_size`` = its length
  unless given), so the pipeline pads per batch."""
  args = dict(inference_args or {})
  args.setdefault('batch_size', len(batch))
  return pipeline(list(batch), **args)


class HuggingFacePipelineModelHandler(ModelHandler):
  """Runs a ``transformers.pipeline`` on raw inputs (text, image paths, ...).

  Example::

    pcoll | RunInference(HuggingFacePipelineModelHandler(
        task=PipelineTask.FeatureExtraction, model='/models/minilm'))
  """
  _model_location_attr = '_model'
  _device: Optional[str] = None
  _load_pipeline_args: dict = {}

  def overlap_by_default(self) -> bool:
    # The model runs on a GPU when one is usable unless told 'CPU'.
    args = self._load_pipeline_args
    if 'device' in args or 'device_map' in args:
      return str(args.get('device', args.get('device_map'))).startswith('cuda')
    return self._device != 'CPU' and cuda_usable()

  def __init__(
      self,
      task: Union[str, PipelineTask] = '',
      model: str = '',
      *,
      device: Optional[str] = None,
      inference_fn: Callable[..., Any] = _default_pipeline_inference_fn,
      load_pipeline_args: Optional[dict[str, Any]] = None,
      max_tokens_per_batch: Optional[int] = None,
      **kwargs):
    """
    Args:
      task: a ``PipelineTask`` or task string; may be left out if ``model``
        defines it.
      model: a local model directory or Hub model id.
      device: ``'CPU'`` or ``'GPU'``; default: the GPU when the worker has
        one, else the CPU. Or set ``device``/``device_map`` in
        ``load_pipeline_args`` (not both).
      inference_fn: ``fn(batch, pipeline, inference_args)`` returning one
        prediction per example.
      load_pipeline_args: keyword arguments of ``transformers.pipeline``.
      max_tokens_per_batch: with the default ``inference_fn`` on text, a
        batch runs shortest first in sub-batches of at most this many padded
        tokens (rows x longest). Default None: learned from the calls'
        times (per batch, the budget whose plan a fitted per-call cost
        predicts fastest), starting at 512 on the CPU, 65536 on a GPU.
      kwargs: batching and sharing options of ``ModelHandler``, ``env_vars``.
    """
    super().__init__(**kwargs)
    if not task and not model:
      raise ConfigurationRuntimeError(
          'Please provide either task or model to the '
          'HuggingFacePipelineModelHandler (e.g. task="fill-mask" or '
          'model=<dir or Hub id>).')
    if task and not isinstance(task, str):
      raise ConfigurationError(
          f'task must be a PipelineTask or a task string, got {task!r}.')
    self._task = task.value if isinstance(task, PipelineTask) else task
    self._model = model
    self._load_pipeline_args = dict(load_pipeline_args or {})
    self._device = parse_device(device, optional=True)
    if self._device and ('device' in self._load_pipeline_args or
                         'device_map' in self._load_pipeline_args):
      raise ConfigurationError(
          '`device` specified in `load_pipeline_args` and as the `device` '
          'argument; set it in one place only.')
    if not callable(inference_fn):
      raise ConfigurationError(
          f'inference_fn must be callable, got {inference_fn!r}.')
    self._inference_fn = inference_fn
    self._framework = 'pt'
    self._budget = sub_batches.TokenBudget(max_tokens_per_batch)

  def load_model(self):
    transformers = require('transformers', 'HuggingFacePipelineModelHandler')
    args = dict(self._load_pipeline_args)
    if 'device' not in args and 'device_map' not in args:
      if self._device == 'CPU':
        args['device'] = 'cpu'
      elif cuda_usable():
        args['device'] = 'cuda:0'
      else:
        if self._device == 'GPU':
          warn_gpu_fallback(_WHO)
        args['device'] = 'cpu'
    kwargs = {'task': self._task or None, 'model': self._model or None}
    try:
      pipeline = transformers.pipeline(**kwargs, **args)
    except OSError as e:
      if self._model:
        model = self._model
        if (model.startswith(('/', '.', '~')) or os.sep in model) and (
            not os.path.exists(os.path.expanduser(model))):
          raise ModelFileNotFoundError(
              f'Hugging Face model directory {model!r} does not exist. Pass '
              'a local directory written by save_pretrained() or a Hub model '
              'id.') from e
      raise ModelSourceError(
          f'Could not build the {self._task or "(model-defined)"} pipeline '
          f'for model {self._model!r}: {e}. For a Hub id the workers need '
          'network access or a cache that has it (HF_HOME).') from e
    if self.share_model_across_processes():
      return SharedPipeline(pipeline, self._budget)
    return pipeline

  def run_inference(self, batch, pipeline, inference_args=None):
    if not batch:
      return []
    shared = self.share_model_across_processes()  # a SharedPipeline (proxy)
    task = self._task or (pipeline.pipeline_task() if shared else
                          getattr(pipeline, 'task', '')) or ''
    args = inference_args or {}
    predictions = None
    if _is_text_task(task):
      check_types(batch, lambda x: isinstance(x, (str, dict)),
                  f'The {task!r} pipeline', 'text (a str)',
                  'Convert it in a preprocess step, e.g. '
                  'handler.with_preprocess_fn(str).')
      if (self._inference_fn is _default_pipeline_inference_fn and
          all(isinstance(x, str) for x in batch)):
        predictions = (
            pipeline.run_text_batch(list(batch), args) if shared else
            run_text_batch(pipeline, list(batch), args, self._budget))
    if predictions is None:
      predictions = self._inference_fn(batch, pipeline, args)
    return to_results(batch, predictions, self._model or None)

  def get_num_bytes(self, batch: Sequence[Any]) -> int:
    return getsizeof_sum(batch)

  def get_metrics_namespace(self) -> str:
    return 'BeamML_HuggingFacePipelineModelHandler'

  def __repr__(self):
    return (f'{type(self).__name__}(task={self._task!r}, '
            f'model={self._model!r})')


class SharedPipeline:
  """What a ``large_model=True`` handler loads: the pipeline with its
  length-aware text path, both run in the process that holds the model (a
  process-shared proxy forwards method calls, not attribute reads)."""
  def __init__(self, pipeline: Any, budget: sub_batches.TokenBudget):
    self._pipeline = pipeline
    self._budget = budget

  def __call__(self, *args, **kwargs):
    return self._pipeline(*args, **kwargs)

  def pipeline_task(self) -> str:
    return getattr(self._pipeline, 'task', '') or ''

  def run_text_batch(self, texts: list, call_args: dict) -> Optional[list]:
    return run_text_batch(self._pipeline, texts, call_args, self._budget)


publish(globals(), 'runinference.huggingface_inference')
