"""XGBoost handlers for numpy, pandas, SciPy sparse and datatable inputs.

Import-compatible with ``apache_beam.ml.inference.xgboost_inference``, with
one difference in how the work is done: the reference calls ``predict`` once
per example; these handlers concatenate the whole batch, call ``predict``
once and split the predictions back per example (same results, one call).

An example is a block of rows: a 2-D array / DataFrame / sparse matrix /
datatable Frame of any number of rows (its inference is the array of their
predictions), or a 1-D numpy array, which is a single row (its inference is
that row's prediction). Needs ``xgboost`` (``pip install
'runinference[xgboost]'``); ``pandas``, ``scipy`` and ``datatable`` only for
their handlers.
"""
from __future__ import annotations

import functools
import sys
from typing import Any, Callable, Iterable, Optional, Sequence

import numpy

from .common import (check_model_path, describe_value, first_mismatch,
                     getsizeof_sum, read_model_bytes, require, warn_once)
from ..exceptions import (ConfigurationError, InvalidInputError,
                          InvalidInputTypeError)
from .._core.contract import MatrixPredictor, ModelHandler
from .._core.naming import publish
from .._core.results import to_results
from .._core.types import PredictionResult

__all__ = [
    'XGBoostModelHandler',
    'XGBoostModelHandlerNumpy',
    'XGBoostModelHandlerPandas',
    'XGBoostModelHandlerSciPy',
    'XGBoostModelHandlerDatatable',
    'default_xgboost_inference_fn',
]

_HOW_TO_SAVE = "model.save_model('model.json') (or .ubj) after training."


def _kind(x: Any) -> str:
  """Which container an example is, without importing what it is not."""
  if isinstance(x, numpy.ndarray):
    return 'numpy'
  module = type(x).__module__
  if module.startswith('pandas') and hasattr(x, 'columns'):
    return 'pandas'
  if module.startswith('scipy.sparse'):
    return 'scipy'
  if module.startswith('datatable'):
    return 'datatable'
  return 'other'


def _num_rows(x: Any, kind: str) -> int:
  if kind == 'numpy':
    if x.ndim == 1:
      return 1
    if x.ndim != 2:
      raise InvalidInputError(
          f'XGBoost examples must be 1-D (one row) or 2-D (rows x features) '
          f'arrays, got {describe_value(x)}.')
    return x.shape[0]
  if kind == 'datatable':
    return x.nrows
  return x.shape[0]


def _concat(batch: Sequence[Any], kind: str) -> Any:
  """One matrix holding every example's rows, in order."""
  if kind == 'numpy':
    rows = [x.reshape(1, -1) if x.ndim == 1 else x for x in batch]
    widths = {r.shape[1] for r in rows}
    if len(widths) > 1:
      raise InvalidInputError(
          'The examples in this batch have different numbers of features '
          f'{sorted(widths)}; every row must have the features the model was '
          'trained on.')
    return numpy.concatenate(rows, axis=0)
  if kind == 'pandas':
    import pandas
    odd = first_mismatch(batch, lambda frame: list(frame.columns))
    if odd is not None:
      raise InvalidInputError(
          f'DataFrame example {odd.index} has columns {odd.value}, but '
          f'example 0 has {odd.first}; every example needs the same columns '
          'in the same order (the features the model was trained on).')
    return pandas.concat(batch, axis=0, ignore_index=True)
  if kind == 'scipy':
    import scipy.sparse
    return scipy.sparse.vstack(batch, format='csr')
  if kind == 'datatable':
    import datatable
    return datatable.rbind(*batch)
  raise InvalidInputTypeError(f'Cannot batch examples of type {type(batch[0]).__name__}.')


def _predict(model: Any, data: Any, inference_args: dict) -> Any:
  xgboost = require('xgboost', 'XGBoost inference')
  if isinstance(model, xgboost.Booster):
    data = xgboost.DMatrix(data)
  return model.predict(data, **inference_args)


