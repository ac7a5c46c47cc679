"""TensorRT in a Beam pipeline (needs an NVIDIA GPU, tensorrt>=10 and a
CUDA build of torch): an ONNX model compiled to an engine on the worker.

Run: python examples/frameworks/tensorrt_example.py
"""
import os
import tempfile

import apache_beam as beam
import numpy as np
from onnx import TensorProto, helper

from runinference.base import RunInference
from runinference.tensorrt_inference import TensorRTEngineHandlerNumPy


def build_onnx(directory: str) -> str:
  """y = x @ [2, 3]."""
  weight = helper.make_tensor('w', TensorProto.FLOAT, [2, 1], [2.0, 3.0])
  graph = helper.make_graph(
      [helper.make_node('MatMul', ['x', 'w'], ['y'])], 'linear',
      [helper.make_tensor_value_info('x', TensorProto.FLOAT, [None, 2])],
      [helper.make_tensor_value_info('y', TensorProto.FLOAT, [None, 1])],
      initializer=[weight])
  path = os.path.join(directory, 'linear.onnx')
  with open(path, 'wb') as f:
    f.write(helper.make_model(
        graph, opset_imports=[helper.make_opsetid('', 17)]).SerializeToString())
  return path


def main():
  with tempfile.TemporaryDirectory() as tmp:
    handler = TensorRTEngineHandlerNumPy(
        min_batch_size=1, max_batch_size=8, onnx_path=build_onnx(tmp))
    try:
      handler.load_model()
    except (ImportError, RuntimeError) as e:
      print(f'Cannot run TensorRT here: {e}')
      return
    with beam.Pipeline() as p:
      _ = (
          p | beam.Create([np.array([i, 1.0], np.float32) for i in range(4)])
          | RunInference(handler)
          | beam.Map(lambda r: f'{r.example.tolist()} -> {r.inference[0]}')
          | beam.Map(print))


if __name__ == '__main__':
  main()
