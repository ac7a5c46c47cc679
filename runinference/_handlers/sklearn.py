"""scikit-learn handlers (numpy and pandas input)."""
from __future__ import annotations

import enum
import functools
import pickle
import sys
from typing import Any, Callable, Iterable, Optional, Sequence

import numpy

from ..exceptions import UnsupportedModelFileType
from .._core.contract import MatrixPredictor, ModelHandler
from .._core.naming import publish
from .._core.results import check_file, to_results
from .._core.types import PredictionResult

__all__ = [
    'ModelFileType', 'SklearnModelHandlerNumpy', 'SklearnModelHandlerPandas'
]


class ModelFileType(enum.Enum):
  """How the model file was serialized."""
  PICKLE = 1
  JOBLIB = 2


def _check_file_type(file_type) -> None:
  if not isinstance(file_type, ModelFileType):
    raise UnsupportedModelFileType(
        f'Unsupported serialization type {file_type!r}: model_file_type must '
        'be ModelFileType.PICKLE or ModelFileType.JOBLIB.')


def _load_model(model_uri: str, file_type: ModelFileType):
  from apache_beam.io.filesystems import FileSystems
  _check_file_type(file_type)
  check_file(model_uri, 'scikit-learn model')
  with FileSystems.open(model_uri, 'rb') as f:
    if file_type is ModelFileType.JOBLIB:
      try:
        import joblib
      except ImportError as e:
        raise ImportError(
            'ModelFileType.JOBLIB needs joblib: pip install joblib') from e
      return joblib.load(f)
    return pickle.load(f)


def _stack(batch: Sequence[Any], handler: str) -> numpy.ndarray:
  first = batch[0] if len(batch) else None
  if isinstance(first, numpy.ndarray) and first.dtype != object:
    # numpy.array builds the batch in C, ~3x faster than numpy.stack; a
    # ragged batch raises ValueError (the engine then splits it by shape).
    stacked = numpy.array(batch)
    if stacked.dtype != object and stacked.ndim == first.ndim + 1:
      return stacked
  try:
    return numpy.stack(batch, axis=0)
  except (TypeError, ValueError) as e:
    bad = next((x for x in batch if not isinstance(x, numpy.ndarray)), None)
    if bad is not None:
      raise TypeError(
          f'{handler} expects numpy arrays, got {type(bad).__name__}: '
          f'{bad!r:.100}. Convert with a preprocess fn, e.g. '
          'handler.with_preprocess_fn(numpy.asarray).') from e
    raise


def _default_numpy_inference_fn(
    model: Any,
    batch: Sequence[numpy.ndarray],
    inference_args: Optional[dict[str, Any]] = None) -> Any:
  return model.predict(
      _stack(batch, 'SklearnModelHandlerNumpy'), **(inference_args or {}))


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
  _model_location_attr = '_model_uri'
  def __init__(
      self,
      model_uri: str,
      model_file_type: ModelFileType = ModelFileType.PICKLE,
      *,
      inference_fn: Callable,
      **kwargs):
    super().__init__(**kwargs)
    if not isinstance(model_uri, str) or not model_uri:
      raise ValueError(
          f'model_uri must be the path of a saved model, got {model_uri!r}.')
    _check_file_type(model_file_type)
    self._model_uri = model_uri
    self._model_file_type = model_file_type
    self._model_inference_fn = inference_fn

  def load_model(self):
    return _load_model(self._model_uri, self._model_file_type)

  def update_model_path(self, model_path: Optional[str] = None):
    self._model_uri = model_path or self._model_uri

  def get_metrics_namespace(self) -> str:
    return 'BeamML_Sklearn'

  def __repr__(self):
    return f'{type(self).__name__}(model_uri={self._model_uri!r})'


class SklearnModelHandlerNumpy(_SklearnHandler):
  """Runs a scikit-learn estimator on numpy arrays, one array per example.

  Example::

    pcoll | RunInference(SklearnModelHandlerNumpy(model_uri='model.pkl'))
  """
  def __init__(
      self,
      model_uri: str,
      model_file_type: ModelFileType = ModelFileType.PICKLE,
      *,
      inference_fn: Callable = _default_numpy_inference_fn,
      **kwargs):
    """
    Args:
      model_uri: path or URI of the pickled/joblib model.
      model_file_type: ``ModelFileType.PICKLE`` (default) or ``JOBLIB``.
      inference_fn: ``fn(model, batch, inference_args)`` returning the
        predictions; default stacks the batch and calls ``model.predict``.
      kwargs: batching and sharing options of ``ModelHandler``, ``env_vars``.
    """
    super().__init__(
        model_uri, model_file_type, inference_fn=inference_fn, **kwargs)

  def run_inference(
      self,
      batch: Sequence[numpy.ndarray],
      model: Any,
      inference_args: Optional[dict[str, Any]] = None
  ) -> Iterable[PredictionResult]:
    if not batch:
      return []
    predictions = self._model_inference_fn(model, batch, inference_args)
    return to_results(batch, predictions, self._model_uri)

  def get_num_bytes(self, batch: Sequence[numpy.ndarray]) -> int:
    return sum(map(sys.getsizeof, batch))

  def matrix_predictor(self) -> MatrixPredictor:
    fn = self._model_inference_fn
    if fn is _default_numpy_inference_fn:
      return MatrixPredictor(_predict_matrix)
    return MatrixPredictor(functools.partial(_rows_matrix, fn))


class SklearnModelHandlerPandas(_SklearnHandler):
  """Runs a scikit-learn estimator on one-row pandas DataFrames."""
  def __init__(
      self,
      model_uri: str,
      model_file_type: ModelFileType = ModelFileType.PICKLE,
      *,
      inference_fn: Callable = _default_pandas_inference_fn,
      **kwargs):
    super().__init__(
        model_uri, model_file_type, inference_fn=inference_fn, **kwargs)

  def run_inference(
      self,
      batch: Sequence[Any],
      model: Any,
      inference_args: Optional[dict[str, Any]] = None
  ) -> Iterable[PredictionResult]:
    for frame in batch:
      shape = getattr(frame, 'shape', None)
      if shape is None:
        raise TypeError(
            'SklearnModelHandlerPandas expects one-row pandas DataFrames, got '
            f'{type(frame).__name__}.')
      if shape[0] != 1:
        raise ValueError(
            'Only dataframes with single rows are supported: '
            f'SklearnModelHandlerPandas got one with {shape[0]} rows; split '
            'it first (e.g. beam.FlatMap over df.iloc[[i]]).')
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


publish(globals(), 'runinference.sklearn_inference', alias=True)
