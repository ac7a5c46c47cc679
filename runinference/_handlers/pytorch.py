"""PyTorch handlers: a tensor per example, or a dict of tensors per example.

``torch`` is imported when a handler is built, so this module imports without
it (``pip install 'runinference[pytorch]'`` on the workers)."""
from __future__ import annotations

import logging
import pickle
from typing import TYPE_CHECKING, Any, Callable, Iterable, Optional, Sequence

from ..exceptions import ConfigurationTypeError
from .._core.contract import MatrixPredictor, ModelHandler
from .._core.naming import publish
from .._core.results import to_results
from .._core.types import PredictionResult
from .common import (ConfigurationRuntimeError, check_types,
                     corrupt_model_error, cuda_usable, open_model_file,
                     parse_device, read_model_bytes, require, stack_torch,
                     warn_if_others_can_write)

if TYPE_CHECKING:
  import torch

__all__ = [
    'PytorchModelHandlerTensor',
    'PytorchModelHandlerKeyedTensor',
    'default_tensor_inference_fn',
    'default_keyed_tensor_inference_fn',
    'make_tensor_model_fn',
    'make_keyed_tensor_model_fn',
]

_LOGGER = logging.getLogger('runinference.pytorch_inference')
_WHAT = 'PyTorch model'
_HOW_TO_SAVE = ("torch.save(model.state_dict(), 'model.pt') (with "
                "model_class=...), or torch.jit.save(torch.jit.script(model), "
                "'model.pt') for torch_script_model_path.")


def _torch():
  return require('torch', 'The PyTorch handlers')


def _to(t, device):
  return t if t.device == device else t.to(device)


def _stack(batch: Sequence[Any], device, who: str = 'PytorchModelHandlerTensor'):
  return _to(stack_torch(batch, who), device)


def default_tensor_inference_fn(
    batch: Sequence[torch.Tensor],
    model: torch.nn.Module,
    device,
    inference_args: Optional[dict[str, Any]] = None,
    model_id: Optional[str] = None) -> Iterable[PredictionResult]:
  """Stacks the batch, calls ``model(batch, **inference_args)``."""
  with _torch().no_grad():
    predictions = model(_stack(batch, device), **(inference_args or {}))
    return to_results(batch, predictions, model_id)


def make_tensor_model_fn(model_fn: str) -> Callable:
  """An inference fn that calls ``model.<model_fn>`` instead of forward."""
  def attr_fn(batch, model, device, inference_args=None, model_id=None):
    with _torch().no_grad():
      predictions = getattr(model, model_fn)(
          _stack(batch, device), **(inference_args or {}))
      return to_results(batch, predictions, model_id)

  return attr_fn


def _stack_keyed(batch, device) -> dict:
  who = 'PytorchModelHandlerKeyedTensor'
  check_types(batch, lambda x: isinstance(x, dict), who,
              'a dict of tensors', 'Use PytorchModelHandlerTensor for plain '
              'tensors.')
  names = list(batch[0]) if batch else []
  return {
      name: _stack([x[name] for x in batch], device, f'{who} (input {name!r})')
      for name in names
  }


def default_keyed_tensor_inference_fn(
    batch: Sequence[dict[str, torch.Tensor]],
    model: torch.nn.Module,
    device,
    inference_args: Optional[dict[str, Any]] = None,
    model_id: Optional[str] = None) -> Iterable[PredictionResult]:
  """Stacks each named input, calls ``model(**inputs, **inference_args)``."""
  with _torch().no_grad():
    predictions = model(
        **_stack_keyed(batch, device), **(inference_args or {}))
    return to_results(batch, predictions, model_id)


def make_keyed_tensor_model_fn(model_fn: str) -> Callable:
  """Keyed-tensor inference fn calling ``model.<model_fn>``."""
  def attr_fn(batch, model, device, inference_args=None, model_id=None):
    with _torch().no_grad():
      predictions = getattr(model, model_fn)(
          **_stack_keyed(batch, device), **(inference_args or {}))
      return to_results(batch, predictions, model_id)

  return attr_fn


def _is_safetensors(path: Optional[str]) -> bool:
  return bool(path) and path.lower().endswith('.safetensors')  # type: ignore[union-attr]


