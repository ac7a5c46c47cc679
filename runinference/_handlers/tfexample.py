"""``TFExampleModelHandler``: serialized ``tf.train.Example`` records into a
SavedModel signature (the tfx_bsl RunInference pattern, without tfx_bsl).
Importable from ``runinference.tensorflow_inference``; TensorFlow is imported
when the model loads."""
from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy

from .._core.contract import ModelHandler
from .._core.naming import publish
from .._core.results import to_results
from . import tf_files
from ..exceptions import (ConfigurationError, InvalidInputError,
                          InvalidInputTypeError, ModelFileNotFoundError)
from .common import check_model_path, describe_value, missing_model_error

__all__ = ['TFExampleModelHandler']

_HOW_TO_SAVE = (
    "by tf.saved_model.save(module, dir, signatures={'serving_default': fn}) "
    'or model.export(dir).')


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
    tf = tf_files.tf()
    try:
      outputs = self.fn(**{
          self.input_name: tf.constant(list(records), dtype=tf.string)
      })
    except tf.errors.OpError as e:
      raise InvalidInputError(
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
    raise InvalidInputTypeError(
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
      raise ConfigurationError(
          f'signature_name must be a signature name, got {signature_name!r}.')
    self._signature_name = signature_name
    self._input_name = input_name
    self._output_key = output_key
    self._load_model_args = dict(load_model_args or {})

  def load_model(self) -> ExampleSignature:
    tf = tf_files.tf()
    uri = self._model_uri
    if not tf_files.is_saved_model_dir(tf, uri):
      if tf_files.exists(tf, uri) is False:
        raise missing_model_error(uri, 'SavedModel directory', _HOW_TO_SAVE)
      raise ModelFileNotFoundError(
          f'TFExampleModelHandler: {uri!r} is not a SavedModel directory (no '
          f'saved_model.pb in it). Pass the directory written {_HOW_TO_SAVE}')
    loaded = tf.saved_model.load(uri, **self._load_model_args)
    signatures = dict(getattr(loaded, 'signatures', {}))
    if self._signature_name not in signatures:
      raise ConfigurationError(
          f'The SavedModel at {uri!r} has no signature '
          f'{self._signature_name!r}; it has {sorted(signatures)}. Pass '
          'signature_name=<one of them>.')
    inputs = signatures[self._signature_name].structured_input_signature[1]
    strings = [n for n, spec in inputs.items() if spec.dtype == tf.string]
    name = self._input_name
    if name is None:
      if len(strings) != 1:
        described = {n: spec.dtype.name for n, spec in inputs.items()}
        raise ConfigurationError(
            f'Signature {self._signature_name!r} of {uri!r} takes {described}'
            ', not one string input of serialized tf.Examples. Re-save the '
            'model with a signature that parses examples, e.g. '
            "@tf.function(input_signature=[tf.TensorSpec([None], tf.string, "
            "name='examples')]) calling tf.io.parse_example; or use "
            'TFModelHandlerNumpy/TFModelHandlerTensor for tensor inputs; or '
            'pass input_name= if there are several string inputs.')
      name = strings[0]
    elif name not in strings:
      raise ConfigurationError(
          f'Signature {self._signature_name!r} of {uri!r} has no string input '
          f'{name!r}; its string inputs are {strings} (all inputs: '
          f'{sorted(inputs)}).')
    return ExampleSignature(loaded, self._signature_name, name, uri)

  def run_inference(self, batch, model, inference_args=None):
    if not batch:
      return []
    records = [_serialize(x, i) for i, x in enumerate(batch)]
    outputs = model.predict(records)
    if self._output_key is not None:
      if self._output_key not in outputs:
        raise InvalidInputError(
            f'output_key={self._output_key!r} is not an output of the '
            f'signature; its outputs are {sorted(outputs)}.')
      return to_results(batch, outputs[self._output_key], self._model_uri)
    return to_results(batch, outputs, self._model_uri)

  def validate_inference_args(self, inference_args):
    if inference_args:
      raise ConfigurationError(
          'TFExampleModelHandler takes no inference_args (the signature '
          'gets only the serialized examples); got '
          f'{sorted(inference_args)}.')

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



publish(globals(), 'runinference.tensorflow_inference')
