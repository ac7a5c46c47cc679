"""Clear messages for bad model files and bad examples (issue 13, defect 9):
a corrupt or truncated pickle names the file; the pandas handler given a
Series says what to do; None or a dict given to the numpy handler names the
example."""
import pickle

import numpy as np
import pytest
from sklearn.linear_model import LinearRegression

from runinference.exceptions import RunInferenceError
from runinference.sklearn_inference import (ModelFileType,
                                            SklearnModelHandlerNumpy,
                                            SklearnModelHandlerPandas)


@pytest.fixture
def model_bytes():
  x = np.arange(6, dtype=float).reshape(-1, 2)
  return pickle.dumps(LinearRegression().fit(x, x.sum(axis=1)))


@pytest.mark.parametrize('file_type', [ModelFileType.PICKLE,
                                       ModelFileType.JOBLIB])
@pytest.mark.parametrize('damage', ['truncated', 'garbage', 'empty'])
def test_corrupt_model_file_names_the_file(tmp_path, model_bytes, damage,
                                           file_type):
  data = {'truncated': model_bytes[:len(model_bytes) // 2],
          'garbage': b'\x00\x01 not a pickle at all',
          'empty': b''}[damage]
  path = tmp_path / f'{damage}.pkl'
  path.write_bytes(data)
  handler = SklearnModelHandlerNumpy(str(path), model_file_type=file_type)
  with pytest.raises(ValueError) as info:
    handler.load_model()
  assert isinstance(info.value, RunInferenceError)
  assert str(path) in str(info.value)
  assert 'corrupt, truncated' in str(info.value)


def test_pytorch_corrupt_state_dict_names_the_file(tmp_path):
  torch = pytest.importorskip('torch')
  from runinference.pytorch_inference import PytorchModelHandlerTensor
  path = tmp_path / 'weights.pt'
  torch.save(torch.nn.Linear(2, 1).state_dict(), path)
  path.write_bytes(path.read_bytes()[:40])
  handler = PytorchModelHandlerTensor(
      str(path), torch.nn.Linear, {'in_features': 2, 'out_features': 1})
  with pytest.raises(RunInferenceError) as info:
    handler.load_model()
  assert str(path) in str(info.value)


def test_pandas_handler_given_a_series_says_how_to_make_a_frame(tmp_path):
  pd = pytest.importorskip('pandas')
  frame = pd.DataFrame({'a': [1.0, 2.0, 3.0], 'b': [0.0, 1.0, 0.0]})
  path = tmp_path / 'm.pkl'
  path.write_bytes(pickle.dumps(LinearRegression().fit(frame, frame.a)))
  handler = SklearnModelHandlerPandas(str(path))
  model = handler.load_model()
  with pytest.raises(ValueError) as info:
    handler.run_inference([frame.iloc[[0]], frame.iloc[1]], model)
  message = str(info.value)
  assert 'example 1 is a pandas Series' in message
  assert 'to_frame().T' in message
  assert 'split it first' not in message
  # Several rows in one frame: still the reference's message, plus how.
  with pytest.raises(ValueError, match='Only dataframes with single rows'):
    handler.run_inference([frame], model)


@pytest.mark.parametrize('bad, shown', [(None, 'NoneType None'),
                                        ({'a': 1.0}, "dict {'a': 1.0}"),
                                        ('text', "str 'text'")])
def test_numpy_handler_names_a_bad_example(tmp_path, bad, shown):
  x = np.arange(6, dtype=float).reshape(-1, 2)
  path = tmp_path / 'm.pkl'
  path.write_bytes(pickle.dumps(LinearRegression().fit(x, x.sum(axis=1))))
  handler = SklearnModelHandlerNumpy(str(path))
  model = handler.load_model()
  with pytest.raises(TypeError) as info:
    handler.run_inference([np.array([1.0, 2.0]), bad], model)
  message = str(info.value)
  assert 'example 1 is ' + shown in message
  assert 'numpy.ndarray' in message
  # Lists of numbers are still accepted, as numpy.stack accepts them.
  results = handler.run_inference([[1.0, 2.0], np.array([3.0, 4.0])], model)
  np.testing.assert_allclose([r.inference for r in results], [3.0, 7.0])
