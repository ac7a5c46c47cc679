"""PyTorch handlers: a tensor per example, or a dict of tensors per example."""
from __future__ import annotations

import logging
from typing import Any, Callable, Iterable, Optional, Sequence

import torch

from .._core.contract import MatrixPredictor, ModelHandler
from .._core.naming import publish
from .._core.results import check_file, to_results
from .._core.types import PredictionResult

__all__ = [
    'PytorchModelHandlerTensor',
    'PytorchModelHandlerKeyedTensor',
    'default_tensor_inference_fn',
    'default_keyed_tensor_inference_fn',
    'make_tensor_model_fn',
    'make_keyed_tensor_model_fn',
]

_LOGGER = logging.getLogger('runinference.pytorch_inference')


def _cuda_usable() -> bool:
  if not torch.cuda.is_available():
    return False
  try:
    torch.empty(1, device='cuda')
    return True
  except Exception:  # pylint: disable=broad-except
    _LOGGER.warning('CUDA is present but unusable', exc_info=True)
    return False


def _parse_device(device: str) -> torch.device:
  if not isinstance(device, str) or device.upper() not in ('CPU', 'GPU'):
    raise ValueError(f"device must be 'CPU' or 'GPU', got {device!r}.")
  return torch.device('cuda' if device.upper() == 'GPU' else 'cpu')


def _stack(tensors: Sequence[Any], where: str) -> torch.Tensor:
  try:
    return torch.stack(list(tensors))
  except TypeError as e:
    bad = next((t for t in tensors if not isinstance(t, torch.Tensor)), None)
    raise TypeError(
        f'{e}. {where} expects torch.Tensor examples, got '
        f'{type(bad).__name__}: {bad!r:.100}. Convert in a preprocess fn, '
        'e.g. handler.with_preprocess_fn(torch.as_tensor).') from e


def _to(t: torch.Tensor, device) -> torch.Tensor:
  return t if t.device == device else t.to(device)


def default_tensor_inference_fn(
    batch: Sequence[torch.Tensor],
    model: torch.nn.Module,
    device,
    inference_args: Optional[dict[str, Any]] = None,
    model_id: Optional[str] = None) -> Iterable[PredictionResult]:
  """Stacks the batch, calls ``model(batch, **inference_args)``."""
  with torch.no_grad():
    stacked = _to(_stack(batch, 'PytorchModelHandlerTensor'), device)
    predictions = model(stacked, **(inference_args or {}))
    return to_results(batch, predictions, model_id)


def make_tensor_model_fn(model_fn: str) -> Callable:
  """An inference fn that calls ``model.<model_fn>`` instead of forward."""
  def attr_fn(batch, model, device, inference_args=None, model_id=None):
    with torch.no_grad():
      stacked = _to(_stack(batch, 'PytorchModelHandlerTensor'), device)
      predictions = getattr(model, model_fn)(stacked, **(inference_args or {}))
      return to_results(batch, predictions, model_id)

  return attr_fn


def _stack_keyed(batch, device) -> dict:
  if not all(isinstance(x, dict) for x in batch):
    bad = next(x for x in batch if not isinstance(x, dict))
    raise TypeError(
        'PytorchModelHandlerKeyedTensor expects a dict of tensors per '
        f'example, got {type(bad).__name__}. Use PytorchModelHandlerTensor '
        'for plain tensors.')
  names = list(batch[0]) if batch else []
  return {
      name: _to(_stack([x[name] for x in batch], f'input {name!r}'), device)
      for name in names
  }


def default_keyed_tensor_inference_fn(
    batch: Sequence[dict[str, torch.Tensor]],
    model: torch.nn.Module,
    device,
    inference_args: Optional[dict[str, Any]] = None,
    model_id: Optional[str] = None) -> Iterable[PredictionResult]:
  """Stacks each named input, calls ``model(**inputs, **inference_args)``."""
  with torch.no_grad():
    predictions = model(
        **_stack_keyed(batch, device), **(inference_args or {}))
    return to_results(batch, predictions, model_id)


def make_keyed_tensor_model_fn(model_fn: str) -> Callable:
  """Keyed-tensor inference fn calling ``model.<model_fn>``."""
  def attr_fn(batch, model, device, inference_args=None, model_id=None):
    with torch.no_grad():
      predictions = getattr(model, model_fn)(
          **_stack_keyed(batch, device), **(inference_args or {}))
      return to_results(batch, predictions, model_id)

  return attr_fn


def _load_model(model_class, state_dict_path, device, model_params,
                torch_script_model_path, load_model_args):
  """Builds and loads the model on ``device``; returns ``(model, device)``."""
  if device.type == 'cuda' and not _cuda_usable():
    logging.warning(
        "Model handler specified a 'GPU' device, but GPUs are not available. "
        'Switching to CPU.')
    device = torch.device('cpu')
  path = torch_script_model_path or state_dict_path
  check_file(path, 'PyTorch model')
  from apache_beam.io.filesystems import FileSystems
  try:
    with FileSystems.open(path, 'rb') as f:
      if torch_script_model_path:
        model = torch.jit.load(f, map_location=device, **load_model_args)
      else:
        model = model_class(**model_params)
        state = torch.load(f, map_location=device, **load_model_args)
        model.load_state_dict(state)
        model.requires_grad_(False)
  except RuntimeError:
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
      state_dict_path: path of a saved ``state_dict`` (with ``model_class``).
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
    missing = (
        'A {0} has been supplied to the model handler, but the required {1} '
        'is missing. Please provide the {1} in order to successfully load '
        'the {0}.')
    if state_dict_path and not model_class:
      raise RuntimeError(missing.format('state_dict_path', 'model_class'))
    if model_class and not state_dict_path:
      raise RuntimeError(missing.format('model_class', 'state_dict_path'))
    if torch_script_model_path and state_dict_path:
      raise RuntimeError(
          'Please specify either torch_script_model_path or '
          '(state_dict_path, model_class) to successfully load the model, '
          'not both.')
    if not torch_script_model_path and not state_dict_path:
      raise RuntimeError(
          'No model given: pass state_dict_path and model_class, or '
          'torch_script_model_path.')
    self._device = _parse_device(device)
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

  def update_model_path(self, model_path: Optional[str] = None):
    if not model_path:
      return
    if self._torch_script_model_path:
      self._torch_script_model_path = model_path
    else:
      self._state_dict_path = model_path

  @property
  def model_location(self) -> Optional[str]:
    return self._torch_script_model_path or self._state_dict_path

  _model_id = model_location

  def run_inference(
      self,
      batch: Sequence[Any],
      model: torch.nn.Module,
      inference_args: Optional[dict[str, Any]] = None
  ) -> Iterable[PredictionResult]:
    if not batch:
      return []
    return self._inference_fn(
        batch, model, self._device, inference_args or {}, self._model_id)

  def get_metrics_namespace(self) -> str:
    return 'BeamML_PyTorch'

  def validate_inference_args(self, inference_args):
    pass

  def __repr__(self):
    return f'{type(self).__name__}(model={self._model_id!r})'


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
      raise TypeError(
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
