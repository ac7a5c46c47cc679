import pickle

import numpy as np
import pytest

pytest.importorskip('sklearn')
from sklearn.linear_model import LinearRegression  # noqa: E402

from runinference.sklearn_inference import (ModelFileType,  # noqa: E402
                                            SklearnModelHandlerNumpy,
                                            SklearnModelHandlerPandas)
from tests.handlers.cases import HandlerCase  # noqa: E402


def _save(tmp_path, name='five.pkl'):
  x = np.arange(10, dtype=float).reshape(-1, 1)
  model = LinearRegression().fit(x, 5 * x.ravel())
  path = tmp_path / name
  with open(path, 'wb') as f:
    pickle.dump(model, f)
  return str(path)


def _check_five(example, inference):
  assert float(inference) == pytest.approx(5 * float(np.ravel(example)[0]))


def _pandas_examples():
  import pandas as pd
  return [pd.DataFrame({'x': [float(i)]}) for i in range(3)]


def _save_pandas(tmp_path, **options):
  import pandas as pd
  frame = pd.DataFrame({'x': np.arange(10, dtype=float)})
  model = LinearRegression().fit(frame, 5 * frame['x'])
  path = tmp_path / 'pandas.joblib'
  import joblib
  joblib.dump(model, path)
  return SklearnModelHandlerPandas(str(path), ModelFileType.JOBLIB, **options)


CASES = [
    HandlerCase(
        name='sklearn-numpy',
        make_handler=lambda tmp, **o: SklearnModelHandlerNumpy(_save(tmp), **o),
        make_examples=lambda: [np.array([float(i)]) for i in range(3)],
        bad_example='not an array',
        expected_namespace='BeamML_Sklearn',
        check=_check_five),
    HandlerCase(
        name='sklearn-pandas',
        make_handler=_save_pandas,
        make_examples=_pandas_examples,
        bad_example=[1.0, 2.0],
        expected_namespace='BeamML_Sklearn'),
]
