"""Model calls of the columnar path: a handler's model run once on a whole
feature matrix, and its output turned into named columns.

``predictor_for(handler)`` finds how a handler's model predicts on a 2-D
matrix (one small adapter per supported handler); ``output_columns`` names
what the model returned. Knows nothing of Beam or of chunk types."""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Optional, Sequence, Union

import numpy

# fn(model, features, inference_args) -> predictions (one entry per row)
MatrixFn = Callable[[Any, Any, dict], Any]


@dataclasses.dataclass(frozen=True)
class MatrixPredictor:
  """Runs a loaded model on the features of many rows at once.

  ``takes`` is ``'numpy'`` (a 2-D matrix) or ``'pandas'`` (a DataFrame of the
  feature columns, for models that need column names)."""
  fn: MatrixFn
  takes: str = 'numpy'

  def __call__(self, model, features, inference_args: dict):
    return self.fn(model, features, inference_args)


SUPPORTED = (
    'SklearnModelHandlerNumpy', 'SklearnModelHandlerPandas',
    'XGBoostModelHandlerNumpy', 'XGBoostModelHandlerPandas',
    'OnnxModelHandlerNumpy', 'PytorchModelHandlerTensor')


# -- the adapters ---------------------------------------------------------------
def _call_method(name: str, model, x, args):
  return getattr(model, name)(x, **args)


def _rows_fn(fn, model, x, args):
  # A 2-D array is a sequence of 1-D rows, so a batch inference fn written
  # for a list of rows takes the matrix as it is.
  return fn(model, x, args)


def _pandas_rows_fn(fn, model, frame, args):
  # SklearnModelHandlerPandas inference fns take a list of DataFrames and
  # return (predictions, per-row splits).
  return fn(model, [frame], args)[0]


def _sklearn_numpy(handler) -> MatrixPredictor:
  from .._handlers import sklearn as sklearn_inference
  fn = handler._model_inference_fn
  if fn is sklearn_inference._default_numpy_inference_fn:
    return MatrixPredictor(functools.partial(_call_method, 'predict'))
  return MatrixPredictor(functools.partial(_rows_fn, fn))


def _sklearn_pandas(handler) -> MatrixPredictor:
  from .._handlers import sklearn as sklearn_inference
  fn = handler._model_inference_fn
  if fn is sklearn_inference._default_pandas_inference_fn:
    return MatrixPredictor(functools.partial(_call_method, 'predict'), 'pandas')
  return MatrixPredictor(functools.partial(_pandas_rows_fn, fn), 'pandas')


def _xgboost_predict(model, x, args):
  import xgboost
  if isinstance(model, xgboost.Booster):
    x = xgboost.DMatrix(x)
  return model.predict(x, **args)


def _xgboost_block(handler, model, x, args):
  # An XGBoost example may be a whole block of rows: its inference is the
  # array of their predictions.
  return list(handler.run_inference([x], model, args))[0].inference


def _xgboost(takes: str):
  def adapter(handler) -> MatrixPredictor:
    from .._handlers import xgboost as xgboost_inference
    if handler._inference_fn is xgboost_inference.default_xgboost_inference_fn:
      return MatrixPredictor(_xgboost_predict, takes)
    return MatrixPredictor(functools.partial(_xgboost_block, handler), takes)
  return adapter


def _onnx_feed(session, x, args) -> dict:
  from .._handlers.onnx import _cast
  first = session.get_inputs()[0]
  feed = {first.name: _cast(first.type, numpy.ascontiguousarray(x))}
  feed.update(args)
  return feed


def _onnx_first_output(session, x, args):
  from .._handlers.onnx import _run
  return _run(session, _onnx_feed(session, x, args))[0]


def _onnx_all_outputs(session, x, args):
  from .._handlers.onnx import _run
  names = [o.name for o in session.get_outputs()]
  return dict(zip(names, _run(session, _onnx_feed(session, x, args))))


def _onnx(handler) -> MatrixPredictor:
  from .._handlers import onnx as onnx_inference
  fn = handler._model_inference_fn
  if fn is onnx_inference.default_numpy_inference_fn:
    return MatrixPredictor(_onnx_first_output)
  if fn is onnx_inference.all_outputs_inference_fn:
    return MatrixPredictor(_onnx_all_outputs)
  return MatrixPredictor(functools.partial(_rows_fn, fn))


def _torch_forward(model, x, args):
  import torch
  param = next(iter(model.parameters()), None)
  device = param.device if param is not None else torch.device('cpu')
  dtype = (param.dtype if param is not None and param.is_floating_point()
           else torch.float32)
  with torch.no_grad():
    tensor = torch.from_numpy(numpy.ascontiguousarray(x)).to(
        device=device, dtype=dtype)
    return model(tensor, **args)


def _torch(handler) -> MatrixPredictor:
  from .._handlers import pytorch as pytorch_inference
  if handler._inference_fn is not pytorch_inference.default_tensor_inference_fn:
    raise TypeError(
        'RunInferenceColumnar runs PytorchModelHandlerTensor with its default '
        'inference_fn only (model(matrix)); for a custom one pass '
        'predict_fn=lambda model, matrix, inference_args: ... that calls the '
        'model on the feature matrix (a numpy array) yourself.')
  return MatrixPredictor(_torch_forward)


