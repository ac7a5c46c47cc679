"""TFModelHandlerNumpy / TFModelHandlerTensor on tiny Keras models saved in
each test as .keras, .h5, SavedModel directories and weights files."""
import importlib.util
import os

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.testing.util import assert_that, equal_to

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
tf = pytest.importorskip('tensorflow')

from runinference.base import (KeyedModelHandler, ModelMetadata,  # noqa: E402
                               RunInference)
from runinference.tensorflow_inference import (ModelType,  # noqa: E402
                                               TFModelHandlerNumpy,
                                               TFModelHandlerTensor)

W = np.array([[1.0], [2.0], [3.0]], np.float32)  # y = x . [1,2,3] + 0.5
B = np.array([0.5], np.float32)


def make_linear(w=W, b=B):
  inputs = tf.keras.Input(shape=(3,))
  outputs = tf.keras.layers.Dense(1)(inputs)
  model = tf.keras.Model(inputs, outputs)
  model.layers[-1].set_weights([w, b])
  return model


@pytest.fixture(scope='module')
def models(tmp_path_factory):
  d = tmp_path_factory.mktemp('tf')
  model = make_linear()
  paths = {
      'keras': str(d / 'linear.keras'),
      'h5': str(d / 'linear.h5'),
      'saved_model': str(d / 'saved_model'),
      'weights': str(d / 'linear.weights.h5'),
  }
  model.save(paths['keras'])
  model.save(paths['h5'])
  model.export(paths['saved_model'], verbose=False)
  model.save_weights(paths['weights'])
  doubled = make_linear(2 * W, 2 * B)
  paths['doubled'] = str(d / 'doubled.keras')
  doubled.save(paths['doubled'])
  return paths


EXAMPLES = [np.array([i, 1, 0], np.float32) for i in range(5)]


def want(x, k=1.0):
  return round(k * float(x @ W[:, 0] + B[0]), 3)


def _first(r):
  return round(float(np.ravel(np.asarray(r.inference))[0]), 3)


@pytest.mark.parametrize('fmt', ['keras', 'h5', 'saved_model'])
def test_numpy_handler_on_each_format(models, fmt):
  handler = TFModelHandlerNumpy(models[fmt])
  results = list(handler.run_inference(EXAMPLES, handler.load_model()))
  assert [r.example is x for r, x in zip(results, EXAMPLES)] == [True] * 5
  assert [_first(r) for r in results] == [want(x) for x in EXAMPLES]
  assert results[0].model_id == models[fmt]


def test_tensor_handler_pipeline_plain_and_keyed(models):
  tensors = [tf.constant(x) for x in EXAMPLES]
  with beam.Pipeline() as p:
    data = p | beam.Create(tensors)
    out = data | RunInference(TFModelHandlerTensor(models['h5'])) | beam.Map(
        _first)
    assert_that(out, equal_to([want(x) for x in EXAMPLES]))
    keyed = (
        data | beam.Map(lambda t: (int(t[0]), t))
        | 'Keyed' >> RunInference(
            KeyedModelHandler(TFModelHandlerTensor(models['keras'])))
        | beam.Map(lambda kv: (kv[0], _first(kv[1]))))
    assert_that(
        keyed, equal_to([(i, want(x)) for i, x in enumerate(EXAMPLES)]),
        label='keyed')


def test_saved_weights_and_custom_weights(models):
  handler = TFModelHandlerNumpy(
      models['weights'],
      model_type=ModelType.SAVED_WEIGHTS,
      create_model_fn=lambda: make_linear(np.zeros_like(W), np.zeros_like(B)))
  results = list(handler.run_inference(EXAMPLES[:2], handler.load_model()))
  assert [_first(r) for r in results] == [want(x) for x in EXAMPLES[:2]]
  handler = TFModelHandlerNumpy(
      models['doubled'], custom_weights=models['weights'])
  results = list(handler.run_inference(EXAMPLES[:2], handler.load_model()))
  assert [_first(r) for r in results] == [want(x) for x in EXAMPLES[:2]]


