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
import os
import sys
from typing import Any, Callable, Iterable, Optional, Sequence, Union

import numpy

from .common import (check_model_path, describe_value, require,
                          stack_numpy)
from .._core.contract import ModelHandler
from .._core.naming import publish
from ..exceptions import ModelFileNotFoundError
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


def _tf():
  return require('tensorflow', 'The TensorFlow handlers')


def _is_url(uri: str) -> bool:
  return uri.startswith(('http://', 'https://'))


def _is_saved_model_dir(tf, uri: str) -> bool:
  try:
    return tf.io.gfile.isdir(uri) and (
        tf.io.gfile.exists(os.path.join(uri, 'saved_model.pb')) or
        tf.io.gfile.exists(os.path.join(uri, 'saved_model.pbtxt')))
  except Exception:  # pylint: disable=broad-except  # unknown scheme
    return False


def _exists(tf, uri: str) -> Optional[bool]:
  try:
    return tf.io.gfile.exists(uri)
  except Exception:  # pylint: disable=broad-except
    return None


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
      raise ValueError(
          f'The SavedModel at {self.uri!r} is not callable and has no '
          f"'serve' endpoint or 'serving_default' signature (it has "
          f'{list(self.signatures)}). Pass an inference_fn that calls the '
          'right signature, e.g. model.signatures[name](**inputs).')
    inputs = signature.structured_input_signature[1]
    if len(inputs) != 1:
      raise ValueError(
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
  tf = _tf()
  load_model_args = dict(load_model_args or {})
  if _is_url(model_uri):
    try:
      import tensorflow_hub as hub
    except ImportError as e:
      raise ValueError(
          f'{model_uri!r} is a URL; loading models from TF Hub needs the '
          'tensorflow_hub package (pip install tensorflow-hub) and network '
          'access from the workers. Or download the model and pass its local '
          'path.') from e
    try:
      model_uri = hub.resolve(model_uri)
    except Exception as e:  # pylint: disable=broad-except
      raise ValueError(
          f'Unable to download the TensorFlow model {model_uri!r}: {e}. Make '
          'sure it is a TF2 SavedModel and the workers can reach it.') from e
  if _exists(tf, model_uri) is False:
    raise ModelFileNotFoundError(
        f'TensorFlow model not found at {model_uri!r}. Check the path (every '
        f'worker must be able to read it), or save the model there first: '
        f'{_HOW_TO_SAVE}')
  try:
    if _is_saved_model_dir(tf, model_uri):
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
    raise ValueError(
        f'Unable to load the TensorFlow model at {model_uri!r}: {e}. Give a '
        'Keras file (.keras or .h5) or a SavedModel directory (the directory '
        f'holding saved_model.pb); {_HOW_TO_SAVE}') from e
  if custom_weights:
    if not hasattr(model, 'load_weights'):
      raise ValueError(
          f'custom_weights={custom_weights!r} needs a Keras model, but '
          f'{model_uri!r} is a SavedModel directory; load the weights into a '
          'Keras model file instead.')
    model.load_weights(custom_weights)
  return model


def _load_model_from_weights(create_model_fn: Callable, weights_path: str):
  tf = _tf()
  if (_exists(tf, weights_path) is False and
      _exists(tf, weights_path + '.index') is False):
    raise ModelFileNotFoundError(
        f'TensorFlow weights not found at {weights_path!r}. Save them with '
        "model.save_weights('model.weights.h5') first.")
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
  tf = _tf()
  for i, x in enumerate(batch):
    if not (tf.is_tensor(x) or isinstance(x, numpy.ndarray)):
      raise TypeError(
          f'TFModelHandlerTensor expects each example to be a tf.Tensor, but '
          f'example {i} is {describe_value(x)}. Convert it in a preprocess '
          'step, e.g. handler.with_preprocess_fn(tf.convert_to_tensor).')
  first = tuple(batch[0].shape)
  for i, x in enumerate(batch):
    if tuple(x.shape) != first:
      raise ValueError(
          f'TFModelHandlerTensor stacks a batch into one tensor, but example '
          f'{i} has shape {tuple(x.shape)} while example 0 has shape {first}. '
          'Resize/pad the examples to one shape in a preprocess fn.')
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
      min_batch_size: Optional[int] = None,
      max_batch_size: Optional[int] = None,
      max_batch_duration_secs: Optional[float] = None,
      large_model: bool = False,
      model_copies: Optional[int] = None,
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
    super().__init__(
        min_batch_size=min_batch_size,
        max_batch_size=max_batch_size,
        max_batch_duration_secs=max_batch_duration_secs,
        large_model=large_model,
        model_copies=model_copies,
        **kwargs)
    self._model_uri = check_model_path(model_uri, 'TensorFlow model')
    if not isinstance(model_type, ModelType):
      raise ValueError(
          'model_type must be ModelType.SAVED_MODEL or '
          f'ModelType.SAVED_WEIGHTS, got {model_type!r}.')
    if model_type is ModelType.SAVED_WEIGHTS and not callable(create_model_fn):
      raise ValueError(
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
        raise ValueError(
            'ModelType.SAVED_WEIGHTS needs create_model_fn, a function that '
            'builds the model the weights are loaded into.')
      return _load_model_from_weights(self._create_model_fn, self._model_uri)
    return _load_model(
        self._model_uri, self._custom_weights, self._load_model_args)

  def update_model_path(self, model_path: Optional[str] = None):
    self._model_uri = model_path or self._model_uri

  def run_inference(
      self,
      batch: Sequence[Any],
      model: Any,
      inference_args: Optional[dict[str, Any]] = None
  ) -> Iterable[PredictionResult]:
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

  def __repr__(self):
    return f'{type(self).__name__}(model_uri={self._model_uri!r})'


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


# ---------------------------------------------------------------- tf.Example


class ExampleSignature:
  """A SavedModel signature that takes serialized ``tf.train.Example`` s.

  ``predict(records)`` takes a list of serialized records and returns a dict
  of numpy arrays, one row per record (numpy in, numpy out, so it also works
  as a model shared across processes).
  """
  def __init__(self, loaded: Any, signature_name: str, input_name: str,
               uri: str):
    self.loaded = loaded  # keeps the signature's variables alive
    self.signature_name = signature_name
    self.input_name = input_name
    self.uri = uri
    self.fn = loaded.signatures[signature_name]

  def predict(self, records: Sequence[bytes]) -> dict[str, numpy.ndarray]:
    tf = _tf()
    try:
      outputs = self.fn(**{
          self.input_name: tf.constant(list(records), dtype=tf.string)
      })
    except tf.errors.OpError as e:
      raise ValueError(
          f"The model's {self.signature_name!r} signature could not process "
          f'the records: {e.message.strip()}. Each example must be a '
          'tf.train.Example (or its serialization) with the features the '
          'signature parses.') from e
    if not isinstance(outputs, dict):
      outputs = {'output_0': outputs}
    return {k: v.numpy() for k, v in outputs.items()}


def _serialize(x: Any, i: int) -> bytes:
  if isinstance(x, bytes):
    return x
  serialize = getattr(x, 'SerializeToString', None)
  if serialize is None:
    raise TypeError(
        'TFExampleModelHandler expects each example to be a tf.train.Example '
        f'(or its serialized bytes), but example {i} is {describe_value(x)}. '
        'Build one with tf.train.Example(features=tf.train.Features('
        'feature={...})) in a preprocess step.')
  return serialize()


class TFExampleModelHandler(ModelHandler):
  """Runs a SavedModel signature that parses serialized ``tf.train.Example``
  records (the tfx_bsl RunInference pattern, without tfx_bsl).

  Each example is a ``tf.train.Example`` (or a ``tf.train.SequenceExample``,
  or serialized bytes, e.g. from ``beam.io.ReadFromTFRecord``). A batch is
  fed as one string tensor to the signature's input; each PredictionResult
  has the original record as ``example`` and, as ``inference``, a dict
  ``{output_name: numpy row}`` (or that one row, with ``output_key``).
  Wrap it in ``KeyedModelHandler`` for ``(key, example)`` input.

  Example::

    records | RunInference(TFExampleModelHandler('gs://bucket/saved_model'))
  """
  _model_location_attr = '_model_uri'
  _signature_name = 'serving_default'
  _input_name: Optional[str] = None
  _output_key: Optional[str] = None
  _load_model_args: dict = {}

  def __init__(
      self,
      model_uri: str,
      signature_name: str = 'serving_default',
      *,
      input_name: Optional[str] = None,
      output_key: Optional[str] = None,
      load_model_args: Optional[dict[str, Any]] = None,
      **kwargs):
    """
    Args:
      model_uri: the SavedModel directory (any path TensorFlow can read).
      signature_name: the signature to run, default ``serving_default``.
      input_name: the signature's string input; default: its only string
        input (``examples`` in the usual serving signature).
      output_key: return only this output (its row) as the inference,
        instead of the dict of all outputs.
      load_model_args: keyword arguments of ``tf.saved_model.load``.
      kwargs: batching and sharing options of ``ModelHandler``, ``env_vars``.
    """
    super().__init__(**kwargs)
    self._model_uri = check_model_path(model_uri, 'SavedModel directory')
    if not isinstance(signature_name, str) or not signature_name:
      raise ValueError(
          f'signature_name must be a signature name, got {signature_name!r}.')
    self._signature_name = signature_name
    self._input_name = input_name
    self._output_key = output_key
    self._load_model_args = dict(load_model_args or {})

  def load_model(self) -> ExampleSignature:
    tf = _tf()
    uri = self._model_uri
    if not _is_saved_model_dir(tf, uri):
      what = ('does not exist' if _exists(tf, uri) is False else
              'is not a SavedModel directory (no saved_model.pb in it)')
      raise ModelFileNotFoundError(
          f'TFExampleModelHandler: {uri!r} {what}. Pass the directory written '
          "by tf.saved_model.save(module, dir, signatures={'serving_default': "
          'fn}) or model.export(dir).')
    loaded = tf.saved_model.load(uri, **self._load_model_args)
    signatures = dict(getattr(loaded, 'signatures', {}))
    if self._signature_name not in signatures:
      raise ValueError(
          f'The SavedModel at {uri!r} has no signature '
          f'{self._signature_name!r}; it has {sorted(signatures)}. Pass '
          'signature_name=<one of them>.')
    inputs = signatures[self._signature_name].structured_input_signature[1]
    strings = [n for n, spec in inputs.items() if spec.dtype == tf.string]
    name = self._input_name
    if name is None:
      if len(strings) != 1:
        described = {n: spec.dtype.name for n, spec in inputs.items()}
        raise ValueError(
            f'Signature {self._signature_name!r} of {uri!r} takes {described}'
            ', not one string input of serialized tf.Examples. Re-save the '
            'model with a signature that parses examples, e.g. '
            "@tf.function(input_signature=[tf.TensorSpec([None], tf.string, "
            "name='examples')]) calling tf.io.parse_example; or use "
            'TFModelHandlerNumpy/TFModelHandlerTensor for tensor inputs; or '
            'pass input_name= if there are several string inputs.')
      name = strings[0]
    elif name not in strings:
      raise ValueError(
          f'Signature {self._signature_name!r} of {uri!r} has no string input '
          f'{name!r}; its string inputs are {strings} (all inputs: '
          f'{sorted(inputs)}).')
    return ExampleSignature(loaded, self._signature_name, name, uri)

  def run_inference(
      self,
      batch: Sequence[Any],
      model: ExampleSignature,
      inference_args: Optional[dict[str, Any]] = None
  ) -> Iterable[PredictionResult]:
    if not batch:
      return []
    records = [_serialize(x, i) for i, x in enumerate(batch)]
    outputs = model.predict(records)
    if self._output_key is not None:
      if self._output_key not in outputs:
        raise ValueError(
            f'output_key={self._output_key!r} is not an output of the '
            f'signature; its outputs are {sorted(outputs)}.')
      return to_results(batch, outputs[self._output_key], self._model_uri)
    return to_results(batch, outputs, self._model_uri)

  def validate_inference_args(self, inference_args):
    if inference_args:
      raise ValueError(
          'TFExampleModelHandler takes no inference_args (the signature '
          'gets only the serialized examples); got '
          f'{sorted(inference_args)}.')

  def update_model_path(self, model_path: Optional[str] = None):
    self._model_uri = model_path or self._model_uri

  def get_num_bytes(self, batch: Sequence[Any]) -> int:
    return sum(
        len(x) if isinstance(x, bytes) else int(getattr(x, 'ByteSize',
                                                        lambda: 0)())
        for x in batch)

  def get_metrics_namespace(self) -> str:
    return 'BeamML_TF_Example'

  def __repr__(self):
    return (f'{type(self).__name__}(model_uri={self._model_uri!r}, '
            f'signature_name={self._signature_name!r})')


publish(globals(), 'runinference.tensorflow_inference', alias=True)
