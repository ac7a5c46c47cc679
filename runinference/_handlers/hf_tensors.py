"""Hugging Face models on tensors: ``HuggingFaceModelHandlerKeyedTensor``
(dicts of tensors, e.g. tokenizer output) and ``HuggingFaceModelHandlerTensor``.

``transformers`` and ``torch`` are imported when a model loads. Within a
batch, examples run length-aware: shortest first, in sub-batches of at most
``max_tokens_per_batch`` padded tokens, results back in input order.
"""
from __future__ import annotations

import inspect
import logging
import os
from typing import Any, Callable, Iterable, Optional, Sequence

from ..exceptions import (InvalidInputError, ModelFileNotFoundError,
                          ModelSourceError)
from .._core.contract import ModelHandler
from .._core.naming import publish
from .._core.results import to_results
from .._core.types import PredictionResult
from . import sub_batches
from .common import (ConfigurationError, ConfigurationRuntimeError,
                     check_model_path, check_types, cuda_usable, parse_device,
                     require, stack_torch, torch_device)
from .hf_stacking import stack_keyed, tensor_bytes, tf_unbatch, to_hf_results
from .hf_tokenize import input_length

__all__ = [
    'HuggingFaceModelHandlerKeyedTensor',
    'HuggingFaceModelHandlerTensor',
]

_LOGGER = logging.getLogger('runinference.huggingface_inference')


def _torch():
  return require('torch', 'The Hugging Face handlers')


def _is_tensorflow_tensor(x: Any) -> bool:
  # By the value's type alone: TensorFlow is never imported to ask.
  return type(x).__module__.startswith('tensorflow')


def _looks_local(path: str) -> bool:
  return path.startswith(('/', '.', '~')) or os.sep in path


def load_pretrained(model_class: Any, model_uri: str, args: dict) -> Any:
  """``model_class.from_pretrained``, with a clear error for a missing
  directory or an unreachable Hub id."""
  try:
    return model_class.from_pretrained(model_uri, **args)
  except OSError as e:
    if _looks_local(model_uri) and not os.path.exists(
        os.path.expanduser(model_uri)):
      raise ModelFileNotFoundError(
          f'Hugging Face model directory {model_uri!r} does not exist. Pass '
          'a local directory written by save_pretrained() or a Hub model id.'
      ) from e
    offline = os.environ.get('HF_HUB_OFFLINE')
    raise ModelSourceError(
        f'Could not load Hugging Face model {model_uri!r} with '
        f'{getattr(model_class, "__name__", model_class)}.from_pretrained: '
        f'{e}. For a Hub id the workers need network access or a cache that '
        f'has it (HF_HOME); HF_HUB_OFFLINE={offline!r}.') from e


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
    device = torch_device(device, 'HuggingFaceModelHandlerKeyedTensor')
  device = _model_device(model, device)
  pad_token_id = getattr(getattr(model, 'config', None), 'pad_token_id', None)
  with torch.no_grad():
    inputs, lengths = stack_keyed(
        batch, device, pad_token_id, _accepts_attention_mask(model))
    predictions = model(**inputs, **(inference_args or {}))
  return to_hf_results(batch, predictions, model_id, lengths)


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
  return to_results(batch, tf_unbatch(tf, predictions), model_id)


def _default_inference_fn_torch(
    batch: Sequence[Any],
    model: Any,
    device: Any,
    inference_args: dict[str, Any],
    model_id: Optional[str] = None) -> Iterable[PredictionResult]:
  torch = _torch()
  who = 'HuggingFaceModelHandlerTensor'
  check_types(batch, lambda t: isinstance(t, torch.Tensor), who,
              'a torch.Tensor', 'For tokenizer output (a dict) use '
              'HuggingFaceModelHandlerKeyedTensor.')
  shapes = {tuple(t.shape) for t in batch}
  if len(shapes) > 1:
    raise InvalidInputError(
        f'{who} stacks a batch into one tensor, but the examples have shapes '
        f'{sorted(shapes)}. Pad them to one shape, or use '
        'HuggingFaceModelHandlerKeyedTensor with tokenizer dicts (padded per '
        'batch with an attention mask).')
  if isinstance(device, str):
    device = torch_device(device, who)
  with torch.no_grad():
    stacked = stack_torch(batch, who).to(_model_device(model, device))
    predictions = model(stacked, **(inference_args or {}))
  return to_hf_results(batch, predictions, model_id)


def _default_inference_fn_tensorflow(
    batch: Sequence[Any],
    model: Any,
    device: Any,
    inference_args: dict[str, Any],
    model_id: Optional[str] = None) -> Iterable[PredictionResult]:
  tf = require('tensorflow', 'HuggingFaceModelHandlerTensor',
               'for TensorFlow tensors')
  predictions = model(tf.stack(batch, axis=0), **(inference_args or {}))
  return to_results(batch, tf_unbatch(tf, predictions), model_id)


def _lengths(batch: Sequence[Any]) -> Optional[list[int]]:
  """Token lengths of the examples; None if some example has none (its
  type error is then raised by the inference fn)."""
  try:
    return [input_length(x) for x in batch]
  except Exception:  # pylint: disable=broad-except
    return None


