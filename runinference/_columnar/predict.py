"""Model calls of the columnar path: a handler's model run once on a whole
feature matrix, and its output turned into named columns.

``predictor_for(handler)`` asks the handler how its model predicts on a 2-D
matrix (its ``matrix_predictor()`` hook); ``output_columns`` names what the
model returned. Knows nothing of Beam or of chunk types."""
from __future__ import annotations

from typing import Any, Callable, Optional, Sequence, Union

import numpy

from .._core.contract import MatrixPredictor
from ..exceptions import (ConfigurationError, ConfigurationTypeError,
                          ResultCountError)

# fn(model, features, inference_args) -> predictions (one entry per row)
MatrixFn = Callable[[Any, Any, dict], Any]


def predictor_for(handler, predict_fn: Optional[MatrixFn] = None
                  ) -> MatrixPredictor:
  """How ``handler``'s loaded model predicts on a whole feature matrix:
  ``predict_fn`` if given, else the handler's ``matrix_predictor()`` hook.
  TypeError if neither (naming the handler and what to do)."""
  if not callable(getattr(handler, 'load_model', None)):
    raise ConfigurationTypeError(
        'RunInferenceColumnar needs a ModelHandler (with load_model), got '
        f'{type(handler).__name__}.')
  name = type(handler).__name__
  pre, post = handler.get_preprocess_fns(), handler.get_postprocess_fns()
  if pre or post:
    raise ConfigurationTypeError(
        f'{name} has per-row {"pre" if pre else "post"}processing fns '
        '(with_preprocess_fn / with_postprocess_fn), which '
        'RunInferenceColumnar cannot apply: it has no per-row objects. '
        'Transform whole chunks with a beam.Map before or after it instead.')
  if predict_fn is not None:
    if not callable(predict_fn):
      raise ConfigurationTypeError(f'predict_fn must be callable, got {predict_fn!r}.')
    return MatrixPredictor(predict_fn)
  from .._core.keyed import KeyedModelHandler
  if isinstance(handler, KeyedModelHandler):
    raise ConfigurationTypeError(
        f'RunInferenceColumnar cannot run a KeyedModelHandler ({name}): a '
        'chunk of rows has no per-row keys. Split the chunks by key and use '
        'one RunInferenceColumnar per model.')
  hook = getattr(handler, 'matrix_predictor', None)
  predictor = hook() if callable(hook) else None
  if predictor is None:
    raise ConfigurationTypeError(
        f'RunInferenceColumnar cannot run {name} on a feature matrix: its '
        'matrix_predictor() returns None. Implement '
        'matrix_predictor() on the handler (return a '
        'runinference.columnar.MatrixPredictor), or pass '
        'predict_fn=lambda model, matrix, inference_args: ... to call the '
        "loaded model on the 2-D numpy feature matrix yourself; or use "
        'runinference.base.RunInference for one example per element.')
  if not isinstance(predictor, MatrixPredictor):
    raise ConfigurationTypeError(
        f'{name}.matrix_predictor() must return a MatrixPredictor or None, '
        f'got {type(predictor).__name__}.')
  return predictor


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
    raise ResultCountError(
        f'The model returned {got} for {what} on a matrix of {rows} rows; '
        'RunInferenceColumnar needs one prediction per row.')
  if values.ndim > 2:
    raise ConfigurationError(
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
      raise ConfigurationError(
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
    raise ConfigurationError(
        f'output_column names {len(output_column)} columns '
        f'{list(output_column)}, but the model returned {width} value(s) per '
        'row.')
  if values.ndim == 1:
    return [(output_column[0], values)]
  return [(name, values[:, j]) for j, name in enumerate(output_column)]
