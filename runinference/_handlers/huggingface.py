"""Hugging Face handlers: models on (keyed) tensors, and ``transformers``
pipelines on raw inputs.

Import-compatible with ``apache_beam.ml.inference.huggingface_inference``,
but works with current ``transformers`` (5.x) and never imports TensorFlow:
``transformers`` and ``torch`` are imported when a model loads, so this module
imports without them. TensorFlow tensors are still accepted by the tensor
handlers (with a TF model and an older ``transformers``) if TensorFlow is
installed.

Variable-length text: tokenize each example without padding (see
``Tokenize``); ``HuggingFaceModelHandlerKeyedTensor`` pads each batch only to
its own longest example (with an attention mask) and trims token-level
outputs back to each example's length, so results do not depend on what an
example was batched with. Combine with length-aware batching
(``batch_length_fn=input_length, batch_bucket_boundaries=[16, 32, 64]``) so
that similar lengths share batches and little padding is needed.
"""
from __future__ import annotations

import enum
import inspect
import logging
import sys
from typing import Any, Callable, Iterable, Optional, Sequence, Union

from .common import check_model_path, describe_value, require
from .._core.contract import ModelHandler
from .._core.naming import publish
from ..exceptions import ModelFileNotFoundError
from .._core.results import to_results
from .._core.types import PredictionResult

__all__ = [
    'HuggingFaceModelHandlerKeyedTensor',
    'HuggingFaceModelHandlerTensor',
    'HuggingFacePipelineModelHandler',
    'PipelineTask',
    'Tokenize',
    'input_length',
]

_LOGGER = logging.getLogger('runinference.huggingface_inference')


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


# ----------------------------------------------------------------- devices


def _torch():
  return require('torch', 'The Hugging Face handlers')


def _gpu_available() -> bool:
  torch = sys.modules.get('torch') or _torch()
  return bool(torch.cuda.is_available())


def _parse_device(device: Optional[str]) -> Optional[str]:
  if device is None:
    return None
  if not isinstance(device, str) or device.upper() not in ('CPU', 'GPU'):
    raise ValueError(f"device must be 'CPU' or 'GPU', got {device!r}.")
  return device.upper()


def _torch_device(device: str):
  torch = _torch()
  if device == 'GPU':
    if _gpu_available():
      return torch.device('cuda')
    _LOGGER.warning(
        "A Hugging Face handler was given device='GPU', but no GPU is "
        'available; running on the CPU.')
  return torch.device('cpu')


def _is_tf_tensor(x: Any) -> bool:
  return type(x).__module__.startswith('tensorflow')


# ---------------------------------------------------------------- loading


def _load_pretrained(model_class: Any, model_uri: str, args: dict) -> Any:
  try:
    return model_class.from_pretrained(model_uri, **args)
  except OSError as e:
    import os
    looks_local = model_uri.startswith(('/', '.', '~')) or os.sep in model_uri
    if looks_local and not os.path.exists(os.path.expanduser(model_uri)):
      raise ModelFileNotFoundError(
          f'Hugging Face model directory {model_uri!r} does not exist. Pass '
          'a local directory written by save_pretrained() or a Hub model id.'
      ) from e
    offline = os.environ.get('HF_HUB_OFFLINE')
    raise OSError(
        f'Could not load Hugging Face model {model_uri!r} with '
        f'{getattr(model_class, "__name__", model_class)}.from_pretrained: '
        f'{e}. For a Hub id the workers need network access or a cache that '
        f'has it (HF_HOME); HF_HUB_OFFLINE={offline!r}.') from e


# ------------------------------------------------------ tokenizing helpers


