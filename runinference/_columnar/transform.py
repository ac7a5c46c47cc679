"""RunInferenceColumnar: options checked at construction, a one-step expand
(the work is in ``scorer.py``; the Beam shell in ``dofn.py``)."""
from __future__ import annotations

import time
import uuid
from typing import Any, Callable, Optional, Sequence, Union

import apache_beam as beam

from .._core.failures import FAILED_INFERENCES, ErrorPolicy
from .._core.types import RunInferenceDLQ
from ..exceptions import ConfigurationError, ConfigurationTypeError
from .dofn import AUTO, ColumnarDoFn
from .predict import predictor_for
from .scorer import ColumnarScorer

__all__ = ['RunInferenceColumnar']

_MAIN = 'main'


def _names(value, what: str) -> list:
  if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
    hint = f"; write [{value!r}]" if isinstance(value, str) else ''
    raise ConfigurationTypeError(
        f'{what} must be a list of column names, got {value!r}{hint}.')
  names = list(value)
  if not names:
    raise ConfigurationError(f'{what} must name at least one column.')
  dupes = sorted({str(c) for c in names if names.count(c) > 1})
  if dupes:
    raise ConfigurationError(f'{what} names column(s) {dupes} more than once.')
  return names


class RunInferenceColumnar(beam.PTransform):
  """Runs a model on chunks of rows and appends its predictions as columns.

  Input: a PCollection of ``pyarrow.RecordBatch``, ``pyarrow.Table`` or
  ``pandas.DataFrame`` chunks. Output: each chunk, same type, with the
  prediction column(s) appended (``num_inferences`` counts rows).
  """
  def __init__(
      self,
      model_handler,
      feature_columns: Sequence[str],
      output_column: Union[str, Sequence[str]] = 'prediction',
      *,
      predict_fn: Optional[Callable[[Any, Any, dict], Any]] = None,
      dtype=None,
      inference_args: Optional[dict[str, Any]] = None,
      metrics_namespace: Optional[str] = None,
      rows_per_call: Union[int, str, None] = AUTO,
      overlap: bool = True):
    """
    Args:
      model_handler: loads the model; how the model runs on a whole matrix
        comes from its ``matrix_predictor()`` hook (scikit-learn, XGBoost,
        ONNX and PyTorch tensor handlers have one; so can your own), or from
        ``predict_fn`` (any handler).
      feature_columns: the columns, in the model's feature order, that make
        the ``(rows, len(feature_columns))`` matrix the model runs on.
      output_column: the name of the prediction column; a 2-D output (e.g.
        ``predict_proba``) becomes one list column, a dict of outputs one
        ``<name>_<output>`` column each. A list of names: one column per
        column of a 2-D output (or per output of a dict), in order.
      predict_fn: ``fn(model, matrix, inference_args)`` returning one
        prediction per row, instead of the handler's own model call, e.g.
        ``lambda m, x, a: m.predict_proba(x)``.
      dtype: numpy dtype of the feature matrix (default: the columns' common
        type; integer columns with nulls become float64 with NaN).
      inference_args: extra keyword arguments for every model call.
      metrics_namespace: namespace of the metrics (default: the handler's).
      rows_per_call: gather consecutive chunks of a bundle until they hold
        this many rows and run the model ONCE on all of them (each chunk
        still comes out on its own, with its timestamp and window). Fewer,
        larger calls pay a model's per-call cost once; chunks wait until the
        bundle ends at the latest. Default 'auto': learned from the calls'
        times -- enough rows that a call's fixed cost is about 5% of it
        (one chunk first, then doubling until the fixed and per-row parts
        are known). None: one call per chunk; an int: that many rows.
      overlap: score on a thread of its own, so the model runs on one chunk
        while the pipeline makes the next (default True: a chunk's call is
        native code, outside the GIL). False: score on the step's thread.
    """
    super().__init__()
    self._features = _names(feature_columns, 'feature_columns')
    if isinstance(output_column, str):
      outputs = [output_column]
    else:
      outputs = _names(output_column, 'output_column')
    shared = [c for c in outputs if c in self._features]
    if shared:
      raise ConfigurationError(
          f'output_column {shared} is also a feature column; predictions '
          'need columns of their own.')
    if inference_args is not None and not isinstance(inference_args, dict):
      raise ConfigurationTypeError(
          'inference_args must be a dict of keyword arguments for the model '
          f'call, got {type(inference_args).__name__}.')
    self._predictor = predictor_for(model_handler, predict_fn)
    validate = getattr(model_handler, 'validate_inference_args', None)
    if predict_fn is None and callable(validate):
      validate(inference_args)
    self._handler = model_handler
    self._output = output_column if isinstance(output_column, str) else outputs
    self._dtype = dtype
    self._inference_args = inference_args
    self._namespace = metrics_namespace
    if rows_per_call not in (None, AUTO) and (
        isinstance(rows_per_call, bool) or not isinstance(rows_per_call, int)
        or rows_per_call < 1):
      raise ConfigurationError(
          f"rows_per_call must be 'auto', a positive int or None, got "
          f'{rows_per_call!r}.')
    self._rows_per_call = rows_per_call
    if not isinstance(overlap, bool):
      raise ConfigurationTypeError(f'overlap must be True or False, got {overlap!r}.')
    self._overlap = overlap
    self._policy = ErrorPolicy()

  def with_exception_handling(
      self, *, exc_class=Exception, threshold: float = 1, bisect: bool = True):
    """Send failing rows to a dead-letter output instead of failing.

    The transform then returns ``(main, RunInferenceDLQ)``. A chunk whose
    model call fails is bisected by rows, so only the rows that fail reach
    ``failed_inferences``, each as ``(one_row_chunk, (exc_type, repr,
    traceback_lines))``; the other rows still reach ``main`` with their
    predictions. A chunk every row of which fails alike (a missing feature
    column) is one record ``(chunk, error)``.

    Args:
      exc_class: exception class(es) to catch; others fail the pipeline.
      threshold: fail the pipeline when more than this share of rows fail.
      bisect: split failing chunks to isolate the bad rows (default True);
        with False a failing model call dead-letters all its rows as one
        record.
    """
    if not 0 <= threshold <= 1:
      raise ConfigurationError(f'threshold must be between 0 and 1, got {threshold}.')
    self._policy = ErrorPolicy(
        enabled=True, exc_class=exc_class, threshold=threshold, bisect=bisect)
    return self

  def _scorer(self) -> ColumnarScorer:
    return ColumnarScorer(
        self._handler,
        self._features,
        self._output,
        predictor=self._predictor,
        inference_args=self._inference_args,
        namespace=self._namespace,
        policy=self._policy,
        tag=uuid.uuid4().hex,
        dtype=self._dtype,
        clock=time)

  def expand(self, pcoll):
    hints = {}
    get_hints = getattr(self._handler, 'get_resource_hints', None)
    if callable(get_hints):
      hints = get_hints() or {}
    pardo = beam.ParDo(ColumnarDoFn(
        self._scorer(), self._rows_per_call,
        self._overlap)).with_resource_hints(**hints)
    if not self._policy.enabled:
      return pcoll | 'BeamML_RunInferenceColumnar' >> pardo
    out = pcoll | 'BeamML_RunInferenceColumnar' >> pardo.with_outputs(
        FAILED_INFERENCES, main=_MAIN)
    return out[_MAIN], RunInferenceDLQ(
        failed_inferences=out[FAILED_INFERENCES],
        failed_preprocessing=[],
        failed_postprocessing=[])