def _load_safetensors(path: str, load_model_args: dict) -> dict:
  """A state dict from a ``.safetensors`` file (tensors only: no pickle,
  so loading runs no code from the file)."""
  if load_model_args:
    raise ConfigurationRuntimeError(
        f'load_model_args {sorted(load_model_args)} are torch.load '
        f'arguments; the safetensors file {path!r} is read with '
        'safetensors.torch.load, which takes none. Drop load_model_args.')
  st = require('safetensors.torch', 'PytorchModelHandler',
               'to load .safetensors state dicts')
  data = read_model_bytes(path, _WHAT, "safetensors.torch.save_file("
                          "model.state_dict(), 'model.safetensors')")
  try:
    return st.load(data)
  except Exception as e:  # pylint: disable=broad-except
    raise corrupt_model_error(path, _WHAT, e) from e


def _load_model(model_class, state_dict_path, device, model_params,
                torch_script_model_path, load_model_args):
  """Builds and loads the model on ``device``; returns ``(model, device)``."""
  torch = _torch()
  if device.type == 'cuda' and not cuda_usable():
    logging.warning(
        "Model handler specified a 'GPU' device, but GPUs are not available. "
        'Switching to CPU.')
    device = torch.device('cpu')
  path = torch_script_model_path or state_dict_path
  if not torch_script_model_path and _is_safetensors(state_dict_path):
    model = model_class(**model_params)
    model.load_state_dict(_load_safetensors(path, load_model_args))
    model.requires_grad_(False)
    model.to(device)
    model.eval()
    return model, device
  warn_if_others_can_write(path, _WHAT)
  try:
    with open_model_file(path, _WHAT, _HOW_TO_SAVE) as f:
      if torch_script_model_path:
        model = torch.jit.load(f, map_location=device, **load_model_args)
      else:
        model = model_class(**model_params)
        model.load_state_dict(
            torch.load(f, map_location=device, **load_model_args))
        model.requires_grad_(False)
  except (pickle.UnpicklingError, EOFError) as e:
    raise corrupt_model_error(path, _WHAT, e) from e
  except RuntimeError as e:
    if 'PytorchStreamReader' in str(e) or 'corrupt' in str(e):
      raise corrupt_model_error(path, _WHAT, e) from e
    if device.type == 'cuda':
      _LOGGER.warning(
          'Loading the model onto the GPU failed; retrying on the CPU.',
          exc_info=True)
      return _load_model(model_class, state_dict_path, torch.device('cpu'),
                         model_params, torch_script_model_path,
                         load_model_args)
    raise
  model.to(device)
  model.eval()
  return model, device


def _forward_matrix(model, features, inference_args: dict):
  import numpy
  torch = _torch()
  param = next(iter(model.parameters()), None)
  device = param.device if param is not None else torch.device('cpu')
  dtype = (param.dtype if param is not None and param.is_floating_point()
           else torch.float32)
  with torch.no_grad():
    tensor = torch.from_numpy(numpy.ascontiguousarray(features)).to(
        device=device, dtype=dtype)
    return model(tensor, **inference_args)