_ADAPTERS = {
    'runinference.sklearn_inference.SklearnModelHandlerNumpy': _sklearn_numpy,
    'runinference.sklearn_inference.SklearnModelHandlerPandas': _sklearn_pandas,
    'runinference.xgboost_inference.XGBoostModelHandlerNumpy': _xgboost('numpy'),
    'runinference.xgboost_inference.XGBoostModelHandlerPandas':
        _xgboost('pandas'),
    'runinference.onnx_inference.OnnxModelHandlerNumpy': _onnx,
    'runinference.pytorch_inference.PytorchModelHandlerTensor': _torch,
}


def unwrap(handler):
  """The framework handler under ``with_*`` wrappers; TypeError if a wrapper
  adds per-row pre/post-processing (the columnar path has no rows to give
  them)."""
  from .._core.contract import _DelegatingModelHandler
  pre, post = handler.get_preprocess_fns(), handler.get_postprocess_fns()
  if pre or post:
    raise TypeError(
        f'{type(handler).__name__} has per-row '
        f'{"pre" if pre else "post"}processing fns (with_preprocess_fn / '
        'with_postprocess_fn), which RunInferenceColumnar cannot apply: it '
        'has no per-row objects. Transform whole chunks with a beam.Map '
        'before or after it instead.')
  while isinstance(handler, _DelegatingModelHandler):
    handler = handler._base
  return handler


def predictor_for(handler, predict_fn: Optional[MatrixFn] = None
                  ) -> MatrixPredictor:
  """How ``handler``'s model predicts on a matrix; TypeError if unknown."""
  if not callable(getattr(handler, 'load_model', None)):
    raise TypeError(
        'RunInferenceColumnar needs a ModelHandler (with load_model), got '
        f'{type(handler).__name__}.')
  base = unwrap(handler)
  if predict_fn is not None:
    if not callable(predict_fn):
      raise TypeError(f'predict_fn must be callable, got {predict_fn!r}.')
    return MatrixPredictor(predict_fn)
  for cls in type(base).__mro__:
    adapter = _ADAPTERS.get(f'{cls.__module__}.{cls.__qualname__}')
    if adapter is not None:
      return adapter(base)
  raise TypeError(
      f'RunInferenceColumnar cannot run {type(base).__name__} on a feature '
      'matrix: it knows how for ' + ', '.join(SUPPORTED) + '. Use '
      'runinference.base.RunInference for one example per element, or pass '
      'predict_fn=lambda model, matrix, inference_args: ... to call the '
      "handler's loaded model on the 2-D numpy feature matrix yourself.")


# -- outputs -------------------------------------------------------------------
def _as_numpy(values) -> numpy.ndarray:
  if hasattr(values, 'detach') and hasattr(values, 'cpu'):  # torch.Tensor
    values = values.detach().cpu().numpy()
  elif hasattr(values, 'to_numpy'):  # pandas / Arrow
    values = values.to_numpy()
  return numpy.asarray(values)


def _check(values: numpy.ndarray, rows: int, what: str) -> numpy.ndarray:
  if values.ndim == 0 or len(values) != rows:
    got = 'a scalar' if values.ndim == 0 else f'{len(values)} rows'
    raise ValueError(
        f'The model returned {got} for {what} on a matrix of {rows} rows; '
        'RunInferenceColumnar needs one prediction per row.')
  if values.ndim > 2:
    raise ValueError(
        f'The model returned an array of shape {values.shape} for {what}; '
        'RunInferenceColumnar makes columns from 1-D (one value per row) or '
        '2-D (a list per row, or one column per name) outputs only.')
  return values


def output_columns(predictions, rows: int,
                   output_column: Union[str, Sequence[str]]) -> list:
  """``[(name, array)]`` for the model's ``predictions`` on ``rows`` rows.

  * ``output_column`` a name: a 1-D output is that column; a 2-D output is
    one list column (a ``(rows, 1)`` output is squeezed to a plain column);
    a dict of outputs (e.g. ONNX's every output) is a column
    ``<output_column>_<output name>`` per output.
  * a list of names: one column per name -- the columns of a 2-D output
    (e.g. ``predict_proba``'s classes) or the outputs of a dict, in order.
  """
  if isinstance(predictions, dict):
    items = [(k, _check(_as_numpy(v), rows, f'output {k!r}'))
             for k, v in predictions.items()]
    if isinstance(output_column, str):
      out = []
      for k, v in items:
        if v.ndim == 2 and v.shape[1] == 1:
          v = v[:, 0]
        out.append((f'{output_column}_{k}', v))
      return out
    if len(output_column) != len(items):
      raise ValueError(
          f'output_column names {len(output_column)} columns, but the model '
          f'returned {len(items)} outputs {[k for k, _ in items]}.')
    return [(name, v) for name, (_, v) in zip(output_column, items)]
  values = _check(_as_numpy(predictions), rows, 'the predictions')
  if isinstance(output_column, str):
    if values.ndim == 2 and values.shape[1] == 1:
      values = values[:, 0]
    return [(output_column, values)]
  width = 1 if values.ndim == 1 else values.shape[1]
  if width != len(output_column):
    raise ValueError(
        f'output_column names {len(output_column)} columns '
        f'{list(output_column)}, but the model returned {width} value(s) per '
        'row.')
  if values.ndim == 1:
    return [(output_column[0], values)]
  return [(name, values[:, j]) for j, name in enumerate(output_column)]
