"""TFExampleModelHandler: seed 001's four tfx_bsl RunInference patterns (plain,
keyed, two models on the same data, two models in sequence), natively.

The models are Keras Dense layers (weights 5 and 10) saved, like in the seed,
as SavedModels whose ``serving_default`` signature takes serialized
tf.train.Examples named ``examples`` and parses feature ``x``."""
import os

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.testing.util import assert_that, equal_to

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
tf = pytest.importorskip('tensorflow')

from runinference.base import KeyedModelHandler, RunInference  # noqa: E402
from runinference.tensorflow_inference import TFExampleModelHandler  # noqa: E402

PREDICT_SPEC = {'x': tf.io.FixedLenFeature([], tf.float32)}
VALUES = [105.0, 108.0, 1000.0, 1013.0]
QUESTIONS = [('first_question', 105.0), ('second_question', 108.0),
             ('third_question', 1000.0), ('fourth_question', 1013.0)]


def create_example(value: float) -> 'tf.train.Example':
  return tf.train.Example(
      features=tf.train.Features(
          feature={'x': tf.train.Feature(float_list=tf.train.FloatList(
              value=[value]))}))


class Serving(tf.Module):
  """A Keras model plus the seed's tf.Example-parsing serving function."""
  def __init__(self, model):
    super().__init__()
    self.model = model

  @tf.function(
      input_signature=[tf.TensorSpec([None], tf.string, name='examples')])
  def serve_tf_examples_fn(self, serialized_tf_examples):
    features = tf.io.parse_example(serialized_tf_examples, PREDICT_SPEC)
    return {
        'output_0': self.model(
            tf.expand_dims(features['x'], -1), training=False)
    }

  @tf.function(input_signature=[tf.TensorSpec([None, 1], tf.float32)])
  def serve_floats(self, x):
    return {'output_0': self.model(x, training=False)}


def save_multiply(path, factor):
  inputs = tf.keras.Input(shape=(1,), name='x')
  outputs = tf.keras.layers.Dense(1)(inputs)
  model = tf.keras.Model(inputs, outputs)
  model.layers[-1].set_weights(
      [np.array([[factor]], np.float32), np.zeros(1, np.float32)])
  module = Serving(model)
  tf.saved_model.save(
      module, path, signatures={
          'serving_default': module.serve_tf_examples_fn,
          'floats': module.serve_floats,
      })
  return path


@pytest.fixture(scope='module')
def models(tmp_path_factory):
  d = tmp_path_factory.mktemp('tfexample')
  return {
      'five': save_multiply(str(d / 'multiply_five' / 'v1'), 5.0),
      'ten': save_multiply(str(d / 'multiply_ten' / 'v1'), 10.0),
      'dir': d,
  }


def input_value(example) -> float:
  if isinstance(example, bytes):
    example = tf.train.Example.FromString(example)
  return example.features.feature['x'].float_list.value[0]


def test_plain_from_tfrecord_file(models):
  """Pattern 1: raw records from a TFRecord file straight into the model."""
  path = str(models['dir'] / 'predict_values_five_times_table.tfrecord')
  with tf.io.TFRecordWriter(path) as writer:
    for v in VALUES:
      writer.write(create_example(v).SerializeToString())

  def read_records(file_name):
    # (beam.io.ReadFromTFRecord works too, given crcmod or google-crc32c.)
    for record in tf.data.TFRecordDataset(file_name):
      yield record.numpy()

  with beam.Pipeline() as p:
    out = (
        p | beam.Create([path]) | beam.FlatMap(read_records)
        | RunInference(TFExampleModelHandler(models['five']))
        | beam.Map(lambda r: f'input is [{input_value(r.example)}] output is '
                   f"{r.inference['output_0'].tolist()}"))
    assert_that(
        out,
        equal_to([f'input is [{v}] output is [{v * 5}]' for v in VALUES]))


def test_keyed(models):
  """Pattern 2: a key travels with each example and comes back out."""
  with beam.Pipeline() as p:
    out = (
        p | beam.Create(QUESTIONS)
        | beam.Map(lambda kv: (kv[0].encode(), create_example(kv[1])))
        | RunInference(
            KeyedModelHandler(
                TFExampleModelHandler(models['five'], output_key='output_0')))
        | beam.Map(lambda kv: (kv[0], input_value(kv[1].example),
                               float(kv[1].inference[0]))))
    assert_that(out, equal_to([(k.encode(), v, v * 5) for k, v in QUESTIONS]))