class Tokenize:
  """A picklable preprocess fn: text -> ``{name: 1-D torch.Tensor}`` with no
  padding (the keyed handler pads per batch).

  Example::

    handler = HuggingFaceModelHandlerKeyedTensor(
        path, AutoModel, framework='pt',
        batch_length_fn=input_length, batch_bucket_boundaries=[16, 32, 64],
    ).with_preprocess_fn(Tokenize(path, max_length=256))
  """
  def __init__(self, tokenizer: Any, **tokenizer_kwargs):
    """
    Args:
      tokenizer: a tokenizer, or the path / Hub id to load one from with
        ``AutoTokenizer.from_pretrained`` (loaded once per process).
      tokenizer_kwargs: extra arguments of the tokenizer call (truncation is
        on by default, at ``max_length`` if given).
    """
    self._source = tokenizer if isinstance(tokenizer, str) else None
    self._tokenizer = None if isinstance(tokenizer, str) else tokenizer
    self._kwargs = {'truncation': True, **tokenizer_kwargs}

  def __getstate__(self):
    state = self.__dict__.copy()
    if self._source is not None:
      state['_tokenizer'] = None
    return state

  @property
  def tokenizer(self):
    if self._tokenizer is None:
      transformers = require('transformers', 'Tokenize')
      self._tokenizer = transformers.AutoTokenizer.from_pretrained(
          self._source)
    return self._tokenizer

  def __call__(self, text: str) -> dict:
    if not isinstance(text, str):
      raise TypeError(
          f'Tokenize expects a str, got {describe_value(text)}.')
    encoded = self.tokenizer(text, return_tensors='pt', **self._kwargs)
    return {k: v[0] for k, v in encoded.items()}


def input_length(example: Any) -> int:
  """Length of an example for ``batch_length_fn``: tokens for a tokenized
  dict or a 1-D tensor, characters for a string; a ``(key, example)`` pair
  (a KeyedModelHandler's element) measures its example."""
  if isinstance(example, tuple) and len(example) == 2:
    example = example[1]
  if isinstance(example, dict):
    ids = example.get('input_ids')
    if ids is None:
      ids = next(iter(example.values()))
    return int(ids.shape[-1])
  if isinstance(example, str):
    return len(example)
  shape = getattr(example, 'shape', None)
  if shape is not None and len(shape):
    return int(shape[0])
  return len(example)


# ----------------------------------------------------------- keyed tensors


def _pad_value(name: str, pad_token_id: Optional[int]) -> int:
  if name == 'input_ids' and pad_token_id is not None:
    return int(pad_token_id)
  return 0


def _stack_keyed(batch: Sequence[dict], device, pad_token_id: Optional[int],
                 accepts_mask: bool):
  """Stacks each named input; 1-D inputs of different lengths are padded to
  the longest in this batch. Returns (inputs, lengths or None)."""
  torch = _torch()
  who = 'HuggingFaceModelHandlerKeyedTensor'
  for i, x in enumerate(batch):
    if not isinstance(x, dict):
      raise TypeError(
          f'{who} expects each example to be a dict of tensors (e.g. '
          f'tokenizer output), but example {i} is {describe_value(x)}. '
          'Tokenize text in a preprocess step, e.g. '
          'handler.with_preprocess_fn(Tokenize(model_path)).')
  names = list(batch[0])
  inputs: dict = {}
  lengths: Optional[list[int]] = None
  for name in names:
    try:
      tensors = [x[name] for x in batch]
    except KeyError as e:
      raise ValueError(
          f'{who}: every example must have the same keys {names}; one lacks '
          f'{e.args[0]!r}.') from e
    for t in tensors:
      if not isinstance(t, torch.Tensor):
        raise TypeError(
            f'{who}: input {name!r} must be a torch.Tensor, got '
            f'{describe_value(t)}. Tokenize with return_tensors="pt".')
    shapes = {tuple(t.shape) for t in tensors}
    if len(shapes) == 1:
      inputs[name] = torch.stack(tensors).to(device)
      continue
    if any(t.dim() != 1 for t in tensors):
      raise ValueError(
          f'{who}: input {name!r} has different shapes in one batch '
          f'{sorted(shapes)}; only 1-D sequences (token ids, masks) are '
          'padded per batch. Give each example one unbatched sequence, e.g. '
          '{k: v[0] for k, v in tokenizer(text, return_tensors="pt").items()}.')
    these = [int(t.shape[0]) for t in tensors]
    if lengths is not None and these != lengths:
      raise ValueError(
          f'{who}: input {name!r} has lengths {these} but another input has '
          f'{lengths}; the sequences of one example must have one length.')
    lengths = these
    inputs[name] = torch.nn.utils.rnn.pad_sequence(
        tensors, batch_first=True,
        padding_value=_pad_value(name, pad_token_id)).to(device)
  if lengths is not None and 'attention_mask' not in inputs and accepts_mask:
    longest = max(lengths)
    mask = torch.zeros((len(batch), longest), dtype=torch.long)
    for i, n in enumerate(lengths):
      mask[i, :n] = 1
    inputs['attention_mask'] = mask.to(device)
  return inputs, lengths


