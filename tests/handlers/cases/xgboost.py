"""Conformance cases for the XGBoost handlers (a regressor trained on 50
rows)."""
import numpy as np
import pytest

xgboost = pytest.importorskip('xgboost')
from runinference.xgboost_inference import (  # noqa: E402
    XGBoostModelHandlerNumpy, XGBoostModelHandlerPandas)
from tests.handlers.cases import HandlerCase  # noqa: E402

_X = np.arange(50, dtype=float).reshape(-1, 1)


def _numpy_handler(tmp_path, **options):
  model = xgboost.XGBRegressor(n_estimators=10).fit(_X, 5 * _X.ravel())
  path = tmp_path / 'xgb.json'
  model.save_model(str(path))
  return XGBoostModelHandlerNumpy(xgboost.XGBRegressor, str(path), **options)


def _pandas_handler(tmp_path, **options):
  import pandas as pd
  frame = pd.DataFrame({'x': _X.ravel()})
  model = xgboost.XGBRegressor(n_estimators=10).fit(frame, 5 * _X.ravel())
  path = tmp_path / 'xgb_pandas.json'
  model.save_model(str(path))
  return XGBoostModelHandlerPandas(xgboost.XGBRegressor, str(path),
                                    **options)


def _pandas_examples():
  import pandas as pd
  return [pd.DataFrame({'x': [float(i), float(i + 1)]}) for i in range(3)]


def _check_increasing(example, inference):
  assert np.shape(inference) == ()
  assert float(inference) == pytest.approx(5 * float(example[0]), abs=25)


CASES = [
    HandlerCase(
        name='xgboost-numpy',
        make_handler=_numpy_handler,
        make_examples=lambda: [np.array([float(i)]) for i in (3, 20, 40)],
        bad_example='not an array',
        expected_namespace='BeamML_XGBoost',
        check=_check_increasing),
    HandlerCase(
        name='xgboost-pandas',
        make_handler=_pandas_handler,
        make_examples=_pandas_examples,
        bad_example=[1.0, 2.0],
        expected_namespace='BeamML_XGBoost'),
]