def test_two_models_on_the_same_data(models):
  """Pattern 3: branch the data through two models, Flatten the results."""
  five = TFExampleModelHandler(models['five'], output_key='output_0')
  ten = TFExampleModelHandler(models['ten'], output_key='output_0')
  with beam.Pipeline() as p:
    questions = p | beam.Create(QUESTIONS)
    multiply_five = (
        questions
        | 'CreateMultiplyFiveTuple' >> beam.Map(
            lambda x: (f'{x[0]} * 5', create_example(x[1])))
        | 'Multiply Five' >> RunInference(KeyedModelHandler(five)))
    multiply_ten = (
        questions
        | 'CreateMultiplyTenTuple' >> beam.Map(
            lambda x: (f'{x[0]} * 10', create_example(x[1])))
        | 'Multiply Ten' >> RunInference(KeyedModelHandler(ten)))
    out = ((multiply_five, multiply_ten)
           | beam.Flatten()
           | beam.Map(lambda kv: f'key is {kv[0]} input is '
                      f'{input_value(kv[1].example)} output is '
                      f'{float(kv[1].inference[0])}'))
    expected = [f'key is {k} * 5 input is {v} output is {v * 5}'
                for k, v in QUESTIONS]
    expected += [f'key is {k} * 10 input is {v} output is {v * 10}'
                 for k, v in QUESTIONS]
    assert_that(out, equal_to(expected))


def test_two_models_in_sequence(models):
  """Pattern 4: the first model's output, post-processed, feeds the second."""
  def process_interim_inference(element):
    key, result = element
    new_key = f'{key} original input is {input_value(result.example)}'
    return new_key, create_example(float(result.inference['output_0'][0]))

  with beam.Pipeline() as p:
    out = (
        p | beam.Create(QUESTIONS)
        | 'CreateMultiplyTuple' >> beam.Map(
            lambda x: (x[0], create_example(x[1])))
        | 'MultiplyFive' >> RunInference(
            KeyedModelHandler(TFExampleModelHandler(models['five'])))
        | 'Extract result' >> beam.Map(process_interim_inference)
        | 'MultiplyTen' >> RunInference(
            KeyedModelHandler(TFExampleModelHandler(models['ten'])))
        | beam.Map(lambda kv: (kv[0], input_value(kv[1].example),
                               float(kv[1].inference['output_0'][0]))))
    assert_that(
        out,
        equal_to([(f'{k} original input is {v}', v * 5, v * 50)
                  for k, v in QUESTIONS]))


def test_result_example_is_the_original_record(models):
  handler = TFExampleModelHandler(models['five'])
  model = handler.load_model()
  records = [create_example(1.0), create_example(2.0).SerializeToString()]
  results = list(handler.run_inference(records, model))
  assert results[0].example is records[0]
  assert results[1].example is records[1]
  assert [float(r.inference['output_0'][0]) for r in results] == [5.0, 10.0]
  assert handler.get_num_bytes(records) == sum(
      len(create_example(v).SerializeToString()) for v in (1.0, 2.0))


def test_large_model_shared_across_processes(models):
  with beam.Pipeline() as p:
    out = (
        p | beam.Create(VALUES) | beam.Map(create_example)
        | RunInference(
            TFExampleModelHandler(
                models['five'], output_key='output_0', large_model=True))
        | beam.Map(lambda r: float(r.inference[0])))
    assert_that(out, equal_to([v * 5 for v in VALUES]))


def test_missing_or_wrong_model_directory(models, tmp_path):
  with pytest.raises(FileNotFoundError, match='not found at'):
    TFExampleModelHandler(str(tmp_path / 'nope')).load_model()
  with pytest.raises(FileNotFoundError, match='not a SavedModel directory'):
    TFExampleModelHandler(str(tmp_path)).load_model()


def test_unknown_signature_lists_the_available_ones(models):
  with pytest.raises(ValueError, match=r"no signature 'predict'.*'floats'"):
    TFExampleModelHandler(models['five'], 'predict').load_model()


def test_signature_without_string_input_says_how_to_fix(models):
  with pytest.raises(ValueError, match='not one string input.*parse_example'):
    TFExampleModelHandler(models['five'], 'floats').load_model()
  with pytest.raises(ValueError, match="no string input 'records'"):
    TFExampleModelHandler(models['five'], input_name='records').load_model()


def test_wrong_example_types(models):
  handler = TFExampleModelHandler(models['five'])
  model = handler.load_model()
  with pytest.raises(TypeError, match='tf.train.Example.*example 1 is float'):
    handler.run_inference([create_example(1.0), 2.0], model)
  with pytest.raises(ValueError, match='could not process the records'):
    handler.run_inference([b'not a serialized example'], model)
  with pytest.raises(ValueError, match="output_key='nope'"):
    TFExampleModelHandler(models['five'], output_key='nope').run_inference(
        [create_example(1.0)], model)
  with pytest.raises(ValueError, match='takes no inference_args'):
    handler.validate_inference_args({'k': 1})
