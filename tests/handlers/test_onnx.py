"""OnnxModelHandlerNumpy on real ONNX Runtime sessions, with models converted
from scikit-learn (skl2onnx) or built with onnx.helper inside each test."""
import logging

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.testing.util import assert_that, equal_to

ort = pytest.importorskip('onnxruntime')
onnx = pytest.importorskip('onnx')
skl2onnx = pytest.importorskip('skl2onnx')

from onnx import TensorProto, helper  # noqa: E402
from sklearn.linear_model import LinearRegression, LogisticRegression  # noqa: E402

from runinference.base import KeyedModelHandler, RunInference  # noqa: E402
from runinference.onnx_inference import (OnnxModelHandlerNumpy,  # noqa: E402
                                         all_outputs_inference_fn,
                                         default_numpy_inference_fn)


def save_linear(tmp_path, name='linear.onnx'):
  """2*x0 + 3*x1 + 0.5, converted from scikit-learn."""
  x = np.array([[1, 5], [3, 2], [1, 0], [0, 0]], dtype=np.float32)
  y = 2 * x[:, 0] + 3 * x[:, 1] + 0.5
  model = LinearRegression().fit(x, y)
  onx = skl2onnx.to_onnx(model, x[:1])
  path = tmp_path / name
  path.write_bytes(onx.SerializeToString())
  return str(path)


def save_graph(tmp_path, name, nodes, inputs, outputs):
  graph = helper.make_graph(nodes, name, inputs, outputs)
  model = helper.make_model(
      graph, opset_imports=[helper.make_opsetid('', 17)])
  model.ir_version = 8
  onnx.checker.check_model(model)
  path = tmp_path / f'{name}.onnx'
  path.write_bytes(model.SerializeToString())
  return str(path)


def save_two_input_add(tmp_path):
  f = TensorProto.FLOAT
  return save_graph(
      tmp_path, 'add', [helper.make_node('Add', ['a', 'b'], ['sum'])],
      [helper.make_tensor_value_info('a', f, [None, 2]),
       helper.make_tensor_value_info('b', f, [None, 2])],
      [helper.make_tensor_value_info('sum', f, [None, 2])])


def save_row_sum(tmp_path):
  """Sums each row; rows of any length (input shape [batch, n])."""
  f = TensorProto.FLOAT
  return save_graph(
      tmp_path, 'rowsum',
      [helper.make_node('ReduceSum', ['x', 'axes'], ['s'], keepdims=0)],
      [helper.make_tensor_value_info('x', f, [None, None]),
       helper.make_tensor_value_info('axes', TensorProto.INT64, [1])],
      [helper.make_tensor_value_info('s', f, [None])])


EXAMPLES = [
    np.array([1, 5], dtype=np.float32),
    np.array([3, 10], dtype=np.float32),
    np.array([-14, 0], dtype=np.float32),
    np.array([0.5, 0.5], dtype=np.float32),
]


def expected(x):
  return 2 * x[0] + 3 * x[1] + 0.5


def test_run_inference_matches_model(tmp_path):
  handler = OnnxModelHandlerNumpy(save_linear(tmp_path))
  session = handler.load_model()
  results = list(handler.run_inference(EXAMPLES, session))
  assert [r.example for r in results] == EXAMPLES
  for r in results:
    assert float(np.ravel(r.inference)[0]) == pytest.approx(
        expected(r.example), rel=1e-5)
    assert r.model_id == handler._model_uri


def test_pipeline_and_keyed_pipeline(tmp_path):
  path = save_linear(tmp_path)
  with beam.Pipeline() as p:
    data = p | beam.Create(EXAMPLES)
    out = (
        data | RunInference(OnnxModelHandlerNumpy(path))
        | beam.Map(lambda r: round(float(np.ravel(r.inference)[0]), 3)))
    assert_that(out, equal_to([round(expected(x), 3) for x in EXAMPLES]))
    keyed = (
        data | beam.Map(lambda x: (f'k{int(x[0])}', x))
        | 'Keyed' >> RunInference(
            KeyedModelHandler(OnnxModelHandlerNumpy(path)))
        | beam.Map(lambda kv: (kv[0], round(float(np.ravel(kv[1].inference)[0]),
                                            3))))
    assert_that(
        keyed,
        equal_to([(f'k{int(x[0])}', round(expected(x), 3)) for x in EXAMPLES]),
        label='keyed')


def test_float64_and_int_examples_are_cast_to_the_declared_dtype(tmp_path):
  handler = OnnxModelHandlerNumpy(save_linear(tmp_path))
  session = handler.load_model()
  examples = [np.array([1.0, 5.0]), np.array([3, 10])]  # float64, int64
  results = list(handler.run_inference(examples, session))
  assert float(np.ravel(results[0].inference)[0]) == pytest.approx(17.5)
  assert float(np.ravel(results[1].inference)[0]) == pytest.approx(36.5)


def test_all_outputs_of_a_classifier(tmp_path):
  x = np.array([[0, 0], [0, 1], [5, 5], [6, 5]], dtype=np.float32)
  clf = LogisticRegression().fit(x, [0, 0, 1, 1])
  onx = skl2onnx.to_onnx(clf, x[:1], options={'zipmap': False})
  path = tmp_path / 'clf.onnx'
  path.write_bytes(onx.SerializeToString())
  handler = OnnxModelHandlerNumpy(
      str(path), inference_fn=all_outputs_inference_fn)
  results = list(handler.run_inference(list(x), handler.load_model()))
  assert [int(r.inference['label']) for r in results] == [0, 0, 1, 1]
  for r in results:
    assert r.inference['probabilities'].shape == (2,)
    assert float(r.inference['probabilities'].sum()) == pytest.approx(1.0)