def _split_output(value: Any, n: int, lengths: Optional[list[int]]) -> list:
  """One entry per example; token-level outputs (batch, longest, ...) are
  trimmed to each example's own length when the batch was padded."""
  torch = sys.modules.get('torch')
  if torch is not None and isinstance(value, torch.Tensor):
    if value.dim() == 0 or value.shape[0] != n:
      return [value] * n
    rows = list(value.unbind(0))
    if lengths is not None and value.dim() >= 2 and value.shape[1] == max(
        lengths):
      rows = [row[:length] for row, length in zip(rows, lengths)]
    return rows
  if isinstance(value, (tuple, list)):
    parts = [_split_output(v, n, lengths) for v in value]
    return [tuple(p[i] for p in parts) for i in range(n)]
  if value is None:
    return [None] * n
  try:
    return list(value)
  except TypeError:
    return [value] * n


def _to_results(batch, predictions, model_id, lengths=None):
  n = len(batch)
  if isinstance(predictions, dict):  # includes transformers' ModelOutput
    columns = {k: _split_output(v, n, lengths) for k, v in predictions.items()}
    rows = [{k: col[i] for k, col in columns.items()} for i in range(n)]
    return to_results(batch, rows, model_id)
  if isinstance(predictions, tuple):
    return to_results(batch, _split_output(predictions, n, lengths), model_id)
  return to_results(batch, _split_output(predictions, n, lengths), model_id)


def _model_device(model: Any, fallback):
  device = getattr(model, 'device', None)
  return device if device is not None else fallback


def _accepts_attention_mask(model: Any) -> bool:
  try:
    return 'attention_mask' in inspect.signature(model.forward).parameters
  except (AttributeError, TypeError, ValueError):
    return False


def _run_inference_torch_keyed_tensor(
    batch: Sequence[dict],
    model: Any,
    device: Any,
    inference_args: dict[str, Any],
    model_id: Optional[str] = None) -> Iterable[PredictionResult]:
  """Default keyed-tensor inference: pad per batch, one forward pass."""
  torch = _torch()
  if isinstance(device, str):
    device = _torch_device(device)
  device = _model_device(model, device)
  config = getattr(model, 'config', None)
  pad_token_id = getattr(config, 'pad_token_id', None)
  with torch.no_grad():
    inputs, lengths = _stack_keyed(
        batch, device, pad_token_id, _accepts_attention_mask(model))
    predictions = model(**inputs, **(inference_args or {}))
  return _to_results(batch, predictions, model_id, lengths)


def _run_inference_tensorflow_keyed_tensor(
    batch: Sequence[dict],
    model: Any,
    device: Any,
    inference_args: dict[str, Any],
    model_id: Optional[str] = None) -> Iterable[PredictionResult]:
  """Keyed TF tensors into a TF model (needs TensorFlow installed)."""
  tf = require('tensorflow', 'HuggingFaceModelHandlerKeyedTensor',
               "for framework='tf'")
  names = list(batch[0])
  inputs = {name: tf.stack([x[name] for x in batch], axis=0) for name in names}
  predictions = model(**inputs, **(inference_args or {}))
  return to_results(batch, _tf_unbatch(tf, predictions), model_id)


def _tf_unbatch(tf, predictions):
  if isinstance(predictions, dict):
    return {k: _tf_unbatch(tf, v) for k, v in predictions.items()}
  if tf.is_tensor(predictions) and predictions.shape.rank:
    return tf.unstack(predictions)
  return predictions


