"""TensorRT handler: numpy examples into a TensorRT engine on an NVIDIA GPU.

Import-compatible with ``apache_beam.ml.inference.tensorrt_inference``. This
module imports without TensorRT (so pipelines can be built on a machine
without a GPU); loading a model needs, on the worker: NVIDIA TensorRT 10+
(``pip install tensorrt``), a CUDA GPU and a CUDA build of PyTorch (used for
the device buffers and the stream, instead of cuda-python).

The engine comes from a serialized engine file (``engine_path``) or is built
on the worker from an ONNX file (``onnx_path``). Engines with a dynamic batch
dimension take any batch size; a static engine needs
``min_batch_size == max_batch_size == `` its batch size.
"""
from __future__ import annotations

import logging
import threading
from typing import Any, Callable, Iterable, Optional, Sequence

import numpy as np

from ..exceptions import ConfigurationError, InvalidInputError
from .common import (DeviceUnavailableError, ModelLoadError, read_model_bytes,
                     require, stack_numpy)
from .._core.contract import ModelHandler
from .._core.naming import publish
from .._core.results import to_results
from .._core.types import PredictionResult
from ..exceptions import TensorRTError  # noqa: F401  (re-exported)

__all__ = ['TensorRTEngine', 'TensorRTEngineHandlerNumPy']

_LOGGER = logging.getLogger('runinference.tensorrt_inference')
_WHO = 'TensorRTEngineHandlerNumPy'
MIN_TRT_MAJOR_VERSION = 10


def _trt():
  trt = require(
      'tensorrt', _WHO,
      '(NVIDIA TensorRT 10 or later, on a worker with a CUDA GPU)')
  try:
    major = int(str(trt.__version__).split('.')[0])
  except (AttributeError, ValueError):
    major = MIN_TRT_MAJOR_VERSION
  if major < MIN_TRT_MAJOR_VERSION:
    raise DeviceUnavailableError(
        f'{_WHO} needs TensorRT {MIN_TRT_MAJOR_VERSION} or later (its '
        f'tensor-name API); found {trt.__version__}. pip install -U tensorrt.')
  return trt


def _cuda_torch():
  torch = require('torch', _WHO, '(a CUDA build, for GPU buffers)')
  if not torch.cuda.is_available():
    raise DeviceUnavailableError(
        f'{_WHO} needs a CUDA GPU, but torch sees none (torch '
        f'{torch.__version__}, CUDA build: {torch.version.cuda}). Run on a '
        'GPU worker with a CUDA build of torch.')
  return torch


_TRT_LOGGER = None


def _logger(trt):
  global _TRT_LOGGER  # pylint: disable=global-statement
  if _TRT_LOGGER is None:
    _TRT_LOGGER = trt.Logger(trt.Logger.WARNING)
    trt.init_libnvinfer_plugins(_TRT_LOGGER, '')
  return _TRT_LOGGER


def _load_engine(engine_path: str):
  trt = _trt()
  data = read_model_bytes(
      engine_path, 'TensorRT engine',
      'build one with trtexec --onnx=model.onnx --saveEngine=model.trt, or '
      'pass onnx_path= to build it on the worker.')
  engine = trt.Runtime(_logger(trt)).deserialize_cuda_engine(data)
  if engine is None:
    raise ModelLoadError(
        f'{engine_path!r} is not an engine this TensorRT '
        f'({trt.__version__}) on this GPU can load. Engines are specific to '
        'the TensorRT version and GPU model they were built with: rebuild '
        'it on the worker type, or pass onnx_path=.')
  return engine


def _load_onnx(onnx_path: str):
  trt = _trt()
  data = read_model_bytes(onnx_path, 'ONNX model',
                          'export the model with torch.onnx.export or tf2onnx.')
  builder = trt.Builder(_logger(trt))
  network = builder.create_network(0)
  parser = trt.OnnxParser(network, _logger(trt))
  if not parser.parse(data):
    errors = '; '.join(
        str(parser.get_error(i)) for i in range(parser.num_errors))
    raise ModelLoadError(f'TensorRT could not parse {onnx_path!r}: {errors}')
  return network, builder


