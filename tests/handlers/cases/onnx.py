"""Conformance cases for OnnxModelHandlerNumpy (a scikit-learn model
converted with skl2onnx)."""
import numpy as np
import pytest

pytest.importorskip('onnxruntime')
skl2onnx = pytest.importorskip('skl2onnx')
from sklearn.linear_model import LinearRegression  # noqa: E402

from runinference.onnx_inference import OnnxModelHandlerNumpy  # noqa: E402
from tests.handlers.cases import HandlerCase  # noqa: E402


def _make_handler(tmp_path, **options):
  x = np.arange(10, dtype=np.float32).reshape(-1, 1)
  model = LinearRegression().fit(x, 5 * x.ravel())
  path = tmp_path / 'five.onnx'
  path.write_bytes(skl2onnx.to_onnx(model, x[:1]).SerializeToString())
  return OnnxModelHandlerNumpy(str(path), **options)


def _check_five(example, inference):
  assert float(np.ravel(inference)[0]) == pytest.approx(
      5 * float(example[0]), rel=1e-4, abs=1e-4)


CASES = [
    HandlerCase(
        name='onnx-numpy',
        make_handler=_make_handler,
        make_examples=lambda: [np.array([float(i)], np.float32) for i in range(3)],
        bad_example='not an array',
        expected_namespace='BeamML_Onnx',
        check=_check_five),
]