class _HFModelHandler(ModelHandler):
  _model_location_attr = '_model_uri'
  _framework = ''
  _device = 'CPU'
  _inference_fn = None
  _model_config_args: dict = {}
  _budget: sub_batches.TokenBudget
  # The default inference fn per framework ('pt', 'tf'), set by subclasses.
  _default_fns: dict = {}

  def overlap_by_default(self) -> bool:
    return self._device == 'GPU' and cuda_usable()  # see _PytorchHandler

  def __init__(
      self,
      model_uri: str,
      model_class: Any,
      device: str = 'CPU',
      *,
      inference_fn: Optional[Callable[..., Iterable[PredictionResult]]] = None,
      load_model_args: Optional[dict[str, Any]] = None,
      max_tokens_per_batch: Optional[int] = None,
      **kwargs):
    super().__init__(**kwargs)
    if not model_uri or not model_class:
      raise ConfigurationRuntimeError(
          'Please provide both model_class and model_uri to load the model '
          '(e.g. model_uri=<dir or Hub id>, model_class=AutoModel); got '
          f'model_uri={model_uri!r} and model_class={model_class!r}.')
    self._model_uri = check_model_path(model_uri, 'Hugging Face model')
    self._model_class = model_class
    self._device = parse_device(device)
    if inference_fn is not None and not callable(inference_fn):
      raise ConfigurationError(
          f'inference_fn must be callable, got {inference_fn!r}.')
    self._inference_fn = inference_fn
    self._model_config_args = dict(load_model_args or {})
    self._budget = sub_batches.TokenBudget(max_tokens_per_batch)

  def load_model(self):
    model = load_pretrained(
        self._model_class, self._model_uri, self._model_config_args)
    if self._framework != 'tf' and callable(getattr(model, 'to', None)):
      if 'device_map' not in self._model_config_args:
        model.to(torch_device(self._device, type(self).__name__))
      if callable(getattr(model, 'requires_grad_', None)):
        model.requires_grad_(False)
      if callable(getattr(model, 'eval', None)):
        model.eval()
    return model

  def run_inference(self, batch, model, inference_args=None):
    if not batch:
      return []
    if not self._framework:  # the tensor handler follows the tensors' type
      self._framework = 'tf' if _is_tensorflow_tensor(batch[0]) else 'pt'
    fn = self._inference_fn or self._default_fns[self._framework]
    args = inference_args or {}

    def run(sub):
      return fn(sub, model, self._device, args, self._model_uri)

    lengths = None
    if self._inference_fn is None and self._framework == 'pt' and len(batch) > 1:
      lengths = _lengths(batch)
    if lengths is None:
      return run(batch)
    device = getattr(getattr(model, 'device', None), 'type', 'cpu')
    return self._budget.run(batch, lengths, device != 'cpu', run)

  def __repr__(self):
    return (f'{type(self).__name__}(model_uri={self._model_uri!r}, '
            f'model_class={getattr(self._model_class, "__name__", "?")})')


class HuggingFaceModelHandlerKeyedTensor(_HFModelHandler):
  """Runs a Hugging Face model on examples that are dicts of tensors (e.g.
  tokenizer output); each name is stacked (1-D sequences padded to the
  longest in the sub-batch) and passed as a keyword argument.

  Example::

    pcoll | RunInference(HuggingFaceModelHandlerKeyedTensor(
        'bert-base-uncased', AutoModelForMaskedLM, framework='pt'))
  """
  _default_fns = {
      'pt': _run_inference_torch_keyed_tensor,
      'tf': _run_inference_tensorflow_keyed_tensor
  }

  def __init__(
      self,
      model_uri: str,
      model_class: Any,
      framework: str = 'pt',
      device: str = 'CPU',
      *,
      inference_fn: Optional[Callable[..., Iterable[PredictionResult]]] = None,
      load_model_args: Optional[dict[str, Any]] = None,
      max_tokens_per_batch: Optional[int] = None,
      **kwargs):
    """
    Args:
      model_uri: a local directory (``save_pretrained``) or a Hub model id.
      model_class: e.g. ``AutoModel`` or ``AutoModelForSequenceClassification``.
      framework: ``'pt'`` (PyTorch, default) or ``'tf'``.
      device: ``'CPU'`` or ``'GPU'`` (CPU, with a warning, if no GPU).
      inference_fn: ``fn(batch, model, device, inference_args, model_id)``.
      load_model_args: keyword arguments of ``from_pretrained``.
      max_tokens_per_batch: most padded tokens (rows x longest) per model
        call. Default None: learned from the calls' times (per batch, the
        budget whose plan a fitted per-call cost predicts fastest), starting
        at 512 on the CPU, 65536 on a GPU. Applies to the default inference
        fn.
      kwargs: batching and sharing options of ``ModelHandler``, ``env_vars``.
    """
    if framework not in ('pt', 'tf'):
      raise ConfigurationError(
          f"framework must be 'pt' (PyTorch) or 'tf' (TensorFlow), got "
          f'{framework!r}.')
    self._framework = framework
    super().__init__(
        model_uri, model_class, device, inference_fn=inference_fn,
        load_model_args=load_model_args,
        max_tokens_per_batch=max_tokens_per_batch, **kwargs)

  def get_num_bytes(self, batch: Sequence[dict]) -> int:
    return sum(tensor_bytes(t) for x in batch for t in x.values())

  def get_metrics_namespace(self) -> str:
    return 'BeamML_HuggingFaceModelHandler_KeyedTensor'


class HuggingFaceModelHandlerTensor(_HFModelHandler):
  """Runs a Hugging Face model on tensor examples (stacked per batch); the
  framework (PyTorch or TensorFlow) follows the type of the tensors."""
  _default_fns = {
      'pt': _default_inference_fn_torch, 'tf': _default_inference_fn_tensorflow
  }

  def get_num_bytes(self, batch: Sequence[Any]) -> int:
    return sum(tensor_bytes(t) for t in batch)

  def get_metrics_namespace(self) -> str:
    return 'BeamML_HuggingFaceModelHandler_Tensor'


publish(globals(), 'runinference.huggingface_inference')
