"""Each framework handler's ``matrix_predictor()`` (the columnar path's hook)
predicts a whole feature matrix the same as ``run_inference`` predicts the
rows one example at a time."""
import pickle

import numpy as np
import pytest

RNG = np.random.default_rng(1)
X = RNG.normal(size=(40, 3)).astype(np.float32)
Y = X @ np.array([1.5, -2.0, 0.5], dtype=np.float32) + 0.25
COLUMNS = ['a', 'b', 'c']


def _per_row(handler, rows):
  model = handler.load_model()
  return model, np.array(
      [np.ravel(r.inference)[0] for r in handler.run_inference(rows, model)],
      dtype=float)


def _matrix(handler, model, features):
  predictor = handler.matrix_predictor()
  out = predictor(model, features, {})
  return predictor, np.asarray(out, dtype=float).reshape(len(X), -1)[:, 0]


def test_sklearn_numpy_default_and_custom_fn(tmp_path):
  from sklearn.linear_model import LinearRegression
  from runinference.sklearn_inference import SklearnModelHandlerNumpy
  path = tmp_path / 'm.pkl'
  path.write_bytes(pickle.dumps(LinearRegression().fit(X, Y)))
  for fn in (None, lambda m, batch, args: m.predict(np.stack(batch)) * 2):
    kwargs = {'inference_fn': fn} if fn else {}
    handler = SklearnModelHandlerNumpy(str(path), **kwargs)
    model, rows = _per_row(handler, list(X))
    predictor, matrix = _matrix(handler, model, X)
    assert predictor.takes == 'numpy'
    np.testing.assert_allclose(matrix, rows, rtol=1e-6)


def test_sklearn_pandas(tmp_path):
  import pandas as pd
  from sklearn.linear_model import LinearRegression
  from runinference.sklearn_inference import SklearnModelHandlerPandas
  frame = pd.DataFrame(X, columns=COLUMNS)
  path = tmp_path / 'm.pkl'
  path.write_bytes(pickle.dumps(LinearRegression().fit(frame, Y)))
  handler = SklearnModelHandlerPandas(str(path))
  model, rows = _per_row(handler, [frame.iloc[[i]] for i in range(len(X))])
  predictor = handler.matrix_predictor()
  assert predictor.takes == 'pandas'
  np.testing.assert_allclose(predictor(model, frame, {}), rows, rtol=1e-6)


def test_xgboost_numpy_and_pandas(tmp_path):
  xgboost = pytest.importorskip('xgboost')
  import pandas as pd
  from runinference.xgboost_inference import (XGBoostModelHandlerNumpy,
                                              XGBoostModelHandlerPandas)
  frame = pd.DataFrame(X, columns=COLUMNS)
  xgboost.XGBRegressor(n_estimators=5).fit(X, Y).save_model(
      str(tmp_path / 'n.json'))
  xgboost.XGBRegressor(n_estimators=5).fit(frame, Y).save_model(
      str(tmp_path / 'x.json'))
  numpy_handler = XGBoostModelHandlerNumpy(
      xgboost.Booster, str(tmp_path / 'n.json'))
  model, rows = _per_row(numpy_handler, list(X))
  np.testing.assert_allclose(_matrix(numpy_handler, model, X)[1], rows,
                             rtol=1e-6)
  pandas_handler = XGBoostModelHandlerPandas(
      xgboost.XGBRegressor, str(tmp_path / 'x.json'))
  model, rows = _per_row(pandas_handler,
                         [frame.iloc[[i]] for i in range(len(X))])
  predictor = pandas_handler.matrix_predictor()
  assert predictor.takes == 'pandas'
  np.testing.assert_allclose(predictor(model, frame, {}), rows, rtol=1e-6)


def _onnx_model(tmp_path):
  pytest.importorskip('onnxruntime')
  skl2onnx = pytest.importorskip('skl2onnx')
  from sklearn.linear_model import LinearRegression
  onx = skl2onnx.to_onnx(LinearRegression().fit(X, Y), X[:1])
  path = tmp_path / 'm.onnx'
  path.write_bytes(onx.SerializeToString())
  return str(path)


def test_onnx_default_all_outputs_and_custom(tmp_path):
  from runinference.onnx_inference import (OnnxModelHandlerNumpy,
                                           all_outputs_inference_fn,
                                           default_numpy_inference_fn)
  path = _onnx_model(tmp_path)
  for fn in (default_numpy_inference_fn,
             lambda s, batch, args: default_numpy_inference_fn(s, batch) + 1):
    handler = OnnxModelHandlerNumpy(path, inference_fn=fn)
    model, rows = _per_row(handler, list(X))
    np.testing.assert_allclose(_matrix(handler, model, X)[1], rows, rtol=1e-5)
  handler = OnnxModelHandlerNumpy(path, inference_fn=all_outputs_inference_fn)
  session = handler.load_model()
  outputs = handler.matrix_predictor()(session, X, {})
  assert isinstance(outputs, dict) and len(outputs) == 1
  np.testing.assert_allclose(
      np.ravel(next(iter(outputs.values()))),
      np.ravel(default_numpy_inference_fn(session, list(X))), rtol=1e-6)


def test_pytorch_default_fn_and_custom_fn_is_a_clear_error(tmp_path):
  torch = pytest.importorskip('torch')
  from runinference.pytorch_inference import PytorchModelHandlerTensor
  torch.manual_seed(0)
  linear = torch.nn.Linear(3, 1)
  torch.save(linear.state_dict(), tmp_path / 'w.pt')
  handler = PytorchModelHandlerTensor(
      str(tmp_path / 'w.pt'), torch.nn.Linear, {'in_features': 3,
                                                 'out_features': 1})
  model, rows = _per_row(handler, [torch.from_numpy(r) for r in X])
  out = handler.matrix_predictor()(model, X.astype(np.float64), {})
  np.testing.assert_allclose(out.numpy()[:, 0], rows, rtol=1e-5)
  custom = PytorchModelHandlerTensor(
      str(tmp_path / 'w.pt'), torch.nn.Linear, {'in_features': 3,
                                                 'out_features': 1},
      inference_fn=lambda *a, **k: [])
  with pytest.raises(TypeError, match='predict_fn'):
    custom.matrix_predictor()