def _block_matrix(fn: Callable, model: Any, features: Any,
                  inference_args: dict) -> Any:
  # An example may be a whole block of rows: its inference is the array of
  # their predictions.
  return list(fn([features], model, inference_args))[0].inference


def default_xgboost_inference_fn(
    batch: Sequence[Any],
    model: Any,
    inference_args: Optional[dict[str, Any]] = None
) -> Iterable[PredictionResult]:
  """Predicts the whole batch with one ``model.predict`` call.

  ``model`` is an ``xgboost.Booster`` (the batch is wrapped in a DMatrix) or
  an sklearn-API ``XGBModel``. If the model's output does not have one entry
  per input row (a custom ``predict``), each example is predicted on its own.
  """
  inference_args = inference_args or {}
  if not batch:
    return []
  kinds = {_kind(x) for x in batch}
  if len(kinds) > 1 or 'other' in kinds:
    odd = next(x for x in batch if _kind(x) != _kind(batch[0]) or
               _kind(x) == 'other')
    raise InvalidInputTypeError(
        'XGBoost examples must all be numpy arrays, pandas DataFrames, SciPy '
        f'sparse matrices or datatable Frames of one kind; got {describe_value(odd)}.')
  kind = kinds.pop()
  counts = [_num_rows(x, kind) for x in batch]
  data = batch[0] if len(batch) == 1 and kind != 'numpy' else _concat(
      batch, kind)
  if kind == 'datatable':  # xgboost reads datatable only via a slow fallback
    data = data.to_numpy()
  predictions = _predict(model, data, inference_args)
  total = sum(counts)
  if numpy.ndim(predictions) == 0 or len(predictions) != total:
    if len(batch) == 1:
      return [PredictionResult(batch[0], predictions)]
    warn_once(
        'xgboost-not-row-aligned',
        'The model returned %s predictions for %d input rows, so they cannot '
        'be split per example; predicting each example on its own instead.',
        'a scalar' if numpy.ndim(predictions) == 0 else len(predictions), total)
    return [
        PredictionResult(x, _predict(model, x, inference_args)) for x in batch
    ]
  inferences = []
  start = 0
  single_rows = kind == 'numpy'
  for x, n in zip(batch, counts):
    if single_rows and x.ndim == 1:
      inferences.append(predictions[start])
    else:
      inferences.append(predictions[start:start + n])
    start += n
  return to_results(batch, inferences)


class XGBoostModelHandler(ModelHandler):
  """Loads an XGBoost model saved with ``save_model`` (JSON or UBJSON).

  Use a subclass for your input type: ``XGBoostModelHandlerNumpy``,
  ``...Pandas``, ``...SciPy`` or ``...Datatable``.
  """
  _kind_name = ''  # which container run_inference accepts ('' = any)
  _type_hint = ''
  _inference_fn = staticmethod(default_xgboost_inference_fn)
  _model_location_attr = '_model_state'

  def __init__(
      self,
      model_class: Callable[..., Any],
      model_state: str,
      inference_fn: Callable[..., Iterable[PredictionResult]] = (
          default_xgboost_inference_fn),
      **kwargs):
    """
    Args:
      model_class: the model's class, e.g. ``xgboost.XGBClassifier``,
        ``xgboost.XGBRegressor`` or ``xgboost.Booster``.
      model_state: path or URI of the saved model (``model.save_model``).
      inference_fn: ``fn(batch, model, inference_args)`` returning one
        PredictionResult per example.
      kwargs: batching and sharing options of ``ModelHandler``, ``env_vars``.
    """
    super().__init__(**kwargs)
    if not callable(model_class):
      raise ConfigurationError(
          'model_class must be the XGBoost model class (e.g. '
          f'xgboost.XGBClassifier or xgboost.Booster), got {model_class!r}.')
    self._model_class = model_class
    self._model_state = check_model_path(
        model_state, 'saved XGBoost model', 'model_state')
    if not callable(inference_fn):
      raise ConfigurationError(f'inference_fn must be callable, got {inference_fn!r}.')
    self._inference_fn = inference_fn

  def load_model(self) -> Any:
    require('xgboost', type(self).__name__)
    data = read_model_bytes(self._model_state, 'XGBoost model', _HOW_TO_SAVE)
    model = self._model_class()
    model.load_model(bytearray(data))
    return model

  def run_inference(self, batch, model, inference_args=None):
    if self._kind_name:
      for i, x in enumerate(batch):
        if _kind(x) != self._kind_name:
          raise InvalidInputTypeError(
              f'{type(self).__name__} expects each example to be '
              f'{self._type_hint}, but example {i} is {describe_value(x)}. '
              f'{_suggest(x)}')
    return self._inference_fn(batch, model, inference_args)

  def get_num_bytes(self, batch: Sequence[Any]) -> int:
    return getsizeof_sum(batch)

  def get_metrics_namespace(self) -> str:
    return 'BeamML_XGBoost'

  def matrix_predictor(self) -> Optional[MatrixPredictor]:
    if self._kind_name not in ('numpy', 'pandas'):
      return None
    if self._inference_fn is default_xgboost_inference_fn:
      return MatrixPredictor(_predict, takes=self._kind_name)
    return MatrixPredictor(
        functools.partial(_block_matrix, self._inference_fn),
        takes=self._kind_name)

  def __repr__(self):
    return (f'{type(self).__name__}(model_class='
            f'{getattr(self._model_class, "__name__", self._model_class)}, '
            f'model_state={self._model_state!r})')


