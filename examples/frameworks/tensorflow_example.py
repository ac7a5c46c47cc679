"""A Keras model in a Beam pipeline, refreshed from a side input (seed 003).

Run: python examples/frameworks/tensorflow_example.py   (needs tensorflow)
"""
import os
import tempfile

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import apache_beam as beam  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from runinference.base import ModelMetadata, RunInference  # noqa: E402
from runinference.tensorflow_inference import TFModelHandlerTensor  # noqa: E402


def build_model(path: str, factor: float) -> str:
  """y = factor * x, saved in the .h5 format seed 003 uses."""
  inputs = tf.keras.Input(shape=(1,))
  outputs = tf.keras.layers.Dense(1)(inputs)
  model = tf.keras.Model(inputs, outputs)
  model.layers[-1].set_weights(
      [np.array([[factor]], np.float32), np.zeros(1, np.float32)])
  model.save(path)
  return path


def main():
  with tempfile.TemporaryDirectory() as tmp:
    v1 = build_model(os.path.join(tmp, 'v1.h5'), 5.0)
    v2 = build_model(os.path.join(tmp, 'v2.h5'), 10.0)
    with beam.Pipeline() as p:
      # In a streaming job this would be WatchFilePattern(file_pattern=...);
      # here one update is known up front.
      updates = p | 'Models' >> beam.Create(
          [ModelMetadata(model_id=v2, model_name='times_ten')])
      _ = (
          p | beam.Create([tf.constant([float(i)]) for i in range(3)])
          | RunInference(
              TFModelHandlerTensor(v1), model_metadata_pcoll=updates)
          | beam.Map(lambda r: f'{float(r.example[0])} -> '
                     f'{float(r.inference[0])} ({os.path.basename(r.model_id)})')
          | beam.Map(print))


if __name__ == '__main__':
  main()
