"""Conformance cases for the TensorFlow handlers: a Keras model (numpy and
tensor input) and a tf.Example-parsing SavedModel signature."""
import os

import numpy as np
import pytest

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
tf = pytest.importorskip('tensorflow')

from runinference.tensorflow_inference import (  # noqa: E402
    TFExampleModelHandler, TFModelHandlerNumpy, TFModelHandlerTensor)
from tests.handlers.cases import HandlerCase  # noqa: E402


def _save_five(tmp_path):
  inputs = tf.keras.Input(shape=(1,))
  outputs = tf.keras.layers.Dense(1)(inputs)
  model = tf.keras.Model(inputs, outputs)
  model.layers[-1].set_weights(
      [np.array([[5.0]], np.float32), np.zeros(1, np.float32)])
  path = tmp_path / 'five.keras'
  model.save(str(path))
  return str(path), model


class _Serving(tf.Module):
  def __init__(self, model):
    super().__init__()
    self.model = model

  @tf.function(
      input_signature=[tf.TensorSpec([None], tf.string, name='examples')])
  def serve(self, examples):
    x = tf.io.parse_example(
        examples, {'x': tf.io.FixedLenFeature([], tf.float32)})['x']
    return {'output_0': self.model(tf.expand_dims(x, -1), training=False)}


def _example_handler(tmp_path, **options):
  _, model = _save_five(tmp_path)
  module = _Serving(model)
  path = str(tmp_path / 'saved_model')
  tf.saved_model.save(module, path, signatures={'serving_default': module.serve})
  return TFExampleModelHandler(path, output_key='output_0', **options)


def _example(v):
  return tf.train.Example(features=tf.train.Features(feature={
      'x': tf.train.Feature(float_list=tf.train.FloatList(value=[v]))}))


def _check_five(example, inference):
  if isinstance(example, tf.train.Example):
    x = example.features.feature['x'].float_list.value[0]
  else:
    x = float(np.ravel(np.asarray(example))[0])
  assert float(np.ravel(np.asarray(inference))[0]) == pytest.approx(5 * x)


CASES = [
    HandlerCase(
        name='tf-numpy',
        make_handler=lambda tmp, **o: TFModelHandlerNumpy(_save_five(tmp)[0],
                                                         **o),
        make_examples=lambda: [np.array([float(i)], np.float32) for i in range(3)],
        bad_example='not an array',
        expected_namespace='BeamML_TF_Numpy',
        check=_check_five),
    HandlerCase(
        name='tf-tensor',
        make_handler=lambda tmp, **o: TFModelHandlerTensor(_save_five(tmp)[0],
                                                          **o),
        make_examples=lambda: [tf.constant([float(i)]) for i in range(3)],
        bad_example='not a tensor',
        expected_namespace='BeamML_TF_Tensor',
        check=_check_five),
    HandlerCase(
        name='tf-example',
        make_handler=_example_handler,
        make_examples=lambda: [_example(float(i)) for i in range(3)],
        bad_example=3.0,
        expected_namespace='BeamML_TF_Example',
        check=_check_five),
]