class _HFModelHandler(ModelHandler):
  _model_location_attr = '_model_uri'
  _framework = ''
  _device = 'CPU'
  _inference_fn = None
  _model_config_args: dict = {}

  def __init__(
      self,
      model_uri: str,
      model_class: Any,
      device: str = 'CPU',
      *,
      inference_fn: Optional[Callable[..., Iterable[PredictionResult]]] = None,
      load_model_args: Optional[dict[str, Any]] = None,
      min_batch_size: Optional[int] = None,
      max_batch_size: Optional[int] = None,
      max_batch_duration_secs: Optional[float] = None,
      large_model: bool = False,
      model_copies: Optional[int] = None,
      **kwargs):
    super().__init__(
        min_batch_size=min_batch_size,
        max_batch_size=max_batch_size,
        max_batch_duration_secs=max_batch_duration_secs,
        large_model=large_model,
        model_copies=model_copies,
        **kwargs)
    if not model_uri or not model_class:
      raise RuntimeError(
          'Please provide both model_class and model_uri to load the model '
          '(e.g. model_uri=<dir or Hub id>, model_class=AutoModel); got '
          f'model_uri={model_uri!r} and model_class={model_class!r}.')
    self._model_uri = check_model_path(model_uri, 'Hugging Face model')
    self._model_class = model_class
    self._device = _parse_device(device) or 'CPU'
    if inference_fn is not None and not callable(inference_fn):
      raise ValueError(f'inference_fn must be callable, got {inference_fn!r}.')
    self._inference_fn = inference_fn
    self._model_config_args = dict(load_model_args or {})

  def load_model(self):
    model = _load_pretrained(
        self._model_class, self._model_uri, self._model_config_args)
    if self._framework != 'tf' and callable(getattr(model, 'to', None)):
      if 'device_map' not in self._model_config_args:
        model.to(_torch_device(self._device))
      if callable(getattr(model, 'requires_grad_', None)):
        model.requires_grad_(False)
      if callable(getattr(model, 'eval', None)):
        model.eval()
    return model

  # The default inference fn per framework ('pt', 'tf'), set by subclasses.
  _default_fns: dict = {}

  def run_inference(
      self,
      batch: Sequence[Any],
      model: Any,
      inference_args: Optional[dict[str, Any]] = None
  ) -> Iterable[PredictionResult]:
    if not batch:
      return []
    if not self._framework:  # the tensor handler follows the tensors' type
      self._framework = 'tf' if _is_tf_tensor(batch[0]) else 'pt'
    fn = self._inference_fn or self._default_fns[self._framework]
    return fn(batch, model, self._device, inference_args or {}, self._model_uri)

  def update_model_path(self, model_path: Optional[str] = None):
    self._model_uri = model_path or self._model_uri

  def __repr__(self):
    return (f'{type(self).__name__}(model_uri={self._model_uri!r}, '
            f'model_class={getattr(self._model_class, "__name__", "?")})')


