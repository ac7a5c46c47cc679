"""ONNX Runtime handler: numpy examples in, one ``InferenceSession`` per model.

Import-compatible with ``apache_beam.ml.inference.onnx_inference``. Needs
``onnxruntime`` (``pip install 'runinference[onnx]'``); the ``onnx`` package
itself is not needed to run models.
"""
from __future__ import annotations

import functools
import logging
from typing import Any, Callable, NamedTuple, Optional, Sequence

import numpy

from .common import (ModelLoadError, check_model_path, describe_value,
                     read_model_bytes, require, stack_numpy)
from ..exceptions import ConfigurationError, InvalidInputError
from .._core.contract import MatrixPredictor, ModelHandler
from .._core.naming import publish
from .._core.results import to_results

__all__ = [
    'OnnxModelHandlerNumpy',
    'default_numpy_inference_fn',
    'all_outputs_inference_fn',
]

_LOGGER = logging.getLogger('runinference.onnx_inference')
_WHO = 'OnnxModelHandlerNumpy'
_HOW_TO_SAVE = (
    "e.g. skl2onnx.to_onnx(model, X[:1]) or torch.onnx.export(model, x, "
    "'model.onnx'), then write model.SerializeToString() to the path.")
_DEFAULT_PROVIDERS = ('CUDAExecutionProvider', 'CPUExecutionProvider')

# ONNX tensor element types -> numpy dtypes we cast numeric examples to.
_ONNX_NUMPY = {
    'tensor(float)': numpy.float32,
    'tensor(double)': numpy.float64,
    'tensor(float16)': numpy.float16,
    'tensor(int64)': numpy.int64,
    'tensor(int32)': numpy.int32,
    'tensor(int16)': numpy.int16,
    'tensor(int8)': numpy.int8,
    'tensor(uint8)': numpy.uint8,
    'tensor(bool)': numpy.bool_,
}


def _cast(type_str: str, array: numpy.ndarray) -> numpy.ndarray:
  """Casts a numeric batch to the dtype the model declares for its input."""
  want = _ONNX_NUMPY.get(type_str)
  if want is not None and array.dtype != want and array.dtype.kind in 'biuf':
    return array.astype(want, copy=False)
  return array


def _ort_inputs(
    session, batch: Sequence[Any],
    inference_args: Optional[dict[str, Any]]) -> dict[str, Any]:
  """Builds the feed dict: one stacked array for a single-input model, or
  one per name when each example is a dict ``{input_name: array}``."""
  inputs = session.get_inputs()
  if len(batch) and isinstance(batch[0], dict):
    names = list(batch[0])
    declared = {i.name: i.type for i in inputs}
    unknown = [n for n in names if n not in declared]
    if unknown:
      raise InvalidInputError(
          f'{_WHO}: example keys {unknown} are not inputs of the model; its '
          f'inputs are {list(declared)}.')
    feed = {}
    for name in names:
      try:
        column = [x[name] for x in batch]
      except (KeyError, TypeError) as e:
        raise InvalidInputError(
            f'{_WHO}: every example must be a dict with the same keys '
            f'{names}; one lacks {name!r}.') from e
      feed[name] = _cast(
          declared[name], stack_numpy(column, f'{_WHO} (input {name!r})'))
  else:
    first = inputs[0]
    feed = {
        first.name: _cast(
            first.type,
            stack_numpy(
                batch, _WHO,
                ' (for a model with several inputs, give each example as a '
                'dict {input_name: array})'))
    }
  if inference_args:
    feed.update(inference_args)
  return feed


def _run(session, feed: dict, output_names=None) -> list:
  try:
    return session.run(output_names, feed)
  except Exception as e:  # onnxruntime's own error types are not exported
    if type(e).__module__.startswith('onnxruntime'):
      declared = ', '.join(
          f'{i.name}: {i.type} {i.shape}' for i in session.get_inputs())
      given = ', '.join(
          f'{k}: {describe_value(v)}' for k, v in feed.items())
      raise InvalidInputError(
          f'{_WHO}: the ONNX model rejected the batch '
          f'({type(e).__name__}: {e}). The model takes [{declared}]; it was '
          f'given [{given}] (first dimension = batch size). Make each example '
          'one row of what the model expects.') from e
    raise


