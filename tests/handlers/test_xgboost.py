"""XGBoost handlers on real models trained on 50 rows inside the tests."""
import zipfile

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.testing.util import assert_that, equal_to

xgboost = pytest.importorskip('xgboost')
pandas = pytest.importorskip('pandas')
scipy_sparse = pytest.importorskip('scipy.sparse')

from runinference.base import KeyedModelHandler, RunInference  # noqa: E402
from runinference.xgboost_inference import (  # noqa: E402
    XGBoostModelHandlerNumpy, XGBoostModelHandlerPandas,
    XGBoostModelHandlerSciPy, default_xgboost_inference_fn)

RNG = np.random.default_rng(0)
X = RNG.uniform(0, 10, size=(50, 3))
Y = 2 * X[:, 0] - X[:, 1] + 0.5 * X[:, 2]


class CountingRegressor(xgboost.XGBRegressor):
  """A real XGBRegressor that counts its predict calls."""
  calls = 0

  def predict(self, *args, **kwargs):  # pylint: disable=arguments-differ
    type(self).calls += 1
    return super().predict(*args, **kwargs)


@pytest.fixture(scope='module')
def model_path(tmp_path_factory):
  model = xgboost.XGBRegressor(n_estimators=20, max_depth=3).fit(X, Y)
  path = tmp_path_factory.mktemp('xgb') / 'model.json'
  model.save_model(str(path))
  return str(path)


@pytest.fixture(scope='module')
def reference(model_path):
  model = xgboost.XGBRegressor()
  model.load_model(model_path)
  return model


def test_numpy_whole_batch_in_one_predict_call(model_path, reference):
  handler = XGBoostModelHandlerNumpy(CountingRegressor, model_path)
  model = handler.load_model()
  blocks = [X[0:3], X[3:4], X[4], X[5:9], X[9]]  # 2-D blocks and 1-D rows
  CountingRegressor.calls = 0
  results = list(handler.run_inference(blocks, model))
  assert CountingRegressor.calls == 1
  assert [r.example is b for r, b in zip(results, blocks)] == [True] * 5
  np.testing.assert_allclose(results[0].inference, reference.predict(X[0:3]))
  assert np.shape(results[2].inference) == ()  # a 1-D example is one row
  assert float(results[2].inference) == pytest.approx(
      float(reference.predict(X[4:5])[0]))
  flat = np.concatenate([np.ravel(r.inference) for r in results])
  np.testing.assert_allclose(flat, reference.predict(X[:10]), rtol=1e-6)


def test_booster_model_class(model_path, reference):
  handler = XGBoostModelHandlerNumpy(xgboost.Booster, model_path)
  results = list(handler.run_inference([X[:2], X[2:5]], handler.load_model()))
  np.testing.assert_allclose(results[1].inference, reference.predict(X[2:5]),
                             rtol=1e-6)


def test_pandas(model_path, reference):
  frame = pandas.DataFrame(X, columns=['a', 'b', 'c'])
  model = xgboost.XGBRegressor(n_estimators=20, max_depth=3).fit(frame, Y)
  model.save_model(model_path + '.pandas.json')
  handler = XGBoostModelHandlerPandas(
      xgboost.XGBRegressor, model_path + '.pandas.json')
  batch = [frame.iloc[0:2], frame.iloc[2:3], frame.iloc[3:7]]
  results = list(handler.run_inference(batch, handler.load_model()))
  assert results[0].example is batch[0]
  np.testing.assert_allclose(results[2].inference, model.predict(frame[3:7]))
  bad = frame[['b', 'a', 'c']].iloc[0:1]
  with pytest.raises(ValueError, match='same columns in the same order'):
    handler.run_inference([batch[0], bad], handler.load_model())


def test_scipy(model_path, reference):
  handler = XGBoostModelHandlerSciPy(xgboost.XGBRegressor, model_path)
  batch = [scipy_sparse.csr_matrix(X[0:2]), scipy_sparse.csr_matrix(X[2:5])]
  results = list(handler.run_inference(batch, handler.load_model()))
  np.testing.assert_allclose(results[1].inference, reference.predict(X[2:5]),
                             rtol=1e-6)
  assert handler.get_num_bytes(batch) > sum(b.data.nbytes for b in batch)


