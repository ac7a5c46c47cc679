"""scikit-learn handlers (numpy and pandas input)."""
from __future__ import annotations

import enum
import functools
import pickle
from typing import Any, Callable, Optional, Sequence

import numpy

from ..exceptions import (ConfigurationError, InvalidInputError,
                          UnsupportedModelFileType, UntrustedModelTypesError)
from .._core.contract import MatrixPredictor, ModelHandler
from .._core.naming import publish
from .._core.results import to_results
from .common import (check_model_path, check_types, corrupt_model_error,
                     getsizeof_sum, open_model_file, read_model_bytes, require,
                     stack_numpy, unpickle_model, warn_if_others_can_write)

__all__ = [
    'ModelFileType', 'SklearnModelHandlerNumpy', 'SklearnModelHandlerPandas'
]

_WHAT = 'scikit-learn model'
_HOW_TO_SAVE = ("pickle.dump(model, open('model.pkl', 'wb')) or "
                "joblib.dump(model, 'model.joblib') after training.")


class ModelFileType(enum.Enum):
  """How the model file was serialized."""
  PICKLE = 1
  JOBLIB = 2
  #: ``skops.io.dump``: data only, loaded with an explicit trusted-types list.
  SKOPS = 3


def _check_file_type(file_type) -> None:
  if not isinstance(file_type, ModelFileType):
    raise UnsupportedModelFileType(
        f'Unsupported serialization type {file_type!r}: model_file_type must '
        'be ModelFileType.PICKLE, JOBLIB or SKOPS.')


def _is_skops(model_uri: str, file_type: ModelFileType) -> bool:
  return (file_type is ModelFileType.SKOPS or
          model_uri.lower().endswith('.skops'))


def _check_trusted_types(trusted_types: Any) -> Optional[tuple[str, ...]]:
  if trusted_types is None:
    return None
  if isinstance(trusted_types, str) or not isinstance(
      trusted_types, (list, tuple, set, frozenset)) or not all(
          isinstance(t, str) for t in trusted_types):
    raise ConfigurationError(
        'trusted_types must be a list of type names (str), e.g. '
        "['numpy.float64', 'mypkg.MyEstimator'] as "
        f'skops.io.get_untrusted_types lists them; got {trusted_types!r}.')
  return tuple(trusted_types)


def _load_skops(model_uri: str, trusted_types: Optional[Sequence[str]]):
  """``skops.io.loads`` after checking that every type the file holds that
  skops does not trust by default is in ``trusted_types``."""
  sio = require('skops.io', 'ModelFileType.SKOPS', 'to load .skops models')
  data = read_model_bytes(model_uri, _WHAT, "skops.io.dump(model, 'model.skops')")
  try:
    untrusted = sio.get_untrusted_types(data=data)
  except Exception as e:  # pylint: disable=broad-except
    raise corrupt_model_error(model_uri, _WHAT, e) from e
  refused = [t for t in untrusted if t not in (trusted_types or ())]
  if refused:
    raise UntrustedModelTypesError(
        f'The skops model {model_uri!r} holds types that are not trusted: '
        f'{", ".join(refused)}. It was not loaded. If you trust them, pass '
        f'trusted_types={refused!r} (plus any others you allow) to the '
        'handler; check the list first with skops.io.get_untrusted_types('
        'file=...).')
  try:
    return sio.loads(data, trusted=list(untrusted))
  except Exception as e:  # pylint: disable=broad-except
    raise corrupt_model_error(model_uri, _WHAT, e) from e


def _load_model(model_uri: str, file_type: ModelFileType,
                trusted_types: Optional[Sequence[str]] = None):
  _check_file_type(file_type)
  if _is_skops(model_uri, file_type):
    return _load_skops(model_uri, trusted_types)
  warn_if_others_can_write(model_uri, _WHAT)
  load = pickle.load
  if file_type is ModelFileType.JOBLIB:
    load = require('joblib', 'ModelFileType.JOBLIB').load
  with open_model_file(model_uri, _WHAT, _HOW_TO_SAVE) as f:
    return unpickle_model(load, f, model_uri, _WHAT)


def _default_numpy_inference_fn(
    model: Any,
    batch: Sequence[numpy.ndarray],
    inference_args: Optional[dict[str, Any]] = None) -> Any:
  return model.predict(
      stack_numpy(batch, 'SklearnModelHandlerNumpy', strict=False,
                  numeric=False), **(inference_args or {}))


def _default_pandas_inference_fn(
    model: Any, batch: Sequence[Any],
    inference_args: Optional[dict[str, Any]] = None) -> Any:
  import pandas
  frame = pandas.concat(batch, axis=0)
  predictions = model.predict(frame, **(inference_args or {}))
  splits = [frame.iloc[[i]] for i in range(frame.shape[0])]
  return predictions, splits


def _predict_matrix(model: Any, features: Any, inference_args: dict) -> Any:
  return model.predict(features, **inference_args)


def _rows_matrix(fn: Callable, model: Any, features: Any,
                 inference_args: dict) -> Any:
  # A 2-D array is a sequence of 1-D rows: a batch inference fn written for a
  # list of rows takes the matrix as it is.
  return fn(model, features, inference_args)