class HuggingFaceModelHandlerKeyedTensor(_HFModelHandler):
  """Runs a Hugging Face model on examples that are dicts of tensors (e.g.
  tokenizer output); each name is stacked (1-D sequences padded to the
  longest in the batch) and passed as a keyword argument.

  Example::

    pcoll | RunInference(HuggingFaceModelHandlerKeyedTensor(
        'bert-base-uncased', AutoModelForMaskedLM, framework='pt'))
  """
  def __init__(
      self,
      model_uri: str,
      model_class: Any,
      framework: str = 'pt',
      device: str = 'CPU',
      *,
      inference_fn: Optional[Callable[..., Iterable[PredictionResult]]] = None,
      load_model_args: Optional[dict[str, Any]] = None,
      **kwargs):
    """
    Args:
      model_uri: a local directory (``save_pretrained``) or a Hub model id.
      model_class: e.g. ``AutoModel`` or ``AutoModelForSequenceClassification``.
      framework: ``'pt'`` (PyTorch, default) or ``'tf'``.
      device: ``'CPU'`` or ``'GPU'`` (CPU, with a warning, if no GPU).
      inference_fn: ``fn(batch, model, device, inference_args, model_id)``.
      load_model_args: keyword arguments of ``from_pretrained``.
      kwargs: batching and sharing options of ``ModelHandler``, ``env_vars``.
    """
    if framework not in ('pt', 'tf'):
      raise ValueError(
          f"framework must be 'pt' (PyTorch) or 'tf' (TensorFlow), got "
          f'{framework!r}.')
    self._framework = framework
    super().__init__(
        model_uri, model_class, device, inference_fn=inference_fn,
        load_model_args=load_model_args, **kwargs)

  _default_fns = {
      'pt': _run_inference_torch_keyed_tensor,
      'tf': _run_inference_tensorflow_keyed_tensor
  }

  def get_num_bytes(self, batch: Sequence[dict]) -> int:
    return sum(_tensor_bytes(t) for x in batch for t in x.values())

  def get_metrics_namespace(self) -> str:
    return 'BeamML_HuggingFaceModelHandler_KeyedTensor'


def _tensor_bytes(t: Any) -> int:
  if hasattr(t, 'element_size') and hasattr(t, 'nelement'):
    return t.element_size() * t.nelement()
  if hasattr(t, 'nbytes'):
    return int(t.nbytes)
  return sys.getsizeof(t)


def _default_inference_fn_torch(
    batch: Sequence[Any],
    model: Any,
    device: Any,
    inference_args: dict[str, Any],
    model_id: Optional[str] = None) -> Iterable[PredictionResult]:
  torch = _torch()
  who = 'HuggingFaceModelHandlerTensor'
  for i, t in enumerate(batch):
    if not isinstance(t, torch.Tensor):
      raise TypeError(
          f'{who} expects each example to be a torch.Tensor, but example {i} '
          f'is {describe_value(t)}. For tokenizer output (a dict) use '
          'HuggingFaceModelHandlerKeyedTensor.')
  shapes = {tuple(t.shape) for t in batch}
  if len(shapes) > 1:
    raise ValueError(
        f'{who} stacks a batch into one tensor, but the examples have shapes '
        f'{sorted(shapes)}. Pad them to one shape, or use '
        'HuggingFaceModelHandlerKeyedTensor with tokenizer dicts (padded per '
        'batch with an attention mask).')
  if isinstance(device, str):
    device = _torch_device(device)
  with torch.no_grad():
    stacked = torch.stack(list(batch)).to(_model_device(model, device))
    predictions = model(stacked, **(inference_args or {}))
  return _to_results(batch, predictions, model_id)


def _default_inference_fn_tensorflow(
    batch: Sequence[Any],
    model: Any,
    device: Any,
    inference_args: dict[str, Any],
    model_id: Optional[str] = None) -> Iterable[PredictionResult]:
  tf = require('tensorflow', 'HuggingFaceModelHandlerTensor',
               'for TensorFlow tensors')
  predictions = model(tf.stack(batch, axis=0), **(inference_args or {}))
  return to_results(batch, _tf_unbatch(tf, predictions), model_id)


class HuggingFaceModelHandlerTensor(_HFModelHandler):
  """Runs a Hugging Face model on tensor examples (stacked per batch); the
  framework (PyTorch or TensorFlow) follows the type of the tensors."""
  _default_fns = {
      'pt': _default_inference_fn_torch, 'tf': _default_inference_fn_tensorflow
  }

  def get_num_bytes(self, batch: Sequence[Any]) -> int:
    return sum(_tensor_bytes(t) for t in batch)

  def get_metrics_namespace(self) -> str:
    return 'BeamML_HuggingFaceModelHandler_Tensor'


