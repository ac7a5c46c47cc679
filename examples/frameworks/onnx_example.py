"""ONNX Runtime in a Beam pipeline: a scikit-learn model converted to ONNX.

Run: python examples/frameworks/onnx_example.py   (needs onnxruntime, skl2onnx)
"""
import os
import tempfile

import apache_beam as beam
import numpy as np
import skl2onnx
from sklearn.linear_model import LinearRegression

from runinference.base import RunInference
from runinference.onnx_inference import OnnxModelHandlerNumpy


def build_model(directory: str) -> str:
  """Trains y = 2*x0 + 3*x1 + 0.5 and saves it as ONNX."""
  x = np.random.default_rng(0).uniform(-5, 5, size=(50, 2)).astype(np.float32)
  model = LinearRegression().fit(x, 2 * x[:, 0] + 3 * x[:, 1] + 0.5)
  path = os.path.join(directory, 'linear.onnx')
  with open(path, 'wb') as f:
    f.write(skl2onnx.to_onnx(model, x[:1]).SerializeToString())
  return path


def main():
  with tempfile.TemporaryDirectory() as tmp:
    handler = OnnxModelHandlerNumpy(build_model(tmp), max_batch_size=64)
    with beam.Pipeline() as p:
      _ = (
          p | beam.Create([np.array([i, 1.0], np.float32) for i in range(5)])
          | RunInference(handler)
          | beam.Map(lambda r: f'{r.example.tolist()} -> '
                     f'{float(np.ravel(r.inference)[0]):.2f}')
          | beam.Map(print))


if __name__ == '__main__':
  main()