def _frames_matrix(fn: Callable, model: Any, frame: Any,
                   inference_args: dict) -> Any:
  # Pandas inference fns take a list of DataFrames and return
  # (predictions, per-row splits).
  return fn(model, [frame], inference_args)[0]


class _SklearnHandler(ModelHandler):
  """What both scikit-learn handlers share: loading the model file."""
  _model_location_attr = '_model_uri'
  _default_inference_fn: Callable

  def __init__(
      self,
      model_uri: str,
      model_file_type: ModelFileType = ModelFileType.PICKLE,
      *,
      inference_fn: Optional[Callable] = None,
      trusted_types: Optional[Sequence[str]] = None,
      **kwargs):
    super().__init__(**kwargs)
    self._model_uri = check_model_path(model_uri, _WHAT)
    _check_file_type(model_file_type)
    self._model_file_type = model_file_type
    self._model_inference_fn = inference_fn or type(self)._default_inference_fn
    self._trusted_types = _check_trusted_types(trusted_types)

  def load_model(self):
    return _load_model(self._model_uri, self._model_file_type,
                       self._trusted_types)

  def get_metrics_namespace(self) -> str:
    return 'BeamML_Sklearn'


class SklearnModelHandlerNumpy(_SklearnHandler):
  """Runs a scikit-learn estimator on numpy arrays, one array per example.

  Example::

    pcoll | RunInference(SklearnModelHandlerNumpy(model_uri='model.pkl'))

  Args:
    model_uri: path or URI of the pickled/joblib/skops model.
    model_file_type: ``ModelFileType.PICKLE`` (default), ``JOBLIB`` or
      ``SKOPS`` (a file named ``*.skops`` is always loaded with skops).
    inference_fn: ``fn(model, batch, inference_args)`` returning the
      predictions; the default stacks the batch and calls ``model.predict``.
    trusted_types: for skops files, the type names (beyond skops' own
      defaults) allowed in the file; any other is refused.
    kwargs: batching and sharing options of ``ModelHandler``, ``env_vars``.
  """
  _default_inference_fn = staticmethod(_default_numpy_inference_fn)

  def run_inference(self, batch, model, inference_args=None):
    if not batch:
      return []
    predictions = self._model_inference_fn(model, batch, inference_args)
    return to_results(batch, predictions, self._model_uri)

  def get_num_bytes(self, batch: Sequence[numpy.ndarray]) -> int:
    return getsizeof_sum(batch)

  def matrix_predictor(self) -> MatrixPredictor:
    fn = self._model_inference_fn
    if fn is _default_numpy_inference_fn:
      return MatrixPredictor(_predict_matrix)
    return MatrixPredictor(functools.partial(_rows_matrix, fn))


class SklearnModelHandlerPandas(_SklearnHandler):
  """Runs a scikit-learn estimator on one-row pandas DataFrames (arguments
  as ``SklearnModelHandlerNumpy``'s; the default ``inference_fn`` concatenates
  the frames and calls ``model.predict``)."""
  _default_inference_fn = staticmethod(_default_pandas_inference_fn)

  def run_inference(self, batch, model, inference_args=None):
    _check_frames(batch)
    if not batch:
      return []
    predictions, _ = self._model_inference_fn(model, batch, inference_args)
    return to_results(batch, predictions, self._model_uri)

  def get_num_bytes(self, batch: Sequence[Any]) -> int:
    return sum(int(df.memory_usage(deep=True).sum()) for df in batch)

  def matrix_predictor(self) -> MatrixPredictor:
    fn = self._model_inference_fn
    if fn is _default_pandas_inference_fn:
      return MatrixPredictor(_predict_matrix, takes='pandas')
    return MatrixPredictor(
        functools.partial(_frames_matrix, fn), takes='pandas')


def _is_frame(x: Any) -> bool:
  return type(x).__name__ == 'DataFrame' and hasattr(x, 'iloc')


def _check_frames(batch: Sequence[Any]) -> None:
  who = 'SklearnModelHandlerPandas'
  for i, x in enumerate(batch):
    if type(x).__name__ == 'Series' and hasattr(x, 'to_frame'):
      raise InvalidInputError(
          f'{who} expects each example to be a one-row pandas DataFrame, but '
          f'example {i} is a pandas Series (index {list(x.index)[:5]}...). If '
          'it is one row, make it a frame with handler.with_preprocess_fn('
          'lambda s: s.to_frame().T); if it is one column of many rows, '
          'build a DataFrame and emit one row per element '
          '(beam.FlatMap(lambda df: [df.iloc[[i]] for i in range(len(df))])).')
  check_types(
      batch, _is_frame, who, 'a one-row pandas DataFrame',
      'Build one with pandas.DataFrame([row]) in a preprocess step.')
  for i, frame in enumerate(batch):
    if frame.shape[0] != 1:
      raise InvalidInputError(
          'Only dataframes with single rows are supported: '
          f'{who} got example {i} with {frame.shape[0]} rows. Emit one row '
          'per element, e.g. beam.FlatMap(lambda df: [df.iloc[[i]] for i in '
          'range(len(df))]).')


publish(globals(), 'runinference.sklearn_inference', alias=True)
