"""TensorFlow handlers: numpy or ``tf.Tensor`` examples into a Keras model or
SavedModel, and ``tf.train.Example`` records into a SavedModel signature.

Import-compatible with ``apache_beam.ml.inference.tensorflow_inference``
(``TFModelHandlerNumpy``, ``TFModelHandlerTensor``, ``ModelType``), plus
``TFExampleModelHandler``, which replaces tfx_bsl's RunInference for models
that take serialized ``tf.train.Example`` s. TensorFlow is imported only when a
model loads or runs, so this module imports without it; ``tensorflow_hub`` is
needed only for TF Hub URLs.
"""
from __future__ import annotations

import enum
import logging
import sys
from typing import Any, Callable, Iterable, Optional, Sequence

import numpy

from . import tf_files
from .common import (ConfigurationError, ModelLoadError, check_model_path,
                     check_same_shape, check_types, missing_model_error,
                     stack_numpy)
from .._core.contract import ModelHandler
from .._core.naming import publish
from .._core.results import to_results
from .._core.types import PredictionResult

__all__ = [
    'ModelType',
    'TFModelHandlerNumpy',
    'TFModelHandlerTensor',
    'TFExampleModelHandler',
    'default_numpy_inference_fn',
    'default_tensor_inference_fn',
]

_LOGGER = logging.getLogger('runinference.tensorflow_inference')
_HOW_TO_SAVE = (
    "model.save('model.keras') (or .h5) for a Keras model, or "
    "model.export('dir') / tf.saved_model.save(module, 'dir') for a "
    'SavedModel directory.')
# Arguments tf.saved_model.load accepts (keras-only ones are dropped for
# SavedModel directories).
_SAVED_MODEL_LOAD_ARGS = ('tags', 'options')


class ModelType(enum.Enum):
  """How the model at ``model_uri`` is stored."""
  SAVED_MODEL = 1  # a .keras/.h5 file or a SavedModel directory
  SAVED_WEIGHTS = 2  # weights only, loaded into create_model_fn()


class SavedModelCallable:
  """A loaded SavedModel made callable like a Keras model.

  ``model(batch)`` runs the ``serve`` endpoint (``model.export``) or else the
  ``serving_default`` signature; a single-output signature returns its tensor,
  several return a dict. ``signatures`` and the loaded object stay reachable.
  """
  def __init__(self, loaded: Any, uri: str):
    self.loaded = loaded
    self.uri = uri
    self.signatures = getattr(loaded, 'signatures', {})

  def __call__(self, batch, **kwargs):
    serve = getattr(self.loaded, 'serve', None)
    if serve is not None:
      return serve(batch, **kwargs)
    signature = self.signatures.get('serving_default')
    if signature is None:
      raise ConfigurationError(
          f'The SavedModel at {self.uri!r} is not callable and has no '
          f"'serve' endpoint or 'serving_default' signature (it has "
          f'{list(self.signatures)}). Pass an inference_fn that calls the '
          'right signature, e.g. model.signatures[name](**inputs).')
    inputs = signature.structured_input_signature[1]
    if len(inputs) != 1:
      raise ConfigurationError(
          f"The 'serving_default' signature of {self.uri!r} takes several "
          f'inputs {sorted(inputs)}; pass an inference_fn that builds them.')
    outputs = signature(**{next(iter(inputs)): batch}, **kwargs)
    if isinstance(outputs, dict) and len(outputs) == 1:
      return next(iter(outputs.values()))
    return outputs

  def predict(self, batch, **kwargs):
    out = self(batch, **kwargs)
    if isinstance(out, dict):
      return {k: v.numpy() for k, v in out.items()}
    return out.numpy()


