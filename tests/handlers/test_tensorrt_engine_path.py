"""The TensorRT engine path on the CPU: a stand-in ``tensorrt`` module (the
real one needs a CUDA GPU, which this machine lacks) and host-memory device
buffers, so every line of ``TensorRTEngineHandlerNumPy`` outside TensorRT's
own engine call runs: loading an engine file, building one from ONNX,
optimization profiles, tensor names/modes/dtypes/shapes, feeding inputs by
device address, reading outputs back, and every error on the way.

The stand-in engine computes ``y = x @ [2, 3]`` by reading and writing the
buffers at the addresses the handler hands it, as a real engine does."""
from __future__ import annotations

import contextlib
import ctypes
import sys
import types

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.testing.util import assert_that, equal_to

from runinference import tensorrt_inference
from runinference.base import RunInference
from runinference.exceptions import (ConfigurationError,
                                     DeviceUnavailableError, InvalidInputError,
                                     ModelLoadError, TensorRTError)
from runinference.tensorrt_inference import (TensorRTEngine,
                                             TensorRTEngineHandlerNumPy)

WEIGHTS = np.array([[2.0], [3.0]], np.float32)


def _view(address: int, shape: tuple) -> np.ndarray:
  size = int(np.prod(shape))
  return np.ctypeslib.as_array(
      (ctypes.c_float * size).from_address(address)).reshape(shape)


class _Context:
  def __init__(self, engine):
    self.engine = engine
    self.shapes: dict = {}
    self.addresses: dict = {}

  def set_input_shape(self, name, shape):
    self.shapes[name] = shape

  def set_tensor_address(self, name, address):
    self.addresses[name] = address

  def get_tensor_shape(self, name):
    return (self.shapes['x'][0], 1) if name == 'y' else self.shapes[name]

  def execute_async_v3(self, stream):
    x = _view(self.addresses['x'], self.shapes['x'])
    if np.isnan(x).any():
      return False  # as a real engine reports a failed execution
    _view(self.addresses['y'], self.get_tensor_shape('y'))[:] = x @ WEIGHTS
    return True


class _Engine:
  num_io_tensors = 2

  def __init__(self, batch: int):
    self.batch = batch  # -1: dynamic

  def get_tensor_name(self, i):
    return ('x', 'y')[i]

  def get_tensor_mode(self, name):
    return 'INPUT' if name == 'x' else 'OUTPUT'

  def get_tensor_dtype(self, name):
    return 'float'

  def get_tensor_shape(self, name):
    return (self.batch, 2) if name == 'x' else (self.batch, 1)

  def create_execution_context(self):
    return _Context(self)


class _Input:
  def __init__(self, name, shape):
    self.name, self.shape = name, shape


class _Network:
  def __init__(self):
    self.inputs: list = []

  @property
  def num_inputs(self):
    return len(self.inputs)

  def get_input(self, i):
    return self.inputs[i]


def fake_tensorrt(version: str = '10.3.0', build_fails: bool = False):
  """A module with the part of TensorRT 10's Python API the handler uses."""
  trt = types.ModuleType('tensorrt')
  trt.__version__ = version
  trt.built = []  # (max batch of the optimization profile)

  class Logger:
    WARNING = 2

    def __init__(self, level):
      self.level = level

  class Runtime:
    def __init__(self, logger):
      self.logger = logger

    def deserialize_cuda_engine(self, data):
      kind, _, batch = bytes(data).partition(b':')
      return _Engine(int(batch)) if kind == b'FAKE-ENGINE' else None

  class Profile:
    def __init__(self):
      self.shapes = {}

    def set_shape(self, name, low, opt, high):
      self.shapes[name] = (low, opt, high)

  class Config:
    def __init__(self):
      self.profiles = []

    def add_optimization_profile(self, profile):
      self.profiles.append(profile)

  class Builder:
    def __init__(self, logger):
      self.logger = logger

    def create_network(self, flags):
      return _Network()

    def create_builder_config(self):
      return Config()

    def create_optimization_profile(self):
      return Profile()

    def build_serialized_network(self, network, config):
      if build_fails:
        return None
      high = [p.shapes['x'][2][0] for p in config.profiles]
      trt.built.append(high)
      return b'FAKE-ENGINE:-1'

  class OnnxParser:
    def __init__(self, network, logger):
      self.network, self.errors = network, []

    def parse(self, data):
      kind, _, dims = bytes(data).partition(b':')
      if kind != b'FAKE-ONNX':
        self.errors = ['not an ONNX model', 'no graph']
        return False
      shape = tuple(int(d) for d in dims.split(b','))
      self.network.inputs.append(_Input('x', shape))
      return True

    @property
    def num_errors(self):
      return len(self.errors)

    def get_error(self, i):
      return self.errors[i]

  trt.Logger = Logger
  trt.Runtime = Runtime
  trt.Builder = Builder
  trt.OnnxParser = OnnxParser
  trt.TensorIOMode = types.SimpleNamespace(INPUT='INPUT', OUTPUT='OUTPUT')
  trt.nptype = lambda dtype: {'float': np.float32}[dtype]
  trt.init_libnvinfer_plugins = lambda logger, namespace: None
  return trt


class HostBuffers:
  """Device buffers in host memory (the CUDA ones need a GPU)."""
  def scope(self):
    return contextlib.nullcontext()

  def upload(self, array):
    array = np.ascontiguousarray(array)
    return array, array.ctypes.data

  def empty(self, shape, dtype):
    array = np.zeros(shape, dtype)
    return array, array.ctypes.data

  def stream_handle(self):
    return 0

  def synchronize(self):
    pass

  def download(self, handle):
    return handle.copy()


