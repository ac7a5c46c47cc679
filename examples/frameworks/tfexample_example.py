"""tf.train.Example records into a SavedModel signature: seed 001's pipeline
without tfx_bsl (plain, keyed, two models, and two models in sequence).

Run: python examples/frameworks/tfexample_example.py   (needs tensorflow)
"""
import os
import tempfile

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import apache_beam as beam  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from runinference.base import KeyedModelHandler, RunInference  # noqa: E402
from runinference.tensorflow_inference import TFExampleModelHandler  # noqa: E402

SPEC = {'x': tf.io.FixedLenFeature([], tf.float32)}


def create_example(value):
  return tf.train.Example(features=tf.train.Features(feature={
      'x': tf.train.Feature(float_list=tf.train.FloatList(value=[value]))}))


def train_and_save(path, factor):
  """Trains y = factor * x briefly, then saves it with a serving signature
  that takes serialized tf.Examples named 'examples'."""
  inputs = tf.keras.Input(shape=(1,), name='x')
  model = tf.keras.Model(inputs, tf.keras.layers.Dense(1)(inputs))
  model.compile(optimizer=tf.keras.optimizers.Adam(0.5), loss='mse')
  x = np.arange(0, 100, dtype=np.float32).reshape(-1, 1) / 10
  model.fit(x, factor * x, epochs=200, verbose=0)

  class Serving(tf.Module):
    def __init__(self, model):
      super().__init__()
      self.model = model

    @tf.function(
        input_signature=[tf.TensorSpec([None], tf.string, name='examples')])
    def serve(self, examples):
      x = tf.io.parse_example(examples, SPEC)['x']
      return {'output_0': self.model(tf.expand_dims(x, -1), training=False)}

  module = Serving(model)
  tf.saved_model.save(module, path,
                      signatures={'serving_default': module.serve})
  return path


def main():
  with tempfile.TemporaryDirectory() as tmp:
    five = TFExampleModelHandler(
        train_and_save(os.path.join(tmp, 'five'), 5.0), output_key='output_0')
    ten = TFExampleModelHandler(
        train_and_save(os.path.join(tmp, 'ten'), 10.0), output_key='output_0')
    questions = [('first', 1.5), ('second', 3.0), ('third', 7.0)]

    def show(kv):
      key, result = kv
      value = result.example.features.feature['x'].float_list.value[0]
      return f'{key}: input {value:.1f} -> {float(result.inference[0]):.1f}'

    with beam.Pipeline() as p:
      q = p | beam.Create(questions)
      by_five = (q | 'Five' >> beam.MapTuple(
          lambda k, v: (f'{k} * 5', create_example(v)))
                 | 'RunFive' >> RunInference(KeyedModelHandler(five)))
      by_ten = (q | 'Ten' >> beam.MapTuple(
          lambda k, v: (f'{k} * 10', create_example(v)))
                | 'RunTen' >> RunInference(KeyedModelHandler(ten)))
      then_ten = (
          by_five
          | beam.MapTuple(lambda k, r: (
              f'({k}) * 10', create_example(float(r.inference[0]))))
          | 'Sequence' >> RunInference(KeyedModelHandler(ten)))
      _ = ((by_five, by_ten, then_ten) | beam.Flatten() | beam.Map(show)
           | beam.Map(print))


if __name__ == '__main__':
  main()