def _load_model(model_uri: str, custom_weights: str,
                load_model_args: dict[str, Any]):
  """Loads a Keras file (.keras/.h5), a SavedModel directory or a TF Hub
  URL; raises ValueError saying why when it cannot."""
  tf = tf_files.tf()
  load_model_args = dict(load_model_args or {})
  if model_uri.startswith(('http://', 'https://')):
    try:
      import tensorflow_hub as hub
    except ImportError as e:
      raise ModelLoadError(
          f'{model_uri!r} is a URL; loading models from TF Hub needs the '
          'tensorflow_hub package (pip install tensorflow-hub) and network '
          'access from the workers. Or download the model and pass its local '
          'path.') from e
    try:
      model_uri = hub.resolve(model_uri)
    except Exception as e:  # pylint: disable=broad-except
      raise ModelLoadError(
          f'Unable to download the TensorFlow model {model_uri!r}: {e}. Make '
          'sure it is a TF2 SavedModel and the workers can reach it.') from e
  if tf_files.exists(tf, model_uri) is False:
    raise missing_model_error(model_uri, 'TensorFlow model', _HOW_TO_SAVE)
  try:
    if tf_files.is_saved_model_dir(tf, model_uri):
      dropped = sorted(set(load_model_args) - set(_SAVED_MODEL_LOAD_ARGS))
      if dropped:
        _LOGGER.warning(
            'Ignoring load_model_args %s: %r is a SavedModel directory, '
            'loaded with tf.saved_model.load (which takes %s).', dropped,
            model_uri, list(_SAVED_MODEL_LOAD_ARGS))
      loaded = tf.saved_model.load(
          model_uri,
          **{k: v for k, v in load_model_args.items()
             if k in _SAVED_MODEL_LOAD_ARGS})
      model = loaded if callable(loaded) else SavedModelCallable(
          loaded, model_uri)
    else:
      model = tf.keras.models.load_model(model_uri, **load_model_args)
  except Exception as e:  # pylint: disable=broad-except
    raise ModelLoadError(
        f'Unable to load the TensorFlow model at {model_uri!r}: {e}. Give a '
        'Keras file (.keras or .h5) or a SavedModel directory (the directory '
        f'holding saved_model.pb); {_HOW_TO_SAVE}') from e
  if custom_weights:
    if not hasattr(model, 'load_weights'):
      raise ConfigurationError(
          f'custom_weights={custom_weights!r} needs a Keras model, but '
          f'{model_uri!r} is a SavedModel directory; load the weights into a '
          'Keras model file instead.')
    model.load_weights(custom_weights)
  return model


def _load_model_from_weights(create_model_fn: Callable, weights_path: str):
  tf = tf_files.tf()
  if (tf_files.exists(tf, weights_path) is False and
      tf_files.exists(tf, weights_path + '.index') is False):
    raise missing_model_error(
        weights_path, 'TensorFlow weights',
        "model.save_weights('model.weights.h5').")
  model = create_model_fn()
  model.load_weights(weights_path)
  return model


def _unbatch(predictions: Any) -> Any:
  """Splits batched model output into one entry per example, in one call
  per output tensor (not one slice op per example)."""
  if isinstance(predictions, dict):
    return {k: _unbatch(v) for k, v in predictions.items()}
  if isinstance(predictions, (list, tuple)):
    # A multi-output model: one tuple of outputs per example.
    return list(zip(*(_unbatch(p) for p in predictions)))
  if isinstance(predictions, numpy.ndarray):
    return predictions
  tf = sys.modules.get('tensorflow')
  if tf is not None and tf.is_tensor(predictions) and predictions.shape.rank:
    return tf.unstack(predictions)
  return predictions


def default_numpy_inference_fn(
    model: Any,
    batch: Sequence[numpy.ndarray],
    inference_args: dict[str, Any],
    model_id: Optional[str] = None) -> Iterable[PredictionResult]:
  """Stacks the arrays and calls ``model(batch, **inference_args)``."""
  stacked = stack_numpy(batch, 'TFModelHandlerNumpy')
  predictions = model(stacked, **(inference_args or {}))
  return to_results(batch, _unbatch(predictions), model_id)


def _stack_tensors(batch: Sequence[Any]) -> Any:
  tf = tf_files.tf()
  who = 'TFModelHandlerTensor'
  check_types(
      batch, lambda x: tf.is_tensor(x) or isinstance(x, numpy.ndarray), who,
      'a tf.Tensor', 'Convert it in a preprocess step, e.g. '
      'handler.with_preprocess_fn(tf.convert_to_tensor).')
  check_same_shape(batch, who, 'tensor')
  return tf.stack(batch, axis=0)


def default_tensor_inference_fn(
    model: Any,
    batch: Sequence[Any],
    inference_args: dict[str, Any],
    model_id: Optional[str] = None) -> Iterable[PredictionResult]:
  """Stacks the tensors and calls ``model(batch, **inference_args)``."""
  predictions = model(_stack_tensors(batch), **(inference_args or {}))
  return to_results(batch, _unbatch(predictions), model_id)