# --------------------------------------------------------------- pipelines


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

  def __init__(
      self,
      task: Union[str, PipelineTask] = '',
      model: str = '',
      *,
      device: Optional[str] = None,
      inference_fn: Callable[..., Any] = _default_pipeline_inference_fn,
      load_pipeline_args: Optional[dict[str, Any]] = None,
      min_batch_size: Optional[int] = None,
      max_batch_size: Optional[int] = None,
      max_batch_duration_secs: Optional[float] = None,
      large_model: bool = False,
      model_copies: Optional[int] = None,
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
      kwargs: batching and sharing options of ``ModelHandler``, ``env_vars``.
    """
    super().__init__(
        min_batch_size=min_batch_size,
        max_batch_size=max_batch_size,
        max_batch_duration_secs=max_batch_duration_secs,
        large_model=large_model,
        model_copies=model_copies,
        **kwargs)
    if not task and not model:
      raise RuntimeError(
          'Please provide either task or model to the '
          'HuggingFacePipelineModelHandler (e.g. task="fill-mask" or '
          'model=<dir or Hub id>).')
    if task and not isinstance(task, str):
      raise ValueError(
          f'task must be a PipelineTask or a task string, got {task!r}.')
    self._task = task.value if isinstance(task, PipelineTask) else task
    self._model = model
    self._load_pipeline_args = dict(load_pipeline_args or {})
    self._device = _parse_device(device)
    if self._device and ('device' in self._load_pipeline_args or
                         'device_map' in self._load_pipeline_args):
      raise ValueError(
          '`device` is set both as an argument and in load_pipeline_args; '
          'set it in one place only.')
    if not callable(inference_fn):
      raise ValueError(f'inference_fn must be callable, got {inference_fn!r}.')
    self._inference_fn = inference_fn
    self._framework = 'pt'

  def load_model(self):
    transformers = require('transformers', 'HuggingFacePipelineModelHandler')
    args = dict(self._load_pipeline_args)
    if 'device' not in args and 'device_map' not in args:
      if self._device == 'CPU':
        args['device'] = 'cpu'
      elif _gpu_available():
        args['device'] = 'cuda:0'
      else:
        if self._device == 'GPU':
          _LOGGER.warning(
              "HuggingFacePipelineModelHandler was given device='GPU', but no "
              'GPU is available; running on the CPU.')
        args['device'] = 'cpu'
    kwargs = {'task': self._task or None, 'model': self._model or None}
    try:
      return transformers.pipeline(**kwargs, **args)
    except OSError as e:
      if self._model:
        import os
        model = self._model
        if (model.startswith(('/', '.', '~')) or os.sep in model) and (
            not os.path.exists(os.path.expanduser(model))):
          raise ModelFileNotFoundError(
              f'Hugging Face model directory {model!r} does not exist. Pass '
              'a local directory written by save_pretrained() or a Hub model '
              'id.') from e
      raise OSError(
          f'Could not build the {self._task or "(model-defined)"} pipeline '
          f'for model {self._model!r}: {e}. For a Hub id the workers need '
          'network access or a cache that has it (HF_HOME).') from e

  def run_inference(
      self,
      batch: Sequence[Any],
      pipeline: Any,
      inference_args: Optional[dict[str, Any]] = None
  ) -> Iterable[PredictionResult]:
    if not batch:
      return []
    task = self._task or getattr(pipeline, 'task', '') or ''
    if _is_text_task(task):
      for i, x in enumerate(batch):
        if not isinstance(x, (str, dict)):
          raise TypeError(
              f'The {task!r} pipeline takes text: example {i} is '
              f'{describe_value(x)}, not a str. Convert it in a preprocess '
              'step, e.g. handler.with_preprocess_fn(str).')
    predictions = self._inference_fn(batch, pipeline, inference_args or {})
    return to_results(batch, predictions, self._model or None)

  def update_model_path(self, model_path: Optional[str] = None):
    self._model = model_path or self._model

  def get_num_bytes(self, batch: Sequence[Any]) -> int:
    return sum(sys.getsizeof(x) for x in batch)

  def get_metrics_namespace(self) -> str:
    return 'BeamML_HuggingFacePipelineModelHandler'

  def __repr__(self):
    return (f'{type(self).__name__}(task={self._task!r}, '
            f'model={self._model!r})')


publish(globals(), 'runinference.huggingface_inference', alias=True)