def _build_engine(network, builder, max_batch_size: Optional[int] = None):
  trt = _trt()
  config = builder.create_builder_config()
  dynamic = [
      network.get_input(i) for i in range(network.num_inputs)
      if -1 in tuple(network.get_input(i).shape)
  ]
  if dynamic:
    profile = builder.create_optimization_profile()
    top = max_batch_size or 1
    for tensor in dynamic:
      shape = tuple(tensor.shape)
      if any(d == -1 for d in shape[1:]):
        raise ConfigurationError(
            f'Input {tensor.name!r} has dynamic dimensions {shape} other '
            'than the batch; build the engine yourself with an optimization '
            'profile and pass engine_path=.')
      profile.set_shape(tensor.name, (1,) + shape[1:],
                        (max(1, top // 2),) + shape[1:], (top,) + shape[1:])
    config.add_optimization_profile(profile)
  plan = builder.build_serialized_network(network, config)
  if plan is None:
    raise TensorRTError('TensorRT failed to build an engine from the network.')
  return trt.Runtime(_logger(trt)).deserialize_cuda_engine(plan)


class _CudaBuffers:
  """Device memory and the stream of a ``TensorRTEngine``, through a CUDA
  build of torch: each buffer is ``(handle, device address)``."""
  def __init__(self):
    self._torch = _cuda_torch()
    self._stream = self._torch.cuda.Stream()

  def scope(self):
    return self._torch.cuda.stream(self._stream)

  def upload(self, array: np.ndarray) -> tuple:
    device = self._torch.from_numpy(array).to('cuda', non_blocking=True)
    return device, device.data_ptr()

  def empty(self, shape: tuple, dtype: np.dtype) -> tuple:
    torch_dtype = self._torch.from_numpy(np.empty(0, dtype)).dtype
    buffer = self._torch.empty(shape, dtype=torch_dtype, device='cuda')
    return buffer, buffer.data_ptr()

  def stream_handle(self) -> int:
    return self._stream.cuda_stream

  def synchronize(self) -> None:
    self._stream.synchronize()

  def download(self, handle) -> np.ndarray:
    return handle.cpu().numpy()


def _buffers():
  """The device buffers engines use (CUDA through torch)."""
  return _CudaBuffers()


class TensorRTEngine:
  """A TensorRT engine with its execution context; ``infer`` runs one batch
  (numpy in, numpy out) in device buffers."""
  def __init__(self, engine: Any):
    trt = _trt()
    self._buffers = _buffers()
    self.engine = engine
    self.context = engine.create_execution_context()
    self.context_lock = threading.RLock()
    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    self.input_names = [
        n for n in names
        if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT
    ]
    self.output_names = [n for n in names if n not in self.input_names]
    self._dtypes = {n: np.dtype(trt.nptype(engine.get_tensor_dtype(n)))
                    for n in names}

  def infer(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    buffers = self._buffers
    with self.context_lock, buffers.scope():
      keep = []
      for name in self.input_names:
        if name not in feeds:
          raise InvalidInputError(
              f'The engine input {name!r} was not fed; its inputs are '
              f'{self.input_names}.')
        array = np.ascontiguousarray(feeds[name], dtype=self._dtypes[name])
        declared = tuple(self.engine.get_tensor_shape(name))
        if -1 not in declared and tuple(array.shape) != declared:
          raise InvalidInputError(
              f'The engine was built for input {name!r} of shape {declared}, '
              f'got a batch of shape {array.shape}. Set min_batch_size = '
              f'max_batch_size = {declared[0]}, or build the engine with a '
              'dynamic batch dimension.')
        handle, address = buffers.upload(array)
        keep.append(handle)
        self.context.set_input_shape(name, tuple(array.shape))
        self.context.set_tensor_address(name, address)
      outputs = []
      for name in self.output_names:
        shape = tuple(self.context.get_tensor_shape(name))
        handle, address = buffers.empty(shape, self._dtypes[name])
        outputs.append(handle)
        self.context.set_tensor_address(name, address)
      if not self.context.execute_async_v3(buffers.stream_handle()):
        raise TensorRTError('TensorRT execution failed (see the TensorRT log).')
      buffers.synchronize()
      return [buffers.download(o) for o in outputs]

  def get_engine_attrs(self):
    return (self.engine, self.context, self.context_lock, self.input_names,
            self.output_names)


def _default_tensorRT_inference_fn(  # pylint: disable=invalid-name
    batch: Sequence[np.ndarray],
    engine: TensorRTEngine,
    inference_args: Optional[dict[str, Any]] = None
) -> Iterable[PredictionResult]:
  """Stacks the batch into the engine's first input; each example's
  inference is the list of its rows of every output."""
  stacked = stack_numpy(batch, _WHO)
  outputs = engine.infer({engine.input_names[0]: stacked})
  predictions = [[out[i] for out in outputs] for i in range(len(batch))]
  return to_results(batch, predictions)


class TensorRTEngineHandlerNumPy(ModelHandler):
  """Runs a TensorRT engine on numpy examples (one row of the engine's first
  input each).

  Example::

    pcoll | RunInference(TensorRTEngineHandlerNumPy(
        min_batch_size=1, max_batch_size=8, engine_path='gs://b/model.trt'))
  """
  engine_path: Optional[str] = None
  onnx_path: Optional[str] = None

  def overlap_by_default(self) -> bool:
    return True  # the model runs on the GPU; the CPU is free meanwhile

  def __init__(
      self,
      min_batch_size: int,
      max_batch_size: int,
      *,
      inference_fn: Callable[..., Iterable[PredictionResult]] = (
          _default_tensorRT_inference_fn),
      large_model: bool = False,
      model_copies: Optional[int] = None,
      max_batch_duration_secs: Optional[float] = None,
      engine_path: Optional[str] = None,
      onnx_path: Optional[str] = None,
      **kwargs):
    """
    Args:
      min_batch_size, max_batch_size: batch size bounds (a static engine
        needs both equal to its batch size).
      inference_fn: ``fn(batch, engine, inference_args)``.
      engine_path: a serialized TensorRT engine (``.trt``/``.plan``).
      onnx_path: an ONNX model to build the engine from on the worker.
      kwargs: other options of ``ModelHandler``, ``env_vars``.
    """
    super().__init__(
        min_batch_size=min_batch_size,
        max_batch_size=max_batch_size,
        max_batch_duration_secs=max_batch_duration_secs,
        large_model=large_model,
        model_copies=model_copies,
        **kwargs)
    if bool(engine_path) == bool(onnx_path):
      raise ConfigurationError(
          f'{_WHO} needs exactly one of engine_path= (a serialized TensorRT '
          'engine) or onnx_path= (an ONNX model to build the engine from); '
          f'got engine_path={engine_path!r}, onnx_path={onnx_path!r}.')
    self.inference_fn = inference_fn
    self._max_batch_size = max_batch_size
    if engine_path:
      self.engine_path = engine_path
    else:
      self.onnx_path = onnx_path

  def load_model(self) -> TensorRTEngine:
    if self.engine_path:
      return TensorRTEngine(_load_engine(self.engine_path))
    network, builder = self.load_onnx()
    return self.build_engine(network, builder)

  def load_onnx(self):
    """Parses ``onnx_path`` into a TensorRT network; returns it and its
    builder."""
    return _load_onnx(self.onnx_path)

  def build_engine(self, network, builder) -> TensorRTEngine:
    """Builds an engine for the network (dynamic batch up to
    max_batch_size)."""
    return TensorRTEngine(
        _build_engine(network, builder, getattr(self, '_max_batch_size', None)))

  def run_inference(self, batch, engine, inference_args=None):
    if not batch:
      return []
    return self.inference_fn(batch, engine, inference_args)

  def get_num_bytes(self, batch: Sequence[np.ndarray]) -> int:
    return sum(getattr(x, 'nbytes', 0) for x in batch)

  def get_metrics_namespace(self) -> str:
    return 'BeamML_TensorRT'

  @property
  def _model_location_attr(self) -> str:  # type: ignore[override]
    # A serialized engine or an ONNX model, whichever was given.
    return 'engine_path' if self.engine_path else 'onnx_path'

  def validate_inference_args(self, inference_args: Optional[dict[str, Any]]):
    if inference_args:
      raise ConfigurationError(
          f'{_WHO} takes no inference_args (a TensorRT engine has no extra '
          f'call arguments); got {sorted(inference_args)}.')


publish(globals(), 'runinference.tensorrt_inference', alias=True)