def default_numpy_inference_fn(
    inference_session: Any,
    batch: Sequence[numpy.ndarray],
    inference_args: Optional[dict[str, Any]] = None) -> Any:
  """Stacks the batch into the model's (first) input and returns its first
  output. ``inference_args`` are extra named inputs fed as they are."""
  feed = _ort_inputs(inference_session, batch, inference_args)
  return _run(inference_session, feed)[0]


def all_outputs_inference_fn(
    inference_session: Any,
    batch: Sequence[numpy.ndarray],
    inference_args: Optional[dict[str, Any]] = None) -> dict[str, Any]:
  """Like the default, but returns every output: each example's inference
  becomes ``{output_name: row}`` (e.g. a classifier's label and scores)."""
  feed = _ort_inputs(inference_session, batch, inference_args)
  names = [o.name for o in inference_session.get_outputs()]
  return dict(zip(names, _run(inference_session, feed)))


def _matrix_feed(session, features, inference_args: dict) -> dict:
  first = session.get_inputs()[0]
  feed = {first.name: _cast(first.type, numpy.ascontiguousarray(features))}
  feed.update(inference_args)
  return feed


def _first_output_matrix(session, features, inference_args: dict) -> Any:
  return _run(session, _matrix_feed(session, features, inference_args))[0]


def _all_outputs_matrix(session, features, inference_args: dict) -> dict:
  names = [o.name for o in session.get_outputs()]
  return dict(
      zip(names, _run(session, _matrix_feed(session, features,
                                            inference_args))))


def _rows_matrix(fn: Callable, session, features, inference_args: dict) -> Any:
  # A 2-D array is a sequence of rows: a batch fn takes the matrix as it is.
  return fn(session, features, inference_args)


class NodeInfo(NamedTuple):
  """A model input/output as ``get_inputs()`` describes it (picklable, unlike
  onnxruntime's NodeArg, so it crosses process boundaries)."""
  name: str
  type: str
  shape: list


@functools.lru_cache(maxsize=None)
def _session_class():
  ort = require('onnxruntime', _WHO)

  class InferenceSession(ort.InferenceSession):
    """An ``onnxruntime.InferenceSession`` whose input/output descriptions
    are picklable, so the session also works when shared across processes
    (``large_model=True``/``model_copies``)."""
    def get_inputs(self):
      return [NodeInfo(i.name, i.type, list(i.shape))
              for i in super().get_inputs()]

    def get_outputs(self):
      return [NodeInfo(o.name, o.type, list(o.shape))
              for o in super().get_outputs()]

  InferenceSession.__module__ = __name__
  InferenceSession.__qualname__ = 'InferenceSession'
  return InferenceSession


def _choose_providers(requested, provider_options):
  """Keeps the requested providers this onnxruntime build has; falls back
  to the CPU (with a log line) when none is available."""
  ort = require('onnxruntime', _WHO)
  available = set(ort.get_available_providers())
  requested = list(requested or _DEFAULT_PROVIDERS)
  options = list(provider_options) if provider_options else None
  if options is not None and len(options) != len(requested):
    raise ConfigurationError(
        f'provider_options must have one entry per provider: got '
        f'{len(options)} options for providers {requested}.')
  keep = [
      i for i, p in enumerate(requested)
      if (p[0] if isinstance(p, tuple) else p) in available
  ]
  dropped = [requested[i] for i in range(len(requested)) if i not in keep]
  if not keep:
    _LOGGER.warning(
        '%s: none of the requested ONNX Runtime providers %s is available '
        '(this build has %s); running on CPUExecutionProvider.', _WHO,
        requested, sorted(available))
    return ['CPUExecutionProvider'], None
  if dropped:
    _LOGGER.info(
        '%s: providers %s are not available here (have %s); using %s.', _WHO,
        dropped, sorted(available), [requested[i] for i in keep])
  return ([requested[i] for i in keep],
          [options[i] for i in keep] if options is not None else None)