def _suggest(x: Any) -> str:
  handler = {
      'numpy': 'XGBoostModelHandlerNumpy',
      'pandas': 'XGBoostModelHandlerPandas',
      'scipy': 'XGBoostModelHandlerSciPy',
      'datatable': 'XGBoostModelHandlerDatatable',
  }.get(_kind(x))
  if handler:
    return f'Use {handler} for this input type.'
  return ('Convert it in a preprocess step, e.g. '
          'handler.with_preprocess_fn(numpy.asarray).')


class XGBoostModelHandlerNumpy(XGBoostModelHandler):
  """XGBoost on numpy examples: a 2-D array of rows, or a 1-D array that is
  one row."""
  _kind_name = 'numpy'
  _type_hint = 'a numpy.ndarray (2-D rows x features, or 1-D for one row)'

  def get_num_bytes(self, batch: Sequence[numpy.ndarray]) -> int:
    # sys.getsizeof counts the data only for arrays that own it.
    return sum(
        sys.getsizeof(x) + (x.nbytes if getattr(x, 'base', None) is not None
                            else 0) for x in batch)


class XGBoostModelHandlerPandas(XGBoostModelHandler):
  """XGBoost on pandas DataFrame examples (any number of rows each)."""
  _kind_name = 'pandas'
  _type_hint = 'a pandas.DataFrame'

  def get_num_bytes(self, batch: Sequence[Any]) -> int:
    return sum(int(df.memory_usage(deep=True).sum()) for df in batch)


class XGBoostModelHandlerSciPy(XGBoostModelHandler):
  """XGBoost on SciPy sparse matrix examples (e.g. ``csr_matrix``)."""
  _kind_name = 'scipy'
  _type_hint = 'a SciPy sparse matrix (e.g. scipy.sparse.csr_matrix)'

  def get_num_bytes(self, batch: Sequence[Any]) -> int:
    total = 0
    for x in batch:
      total += sys.getsizeof(x)
      for part in ('data', 'indices', 'indptr', 'row', 'col', 'offsets'):
        total += getattr(getattr(x, part, None), 'nbytes', 0)
    return total


class XGBoostModelHandlerDatatable(XGBoostModelHandler):
  """XGBoost on datatable Frame examples (needs the ``datatable`` package)."""
  _kind_name = 'datatable'
  _type_hint = 'a datatable.Frame'


publish(globals(), 'runinference.xgboost_inference', alias=True)