def test_multi_input_model_takes_dict_examples(tmp_path):
  handler = OnnxModelHandlerNumpy(save_two_input_add(tmp_path))
  examples = [{
      'a': np.array([i, 1], np.float32), 'b': np.array([10, i], np.float32)
  } for i in range(3)]
  results = list(handler.run_inference(examples, handler.load_model()))
  assert [r.inference.tolist() for r in results] == [[10, 1], [11, 2], [12, 3]]
  with pytest.raises(ValueError, match="not inputs of the model.*'a', 'b'"):
    handler.run_inference([{'c': np.zeros(2, np.float32)}],
                          handler.load_model())


def test_inference_args_feed_extra_inputs_and_ragged_rows_split(tmp_path):
  path = save_row_sum(tmp_path)
  handler = OnnxModelHandlerNumpy(path)
  args = {'axes': np.array([1], dtype=np.int64)}
  results = list(
      handler.run_inference([np.ones(3), np.ones(3) * 2], handler.load_model(),
                            args))
  assert [float(r.inference) for r in results] == [3.0, 6.0]
  # Rows of different lengths cannot stack into one array; in a pipeline the
  # batch is re-run as same-shape sub-batches.
  examples = [np.ones(n, np.float32) for n in (1, 2, 3, 2, 1)]
  with beam.Pipeline() as p:
    out = (
        p | beam.Create(examples)
        | RunInference(
            OnnxModelHandlerNumpy(path, min_batch_size=5, max_batch_size=5),
            inference_args=args)
        | beam.Map(lambda r: float(r.inference)))
    assert_that(out, equal_to([1.0, 2.0, 3.0, 2.0, 1.0]))


def test_unavailable_providers_fall_back_to_cpu(tmp_path, caplog):
  path = save_linear(tmp_path)
  with caplog.at_level(logging.INFO, logger='runinference.onnx_inference'):
    session = OnnxModelHandlerNumpy(
        path, providers=['NoSuchExecutionProvider']).load_model()
  assert session.get_providers() == ['CPUExecutionProvider']
  assert 'NoSuchExecutionProvider' in caplog.text
  caplog.clear()
  with caplog.at_level(logging.INFO, logger='runinference.onnx_inference'):
    session = OnnxModelHandlerNumpy(path).load_model()  # CUDA first
  assert 'CPUExecutionProvider' in session.get_providers()
  if 'CUDAExecutionProvider' not in ort.get_available_providers():
    assert 'CUDAExecutionProvider' in caplog.text


def test_provider_options_must_match_providers(tmp_path):
  handler = OnnxModelHandlerNumpy(
      save_linear(tmp_path),
      providers=['CPUExecutionProvider'],
      provider_options=[{}, {}])
  with pytest.raises(ValueError, match='one entry per provider'):
    handler.load_model()


def test_missing_model_file_names_the_path(tmp_path):
  missing = str(tmp_path / 'nope.onnx')
  with pytest.raises(FileNotFoundError, match='nope.onnx'):
    OnnxModelHandlerNumpy(missing).load_model()


def test_a_file_that_is_not_onnx_is_a_clear_error(tmp_path):
  bad = tmp_path / 'model.pkl'
  bad.write_bytes(b'\x80\x04not an onnx model')
  with pytest.raises(ValueError, match='not a model ONNX Runtime can load'):
    OnnxModelHandlerNumpy(str(bad)).load_model()


def test_bad_model_uri_argument():
  with pytest.raises(ValueError, match='model_uri'):
    OnnxModelHandlerNumpy('')


def test_wrong_shape_says_what_the_model_takes(tmp_path):
  handler = OnnxModelHandlerNumpy(save_linear(tmp_path))
  with pytest.raises(ValueError) as info:
    handler.run_inference([np.array([1.0], np.float32)], handler.load_model())
  message = str(info.value)
  assert 'invalid dimensions' in message.lower()
  assert 'The model takes' in message and 'shape=(1, 1)' in message


def test_wrong_type_says_convert_to_numpy(tmp_path):
  handler = OnnxModelHandlerNumpy(save_linear(tmp_path))
  with pytest.raises(TypeError, match='numpy.ndarray.*example 1 is list'):
    handler.run_inference([np.zeros(2, np.float32), [1.0, 2.0]],
                          handler.load_model())
  with pytest.raises(TypeError, match='numeric arrays'):
    handler.run_inference([np.array(['a', 'b'])], handler.load_model())


def test_large_model_and_env_vars_in_pipeline(tmp_path, monkeypatch):
  monkeypatch.delenv('RI_ONNX_TEST', raising=False)
  path = save_linear(tmp_path)
  seen = []

  def fn(session, batch, inference_args=None):
    seen.append(type(session).__name__)
    return default_numpy_inference_fn(session, batch, inference_args)

  handler = OnnxModelHandlerNumpy(
      path, inference_fn=fn, large_model=True, env_vars={'RI_ONNX_TEST': '1'})
  with beam.Pipeline() as p:
    out = (
        p | beam.Create(EXAMPLES) | RunInference(handler)
        | beam.Map(lambda r: round(float(np.ravel(r.inference)[0]), 3)))
    assert_that(out, equal_to([round(expected(x), 3) for x in EXAMPLES]))
  import os
  assert os.environ.get('RI_ONNX_TEST') == '1'


def test_num_bytes_and_namespace():
  handler = OnnxModelHandlerNumpy('unused.onnx')
  batch = [np.zeros(3, np.float32), np.zeros(3, np.float32)]
  assert handler.get_num_bytes(batch) == 24
  assert handler.get_metrics_namespace() == 'BeamML_Onnx'
  handler.update_model_path('other.onnx')
  assert handler._model_uri == 'other.onnx'