def test_datatable(model_path, reference):
  datatable = pytest.importorskip('datatable')
  from runinference.xgboost_inference import XGBoostModelHandlerDatatable
  handler = XGBoostModelHandlerDatatable(xgboost.XGBRegressor, model_path)
  batch = [datatable.Frame(X[0:2]), datatable.Frame(X[2:5])]
  results = list(handler.run_inference(batch, handler.load_model()))
  np.testing.assert_allclose(results[1].inference, reference.predict(X[2:5]),
                             rtol=1e-6)


def test_pipeline_plain_and_keyed(model_path, reference):
  rows = [X[i] for i in range(10)]
  want = [round(float(v), 3) for v in reference.predict(X[:10])]
  with beam.Pipeline() as p:
    data = p | beam.Create(list(enumerate(rows)))
    plain = (
        data | beam.Map(lambda kv: kv[1])
        | RunInference(XGBoostModelHandlerNumpy(
            xgboost.XGBRegressor, model_path, max_batch_size=4))
        | beam.Map(lambda r: round(float(r.inference), 3)))
    assert_that(plain, equal_to(want))
    keyed = (
        data | 'Keyed' >> RunInference(
            KeyedModelHandler(
                XGBoostModelHandlerNumpy(xgboost.XGBRegressor, model_path)))
        | beam.Map(lambda kv: (kv[0], round(float(kv[1].inference), 3))))
    assert_that(keyed, equal_to(list(enumerate(want))), label='keyed')


def test_custom_predict_that_is_not_row_aligned_falls_back(model_path):
  class SumModel(xgboost.XGBRegressor):
    def predict(self, data, **kwargs):  # pylint: disable=arguments-differ
      return np.asarray(data).sum()

  handler = XGBoostModelHandlerNumpy(SumModel, model_path)
  batch = [np.ones((2, 3)), np.ones((3, 3))]
  results = list(handler.run_inference(batch, handler.load_model()))
  assert [float(r.inference) for r in results] == [6.0, 9.0]


def test_inference_args_reach_predict(model_path, reference):
  handler = XGBoostModelHandlerNumpy(xgboost.XGBRegressor, model_path)
  results = list(
      handler.run_inference([X[:3]], handler.load_model(),
                            {'iteration_range': (0, 1)}))
  np.testing.assert_allclose(
      results[0].inference,
      reference.predict(X[:3], iteration_range=(0, 1)))


def test_missing_model_file_names_the_path(tmp_path):
  handler = XGBoostModelHandlerNumpy(
      xgboost.XGBRegressor, str(tmp_path / 'gone.json'))
  with pytest.raises(FileNotFoundError, match='gone.json'):
    handler.load_model()


def test_a_file_that_is_not_a_model(tmp_path, model_path):
  archive = tmp_path / 'model.zip'
  with zipfile.ZipFile(archive, 'w') as z:
    z.write(model_path)
  with pytest.raises(xgboost.core.XGBoostError):
    XGBoostModelHandlerNumpy(xgboost.XGBRegressor, str(archive)).load_model()


def test_constructor_errors():
  with pytest.raises(ValueError, match='model_class'):
    XGBoostModelHandlerNumpy('XGBRegressor', 'model.json')
  with pytest.raises(ValueError, match='model_state'):
    XGBoostModelHandlerNumpy(xgboost.XGBRegressor, None)


def test_wrong_input_type_names_the_right_handler(model_path):
  handler = XGBoostModelHandlerNumpy(xgboost.XGBRegressor, model_path)
  frame = pandas.DataFrame(X[:2])
  with pytest.raises(TypeError, match='Use XGBoostModelHandlerPandas'):
    handler.run_inference([frame], handler.load_model())
  with pytest.raises(TypeError, match='numpy.ndarray.*example 0 is str'):
    handler.run_inference(['1,2,3'], handler.load_model())
  with pytest.raises(ValueError, match='different numbers of features'):
    handler.run_inference([X[0], X[1, :2]], handler.load_model())


def test_default_fn_rejects_mixed_kinds(model_path):
  model = xgboost.XGBRegressor()
  model.load_model(model_path)
  with pytest.raises(TypeError, match='of one kind'):
    default_xgboost_inference_fn([X[:1], pandas.DataFrame(X[:1])], model)


def test_num_bytes_and_namespace(model_path):
  handler = XGBoostModelHandlerNumpy(xgboost.XGBRegressor, model_path)
  assert handler.get_metrics_namespace() == 'BeamML_XGBoost'
  assert handler.get_num_bytes([X[:2]]) >= X[:2].nbytes
  assert handler.get_num_bytes([X.copy()]) >= X.nbytes