class _PytorchHandler(ModelHandler):
  _default_fn: Callable = staticmethod(default_tensor_inference_fn)

  def overlap_by_default(self) -> bool:
    # On a GPU the CPU is free while the model runs; on the CPU torch's
    # threads already fill the cores (see docs/performance.md).
    return self._device.type == 'cuda' and cuda_usable()

  def __init__(
      self,
      state_dict_path: Optional[str] = None,
      model_class: Optional[Callable[..., torch.nn.Module]] = None,
      model_params: Optional[dict[str, Any]] = None,
      device: str = 'CPU',
      *,
      inference_fn: Optional[Callable] = None,
      torch_script_model_path: Optional[str] = None,
      load_model_args: Optional[dict[str, Any]] = None,
      **kwargs):
    """
    Args:
      state_dict_path: path of a saved ``state_dict`` (with ``model_class``):
        a ``torch.save`` file, or a ``*.safetensors`` file (preferred: no
        pickle).
      model_class: the ``torch.nn.Module`` subclass to build.
      model_params: keyword arguments for ``model_class``.
      device: ``'CPU'`` or ``'GPU'`` (falls back to the CPU, with a warning,
        when no GPU is usable).
      inference_fn: ``fn(batch, model, device, inference_args, model_id)``.
      torch_script_model_path: a TorchScript file, instead of a state dict.
      load_model_args: extra arguments for ``torch.load`` / ``torch.jit.load``.
      kwargs: batching and sharing options of ``ModelHandler``, ``env_vars``.
    """
    super().__init__(**kwargs)
    torch = _torch()
    missing = (
        'A {0} has been supplied to the model handler, but the required {1} '
        'is missing. Please provide the {1} in order to successfully load '
        'the {0}.')
    if state_dict_path and not model_class:
      raise ConfigurationRuntimeError(missing.format('state_dict_path', 'model_class'))
    if model_class and not state_dict_path:
      raise ConfigurationRuntimeError(missing.format('model_class', 'state_dict_path'))
    if torch_script_model_path and state_dict_path:
      raise ConfigurationRuntimeError(
          'Please specify either torch_script_model_path or '
          '(state_dict_path, model_class) to successfully load the model, '
          'not both.')
    if not torch_script_model_path and not state_dict_path:
      raise ConfigurationRuntimeError(
          'No model given: pass state_dict_path and model_class, or '
          'torch_script_model_path.')
    self._device = torch.device(
        'cuda' if parse_device(device) == 'GPU' else 'cpu')
    if self._device.type == 'cuda':
      logging.info('Device is set to CUDA')
    self._state_dict_path = state_dict_path
    self._model_class = model_class
    self._model_params = dict(model_params or {})
    self._inference_fn = inference_fn or self._default_fn
    self._torch_script_model_path = torch_script_model_path
    self._load_model_args = dict(load_model_args or {})

  def load_model(self) -> torch.nn.Module:
    model, self._device = _load_model(
        model_class=self._model_class,
        state_dict_path=self._state_dict_path,
        device=self._device,
        model_params=self._model_params,
        torch_script_model_path=self._torch_script_model_path,
        load_model_args=self._load_model_args)
    return model

  @property
  def _model_location_attr(self) -> str:  # type: ignore[override]
    # The model is a TorchScript file or a state dict, whichever was given.
    if self._torch_script_model_path:
      return '_torch_script_model_path'
    return '_state_dict_path'

  @property
  def _model_id(self) -> Optional[str]:
    return self.model_location

  def run_inference(self, batch, model, inference_args=None):
    if not batch:
      return []
    return self._inference_fn(
        batch, model, self._device, inference_args or {}, self._model_id)

  def get_metrics_namespace(self) -> str:
    return 'BeamML_PyTorch'

  def validate_inference_args(self, inference_args):
    pass


class PytorchModelHandlerTensor(_PytorchHandler):
  """Runs a PyTorch model on ``torch.Tensor`` examples (stacked per batch).

  Examples of different shapes in one batch are run as separate same-shape
  batches instead of failing in ``torch.stack``.
  """

  def get_num_bytes(self, batch: Sequence[torch.Tensor]) -> int:
    return sum(t.element_size() * t.nelement() for t in batch)

  def matrix_predictor(self) -> MatrixPredictor:
    """``model(matrix)`` under ``no_grad`` on the model's device and dtype;
    TypeError for a custom ``inference_fn`` (it takes tensors per example)."""
    if self._inference_fn is not default_tensor_inference_fn:
      raise ConfigurationTypeError(
          'PytorchModelHandlerTensor offers the whole-matrix path only with '
          'its default inference_fn (model(matrix)); for a custom one pass '
          'RunInferenceColumnar(..., predict_fn=lambda model, matrix, '
          'inference_args: ...) that calls the model on the feature matrix '
          '(a numpy array) yourself.')
    return MatrixPredictor(_forward_matrix)


class PytorchModelHandlerKeyedTensor(_PytorchHandler):
  """Runs a PyTorch model on examples that are ``dict[str, torch.Tensor]``
  (e.g. tokenizer output); each name is stacked and passed as a keyword."""
  _default_fn = staticmethod(default_keyed_tensor_inference_fn)

  def get_num_bytes(self, batch: Sequence[dict]) -> int:
    return sum(
        t.element_size() * t.nelement() for x in batch for t in x.values())


publish(globals(), 'runinference.pytorch_inference', alias=True)