@pytest.fixture
def trt(monkeypatch):
  module = fake_tensorrt()
  monkeypatch.setitem(sys.modules, 'tensorrt', module)
  monkeypatch.setattr(tensorrt_inference, '_buffers', HostBuffers)
  return module


def _file(tmp_path, name, data: bytes) -> str:
  path = tmp_path / name
  path.write_bytes(data)
  return str(path)


def _rows(n):
  return [np.array([i, 1], np.float32) for i in range(n)]


def _first(result) -> float:
  return float(result.inference[0][0])


@pytest.mark.parametrize('source', ['engine', 'onnx'])
def test_a_pipeline_runs_on_an_engine_file_or_one_built_from_onnx(
    trt, tmp_path, source):
  if source == 'engine':
    handler = TensorRTEngineHandlerNumPy(
        1, 4, engine_path=_file(tmp_path, 'm.trt', b'FAKE-ENGINE:-1'))
  else:
    handler = TensorRTEngineHandlerNumPy(
        1, 4, onnx_path=_file(tmp_path, 'm.onnx', b'FAKE-ONNX:-1,2'))
  with beam.Pipeline() as p:
    out = (p | beam.Create(_rows(6)) | RunInference(handler)
           | beam.Map(_first))
    assert_that(out, equal_to([2.0 * i + 3.0 for i in range(6)]))
  if source == 'onnx':  # the profile spans batches up to max_batch_size
    assert trt.built and all(high == [4] for high in trt.built)


def test_a_static_engine_takes_only_its_batch_size(trt, tmp_path):
  path = _file(tmp_path, 'static.trt', b'FAKE-ENGINE:2')
  engine = TensorRTEngineHandlerNumPy(2, 2, engine_path=path).load_model()
  out = tensorrt_inference._default_tensorRT_inference_fn(_rows(2), engine)
  assert [_first(r) for r in out] == [3.0, 5.0]
  with pytest.raises(InvalidInputError, match='min_batch_size = max_batch_size = 2'):
    engine.infer({'x': np.stack(_rows(3))})


def test_an_input_that_is_not_fed_is_named(trt, tmp_path):
  engine = TensorRTEngine(_Engine(-1))
  with pytest.raises(InvalidInputError, match="input 'x' was not fed"):
    engine.infer({'z': np.stack(_rows(2))})
  assert engine.get_engine_attrs()[3:] == (['x'], ['y'])


def test_a_failed_execution_is_a_dead_letter(trt, tmp_path):
  handler = TensorRTEngineHandlerNumPy(
      1, 1, engine_path=_file(tmp_path, 'm.trt', b'FAKE-ENGINE:-1'))
  rows = _rows(3)
  rows[1] = np.array([np.nan, 1], np.float32)
  with beam.Pipeline() as p:
    main, dlq = (p | beam.Create(rows)
                 | RunInference(handler).with_exception_handling())
    assert_that(main | beam.Map(_first), equal_to([3.0, 7.0]), label='good')
    assert_that(dlq.failed_inferences | beam.Map(
        lambda r: 'TensorRT execution failed' in repr(r)),
                equal_to([True]), label='dead')


def test_an_engine_this_tensorrt_cannot_load(trt, tmp_path):
  handler = TensorRTEngineHandlerNumPy(
      1, 4, engine_path=_file(tmp_path, 'm.trt', b'an engine of TRT 8'))
  with pytest.raises(ModelLoadError, match='rebuild it on the worker type'):
    handler.load_model()


def test_an_onnx_file_tensorrt_cannot_parse_lists_its_errors(trt, tmp_path):
  handler = TensorRTEngineHandlerNumPy(
      1, 4, onnx_path=_file(tmp_path, 'm.onnx', b'garbage'))
  with pytest.raises(ModelLoadError,
                     match='not an ONNX model; no graph'):
    handler.load_model()


def test_dynamic_dimensions_beyond_the_batch_are_refused(trt, tmp_path):
  handler = TensorRTEngineHandlerNumPy(
      1, 4, onnx_path=_file(tmp_path, 'm.onnx', b'FAKE-ONNX:-1,-1'))
  with pytest.raises(ConfigurationError, match='other than the batch'):
    handler.load_model()


def test_a_build_that_fails_is_an_error(monkeypatch, tmp_path):
  monkeypatch.setitem(sys.modules, 'tensorrt',
                      fake_tensorrt(build_fails=True))
  monkeypatch.setattr(tensorrt_inference, '_buffers', HostBuffers)
  handler = TensorRTEngineHandlerNumPy(
      1, 4, onnx_path=_file(tmp_path, 'm.onnx', b'FAKE-ONNX:-1,2'))
  with pytest.raises(TensorRTError, match='failed to build an engine'):
    handler.load_model()


def test_tensorrt_older_than_10_is_refused(monkeypatch, tmp_path):
  monkeypatch.setitem(sys.modules, 'tensorrt', fake_tensorrt('8.6.1'))
  handler = TensorRTEngineHandlerNumPy(
      1, 4, engine_path=_file(tmp_path, 'm.trt', b'FAKE-ENGINE:-1'))
  with pytest.raises(DeviceUnavailableError, match='TensorRT 10 or later'):
    handler.load_model()


def test_without_a_cuda_gpu_the_device_buffers_say_so(monkeypatch, tmp_path):
  """The real buffers (no stand-in): torch here is a CPU build."""
  torch = pytest.importorskip('torch')
  if torch.cuda.is_available():
    pytest.skip('this machine has a CUDA GPU')
  monkeypatch.setitem(sys.modules, 'tensorrt', fake_tensorrt())
  handler = TensorRTEngineHandlerNumPy(
      1, 4, engine_path=_file(tmp_path, 'm.trt', b'FAKE-ENGINE:-1'))
  with pytest.raises(DeviceUnavailableError, match='needs a CUDA GPU'):
    handler.load_model()
