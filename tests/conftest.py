import logging
import pickle

import numpy as np
import pytest

logging.getLogger('apache_beam').setLevel(logging.ERROR)


@pytest.fixture
def five_model(tmp_path):
  """A scikit-learn LinearRegression that learned y = 5x, pickled."""
  from sklearn.linear_model import LinearRegression
  x = np.arange(20, dtype=float).reshape(-1, 1)
  path = tmp_path / 'five.pkl'
  with open(path, 'wb') as f:
    pickle.dump(LinearRegression().fit(x, 5 * x.ravel()), f)
  return str(path)


@pytest.fixture
def ten_model(tmp_path):
  from sklearn.linear_model import LinearRegression
  x = np.arange(20, dtype=float).reshape(-1, 1)
  path = tmp_path / 'ten.pkl'
  with open(path, 'wb') as f:
    pickle.dump(LinearRegression().fit(x, 10 * x.ravel()), f)
  return str(path)