class OnnxModelHandlerNumpy(ModelHandler):
  """Runs an ONNX model with ONNX Runtime on numpy examples.

  Each example is one row of the model's first input (the batch is stacked
  along a new first axis and cast to the input's declared numeric dtype),
  or a dict ``{input_name: array}`` for models with several inputs.

  Example::

    pcoll | RunInference(OnnxModelHandlerNumpy('gs://bucket/model.onnx'))
  """
  # Class-level defaults: subclasses that skip __init__ still work.
  _session_options = None
  _providers = _DEFAULT_PROVIDERS
  _provider_options = None
  _model_inference_fn = staticmethod(default_numpy_inference_fn)
  _model_location_attr = '_model_uri'

  def overlap_by_default(self) -> bool:
    return any(p in ('CUDAExecutionProvider', 'TensorrtExecutionProvider')
               for p in self._providers)  # the CPU is free while it runs

  def __init__(  # pylint: disable=dangerous-default-value
      self,
      model_uri: str,
      session_options=None,
      providers=['CUDAExecutionProvider', 'CPUExecutionProvider'],
      provider_options=None,
      *,
      inference_fn: Callable[..., Any] = default_numpy_inference_fn,
      **kwargs):
    """
    Args:
      model_uri: path or URI of the ``.onnx`` file (any Beam filesystem).
      session_options: an ``onnxruntime.SessionOptions``.
      providers: execution providers in priority order; those this
        onnxruntime build lacks are dropped (CPU if none is left).
      provider_options: one options dict per provider.
      inference_fn: ``fn(session, batch, inference_args)`` returning the
        batched predictions; ``all_outputs_inference_fn`` returns every
        output.
      kwargs: batching and sharing options of ``ModelHandler``
        (``min_batch_size``, ``max_batch_size``, ``large_model``, ...) and
        ``env_vars``.
    """
    super().__init__(**kwargs)
    self._model_uri = check_model_path(model_uri, 'ONNX model')
    self._session_options = session_options
    self._providers = list(providers) if providers else list(
        _DEFAULT_PROVIDERS)
    self._provider_options = provider_options
    if not callable(inference_fn):
      raise ConfigurationError(f'inference_fn must be callable, got {inference_fn!r}.')
    self._model_inference_fn = inference_fn

  def load_model(self):
    """Reads the model (remote paths too) and opens an InferenceSession."""
    session_class = _session_class()
    data = read_model_bytes(self._model_uri, 'ONNX model', _HOW_TO_SAVE)
    providers, options = _choose_providers(
        self._providers, self._provider_options)
    try:
      return session_class(
          data,
          sess_options=self._session_options,
          providers=providers,
          provider_options=options)
    except Exception as e:  # pylint: disable=broad-except
      if type(e).__module__.startswith('onnxruntime'):
        raise ModelLoadError(
            f'{_WHO}: {self._model_uri!r} is not a model ONNX Runtime can load '
            f'({type(e).__name__}: {e}). Check that it is an .onnx file '
            f'(not a pickle/zip/SavedModel); {_HOW_TO_SAVE}') from e
      raise

  def run_inference(self, batch, inference_session, inference_args=None):
    if not batch:
      return []
    predictions = self._model_inference_fn(
        inference_session, batch, inference_args)
    return to_results(batch, predictions, self._model_uri)

  def get_num_bytes(self, batch: Sequence[numpy.ndarray]) -> int:
    total = 0
    for x in batch:
      if isinstance(x, dict):
        total += sum(getattr(v, 'nbytes', 0) for v in x.values())
      else:
        total += getattr(x, 'nbytes', 0)
    return total

  def get_metrics_namespace(self) -> str:
    return 'BeamML_Onnx'

  def matrix_predictor(self) -> MatrixPredictor:
    fn = self._model_inference_fn
    if fn is default_numpy_inference_fn:
      return MatrixPredictor(_first_output_matrix)
    if fn is all_outputs_inference_fn:
      return MatrixPredictor(_all_outputs_matrix)
    return MatrixPredictor(functools.partial(_rows_matrix, fn))



publish(globals(), 'runinference.onnx_inference', alias=True)
