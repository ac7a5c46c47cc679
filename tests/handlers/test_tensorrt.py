"""TensorRTEngineHandlerNumPy: imports and fails clearly without TensorRT or a
GPU; the GPU tests run only where both are present."""
import importlib.util
import subprocess
import sys

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.testing.util import assert_that, equal_to

from runinference.base import RunInference
from runinference.tensorrt_inference import TensorRTEngineHandlerNumPy

HAVE_TRT = importlib.util.find_spec('tensorrt') is not None


def _have_gpu():
  try:
    import torch
    return torch.cuda.is_available()
  except ImportError:
    return False


gpu_only = pytest.mark.skipif(
    not (HAVE_TRT and _have_gpu()), reason='needs TensorRT and a CUDA GPU')


def test_module_imports_without_tensorrt():
  code = ('import sys; sys.modules["tensorrt"] = None\n'
          'import runinference.tensorrt_inference as t\n'
          't.TensorRTEngineHandlerNumPy(1, 4, engine_path="m.trt")\n')
  proc = subprocess.run([sys.executable, '-c', code], capture_output=True,
                        text=True, timeout=120)
  assert proc.returncode == 0, proc.stderr[-2000:]


@pytest.mark.skipif(HAVE_TRT, reason='TensorRT is installed here')
def test_loading_without_tensorrt_names_what_is_missing(tmp_path):
  handler = TensorRTEngineHandlerNumPy(
      1, 4, engine_path=str(tmp_path / 'model.trt'))
  with pytest.raises(ImportError) as info:
    handler.load_model()
  message = str(info.value)
  assert "'tensorrt'" in message and 'pip install tensorrt' in message
  assert 'GPU' in message


def test_needs_exactly_one_model_path():
  with pytest.raises(ValueError, match='exactly one of engine_path'):
    TensorRTEngineHandlerNumPy(1, 4)
  with pytest.raises(ValueError, match='exactly one of engine_path'):
    TensorRTEngineHandlerNumPy(1, 4, engine_path='a.trt', onnx_path='a.onnx')


def test_contract_without_a_gpu():
  handler = TensorRTEngineHandlerNumPy(2, 2, onnx_path='model.onnx')
  assert handler.onnx_path == 'model.onnx' and handler.engine_path is None
  assert handler.get_metrics_namespace() == 'BeamML_TensorRT'
  assert handler.get_num_bytes([np.zeros(4, np.float32)] * 2) == 32
  assert dict(handler.batch_elements_kwargs())['max_batch_size'] == 2
  with pytest.raises(ValueError, match='takes no inference_args'):
    handler.validate_inference_args({'x': 1})
  handler.update_model_path('other.onnx')
  assert handler.onnx_path == 'other.onnx'
  assert handler.run_inference([], None) == []


def _save_onnx(tmp_path):
  pytest.importorskip('onnx')
  from onnx import TensorProto, helper
  weight = helper.make_tensor('w', TensorProto.FLOAT, [2, 1], [2.0, 3.0])
  graph = helper.make_graph(
      [helper.make_node('MatMul', ['x', 'w'], ['y'])], 'linear',
      [helper.make_tensor_value_info('x', TensorProto.FLOAT, [None, 2])],
      [helper.make_tensor_value_info('y', TensorProto.FLOAT, [None, 1])],
      initializer=[weight])
  model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)])
  path = tmp_path / 'linear.onnx'
  path.write_bytes(model.SerializeToString())
  return str(path)


@gpu_only
def test_onnx_built_engine_in_a_pipeline(tmp_path):
  handler = TensorRTEngineHandlerNumPy(
      1, 4, onnx_path=_save_onnx(tmp_path))
  examples = [np.array([i, 1], np.float32) for i in range(6)]
  with beam.Pipeline() as p:
    out = (
        p | beam.Create(examples) | RunInference(handler)
        | beam.Map(lambda r: float(r.inference[0][0])))
    assert_that(out, equal_to([2.0 * i + 3.0 for i in range(6)]))


@gpu_only
def test_missing_engine_file(tmp_path):
  handler = TensorRTEngineHandlerNumPy(
      1, 4, engine_path=str(tmp_path / 'missing.trt'))
  with pytest.raises(FileNotFoundError, match='missing.trt'):
    handler.load_model()