def test_model_update_from_side_input(models):
  """Seed 003's pattern: a ModelMetadata side input swaps in a new model."""
  with beam.Pipeline() as p:
    side = p | 'Meta' >> beam.Create(
        [ModelMetadata(model_id=models['doubled'], model_name='doubled')])
    out = (
        p | beam.Create(EXAMPLES)
        | RunInference(
            TFModelHandlerNumpy(models['keras']), model_metadata_pcoll=side)
        | beam.Map(lambda r: (r.model_id, _first(r))))
    assert_that(
        out, equal_to([(models['doubled'], want(x, 2.0)) for x in EXAMPLES]))


def test_multi_output_model_gives_a_tuple_per_example(tmp_path):
  inputs = tf.keras.Input(shape=(3,))
  a = tf.keras.layers.Dense(1, name='a')(inputs)
  b = tf.keras.layers.Dense(2, name='b')(inputs)
  path = str(tmp_path / 'two.keras')
  tf.keras.Model(inputs, [a, b]).save(path)
  handler = TFModelHandlerNumpy(path)
  results = list(handler.run_inference(EXAMPLES[:3], handler.load_model()))
  assert len(results) == 3
  first, second = results[0].inference
  assert tuple(first.shape) == (1,) and tuple(second.shape) == (2,)


def test_inference_args_reach_the_model(models):
  handler = TFModelHandlerNumpy(models['keras'])
  results = list(
      handler.run_inference(EXAMPLES[:2], handler.load_model(),
                            {'training': False}))
  assert [_first(r) for r in results] == [want(x) for x in EXAMPLES[:2]]


def test_large_model_in_pipeline(models):
  with beam.Pipeline() as p:
    out = (
        p | beam.Create(EXAMPLES)
        | RunInference(TFModelHandlerNumpy(models['keras'], large_model=True))
        | beam.Map(_first))
    assert_that(out, equal_to([want(x) for x in EXAMPLES]))


def test_missing_model_names_the_path(tmp_path):
  with pytest.raises(FileNotFoundError, match='nope.keras'):
    TFModelHandlerNumpy(str(tmp_path / 'nope.keras')).load_model()


def test_a_file_that_is_not_a_model(tmp_path):
  bad = tmp_path / 'model.txt'
  bad.write_text('hello')
  with pytest.raises(ValueError, match='Keras file .* or a SavedModel'):
    TFModelHandlerNumpy(str(bad)).load_model()


def test_hub_url_without_tensorflow_hub_is_a_value_error():
  if importlib.util.find_spec('tensorflow_hub') is not None:
    pytest.skip('tensorflow_hub installed: the URL would be fetched')
  with pytest.raises(ValueError, match='tensorflow_hub'):
    TFModelHandlerNumpy('https://tfhub.dev/google/some/model/1').load_model()


def test_constructor_errors():
  with pytest.raises(ValueError, match='create_model_fn'):
    TFModelHandlerNumpy('w.h5', model_type=ModelType.SAVED_WEIGHTS)
  with pytest.raises(ValueError, match='model_type'):
    TFModelHandlerNumpy('m.keras', model_type='saved_model')
  with pytest.raises(ValueError, match='model_uri'):
    TFModelHandlerTensor(None)


def test_wrong_inputs_are_clear_errors(models):
  numpy_handler = TFModelHandlerNumpy(models['keras'])
  model = numpy_handler.load_model()
  with pytest.raises(TypeError, match='numpy.ndarray.*example 1 is list'):
    numpy_handler.run_inference([EXAMPLES[0], [1.0, 2.0, 3.0]], model)
  with pytest.raises(ValueError, match=r'example 1 has shape \(2,\)'):
    numpy_handler.run_inference([EXAMPLES[0], np.zeros(2, np.float32)], model)
  tensor_handler = TFModelHandlerTensor(models['keras'])
  with pytest.raises(TypeError, match='tf.Tensor.*example 0 is str'):
    tensor_handler.run_inference(['1,2,3'], model)


def test_num_bytes_and_namespaces():
  numpy_handler = TFModelHandlerNumpy('m.keras')
  tensor_handler = TFModelHandlerTensor('m.keras')
  assert numpy_handler.get_metrics_namespace() == 'BeamML_TF_Numpy'
  assert tensor_handler.get_metrics_namespace() == 'BeamML_TF_Tensor'
  assert numpy_handler.get_num_bytes(EXAMPLES[:2]) == 24
  assert tensor_handler.get_num_bytes([tf.constant(EXAMPLES[0])]) == 12