class _TFHandler(ModelHandler):
  _model_location_attr = '_model_uri'
  _default_fn: Callable = staticmethod(default_numpy_inference_fn)
  _namespace = 'BeamML_TF_Numpy'
  _model_type = ModelType.SAVED_MODEL
  _create_model_fn = None
  _custom_weights = ''
  _load_model_args: dict = {}

  def __init__(
      self,
      model_uri: str,
      model_type: ModelType = ModelType.SAVED_MODEL,
      create_model_fn: Optional[Callable] = None,
      *,
      load_model_args: Optional[dict[str, Any]] = None,
      custom_weights: str = '',
      inference_fn: Optional[Callable] = None,
      **kwargs):
    """
    Args:
      model_uri: a Keras file (``.keras``/``.h5``), a SavedModel directory,
        a weights file (with ``ModelType.SAVED_WEIGHTS``) or a TF Hub URL
        (needs ``tensorflow_hub``); any path TensorFlow can read (gs://...).
      model_type: ``ModelType.SAVED_MODEL`` (default) or ``SAVED_WEIGHTS``.
      create_model_fn: builds the model to load ``SAVED_WEIGHTS`` into.
      load_model_args: keyword arguments of ``tf.keras.models.load_model``
        (for SavedModel directories: of ``tf.saved_model.load``).
      custom_weights: weights to load into the model after loading it.
      inference_fn: ``fn(model, batch, inference_args, model_id)``
        returning PredictionResults.
      kwargs: batching and sharing options of ``ModelHandler``, ``env_vars``.
    """
    super().__init__(**kwargs)
    self._model_uri = check_model_path(model_uri, 'TensorFlow model')
    if not isinstance(model_type, ModelType):
      raise ConfigurationError(
          'model_type must be ModelType.SAVED_MODEL or '
          f'ModelType.SAVED_WEIGHTS, got {model_type!r}.')
    if model_type is ModelType.SAVED_WEIGHTS and not callable(create_model_fn):
      raise ConfigurationError(
          'ModelType.SAVED_WEIGHTS needs create_model_fn, a function that '
          'builds the model the weights are loaded into.')
    self._model_type = model_type
    self._create_model_fn = create_model_fn
    self._load_model_args = dict(load_model_args or {})
    self._custom_weights = custom_weights
    self._inference_fn = inference_fn or self._default_fn

  def load_model(self):
    if self._model_type == ModelType.SAVED_WEIGHTS:
      if not self._create_model_fn:
        raise ConfigurationError(
            'ModelType.SAVED_WEIGHTS needs create_model_fn, a function that '
            'builds the model the weights are loaded into.')
      return _load_model_from_weights(self._create_model_fn, self._model_uri)
    return _load_model(
        self._model_uri, self._custom_weights, self._load_model_args)

  def run_inference(self, batch, model, inference_args=None):
    if not batch:
      return []
    return self._inference_fn(
        model, batch, inference_args or {}, self._model_uri)

  def get_num_bytes(self, batch: Sequence[Any]) -> int:
    total = 0
    for x in batch:
      if isinstance(x, numpy.ndarray):
        total += x.nbytes
      elif hasattr(x, 'dtype') and hasattr(x, 'shape'):
        try:
          total += int(x.shape.num_elements()) * x.dtype.size
        except (AttributeError, TypeError):
          total += sys.getsizeof(x)
      else:
        total += sys.getsizeof(x)
    return total

  def get_metrics_namespace(self) -> str:
    return self._namespace


class TFModelHandlerNumpy(_TFHandler):
  """Runs a TensorFlow/Keras model on numpy examples (stacked per batch).

  Example::

    pcoll | RunInference(TFModelHandlerNumpy('gs://bucket/model.keras'))
  """
  _default_fn = staticmethod(default_numpy_inference_fn)
  _namespace = 'BeamML_TF_Numpy'


class TFModelHandlerTensor(_TFHandler):
  """Runs a TensorFlow/Keras model on ``tf.Tensor`` examples (stacked per
  batch)."""
  _default_fn = staticmethod(default_tensor_inference_fn)
  _namespace = 'BeamML_TF_Tensor'


# TFExampleModelHandler lives in its own module; it stays importable here.
from .tfexample import TFExampleModelHandler  # noqa: E402  pylint: disable=wrong-import-position

publish(globals(), 'runinference.tensorflow_inference', alias=True)
