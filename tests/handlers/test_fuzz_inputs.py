"""Property-based fuzz over every handler's input path (hypothesis).

Each example is a small real pipeline over a list of generated inputs (right
and wrong shapes and dtypes, NaN/inf, empty, huge, nested, None, text, mixed
keyed/unkeyed) with the dead-letter output on. Invariant: the pipeline
finishes (bounded: ``with_exception_handling(timeout=...)`` and a per-test
timeout), and every input comes out exactly once, as an output or as a dead
letter. Examples are few and derandomized so CI is stable; set
``RUNINFERENCE_FUZZ_EXAMPLES=200`` (random seeds) to explore.
"""
from __future__ import annotations

import collections
import itertools
import math
import os
import threading
from datetime import timedelta

import apache_beam as beam
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runinference.base import (KeyedModelHandler, MaybeKeyedModelHandler,
                               PredictionResult, RunInference)
from runinference.sklearn_inference import (SklearnModelHandlerNumpy,
                                            SklearnModelHandlerPandas)

_EXPLORE = int(os.environ.get('RUNINFERENCE_FUZZ_EXAMPLES', '0'))
FUZZ = settings(
    max_examples=_EXPLORE or 5,
    derandomize=not _EXPLORE,
    deadline=timedelta(seconds=120),
    database=None,
    suppress_health_check=list(HealthCheck),
)
# Frameworks whose every pipeline is slow to start (TensorFlow, torch models).
FUZZ_HEAVY = settings(FUZZ, max_examples=_EXPLORE or 3)
pytestmark = pytest.mark.timeout(600)
N = 3  # features of every model here
CALL_TIMEOUT = 60  # seconds a model load plus one batch may take

# -- running a pipeline and counting what came out ---------------------------------------

_SINKS: dict = collections.defaultdict(list)
_IDS = itertools.count()
_LOCK = threading.Lock()


def _sink(value, run: int, where: str):
  with _LOCK:
    _SINKS[run].append((where, value))


def canon(x):
  """A hashable, value-based form of an example (NaN-safe, type-aware)."""
  if isinstance(x, PredictionResult):
    return canon(x.example)
  if type(x).__module__.startswith('torch') and hasattr(x, 'detach'):
    return ('torch', str(x.dtype), canon(x.detach().cpu().numpy()))
  if type(x).__module__.startswith('tensorflow') and hasattr(x, 'numpy'):
    return ('tf', canon(x.numpy()))
  if isinstance(x, np.ndarray):
    if x.dtype.kind == 'O':
      return ('obj', x.shape, repr(x.tolist()))
    return ('arr', x.dtype.str, x.shape, np.ascontiguousarray(x).tobytes())
  if isinstance(x, np.generic):
    return ('np', x.dtype.str, repr(x))
  if type(x).__name__ in ('DataFrame', 'Series'):
    return ('pd', type(x).__name__, repr(list(x.dtypes) if hasattr(
        x, 'columns') else x.dtype), x.to_json())
  if isinstance(x, dict):
    return ('dict', tuple(sorted((repr(k), canon(v)) for k, v in x.items())))
  if isinstance(x, (list, tuple)):
    return (type(x).__name__, tuple(canon(v) for v in x))
  if isinstance(x, float) and math.isnan(x):
    return ('float', 'nan')
  return (type(x).__name__, repr(x))


def _canon_keyed_out(x):
  if isinstance(x, tuple) and len(x) == 2 and isinstance(
      x[1], PredictionResult):
    return ('tuple', (canon(x[0]), canon(x[1].example)))
  return canon(x)


def run_counted(handler, inputs, out_canon=canon):
  """Runs ``inputs`` through RunInference with the dead-letter output on;
  asserts each input is an output or a dead letter, exactly once."""
  run = next(_IDS)
  with beam.Pipeline() as p:
    main, dlq = p | beam.Create(inputs, reshuffle=False) | RunInference(
        handler).with_exception_handling(timeout=CALL_TIMEOUT)
    _ = main | 'Out' >> beam.Map(_sink, run, 'out')
    _ = dlq.failed_inferences | 'Dead' >> beam.Map(_sink, run, 'dead')
    for i, pcoll in enumerate(dlq.failed_preprocessing):
      _ = pcoll | f'Pre{i}' >> beam.Map(_sink, run, 'dead')
  got = _SINKS.pop(run, [])
  seen = collections.Counter()
  for where, value in got:
    if where == 'out':
      seen[out_canon(value)] += 1
    else:
      rows, (exc_type, _, _) = value
      assert isinstance(exc_type, type) and issubclass(exc_type, Exception)
      seen.update(canon(r) for r in rows)
  want = collections.Counter(canon(x) for x in inputs)
  assert seen == want, (
      f'{len(inputs)} inputs; missing {list((want - seen).elements())[:3]}, '
      f'extra {list((seen - want).elements())[:3]}')
  return got


class _SwapsFirstExample(SklearnModelHandlerNumpy):
  """Broken on purpose: reports another example for the first row."""
  def run_inference(self, batch, model, inference_args=None):
    results = list(super().run_inference(batch, model, inference_args))
    return [results[0]._replace(example=np.zeros(N) - 1)] + results[1:]


def test_the_invariant_can_fail(models):
  rows = [np.full(N, float(i)) for i in range(3)]
  run_counted(SklearnModelHandlerNumpy(models[1]['sklearn']), rows)
  with pytest.raises(AssertionError, match='missing'):
    run_counted(_SwapsFirstExample(models[1]['sklearn']), rows)


# -- generated inputs ---------------------------------------------------------------------

_WEIRD = [math.nan, math.inf, -math.inf, 1e308, -1e308, -0.0, 5e-324]
floats = st.one_of(
    st.floats(-1e6, 1e6, allow_nan=False, width=32), st.sampled_from(_WEIRD))
_DTYPES = ['float64', 'float32', 'float16', 'int8', 'int64', 'uint8', 'bool',
           'complex64']


@st.composite
def arrays(draw, length=None, dtypes=_DTYPES):
  n = draw(st.integers(0, 6)) if length is None else length
  values = draw(st.lists(floats, min_size=n, max_size=n))
  dtype = draw(st.sampled_from(dtypes))
  with np.errstate(all='ignore'):
    return np.array(values).astype(dtype)


_ODD = st.sampled_from([
    None, 'text', b'bytes', {'a': 1.0}, [1.0, 2.0, 3.0], [[1.0], [2.0, 3.0]],
    3.5, 7, (), [], np.float64(1.0), np.zeros((2, N)), np.zeros((0, N)),
    np.zeros(100_000), np.array(['a', 'b', 'c']), np.array([1.0, None, 2.0]),
    np.full(N, np.nan), np.full((1, 1, N), 1.0),
])
numeric_element = st.one_of(
    arrays(length=N, dtypes=['float64']),  # mostly valid rows
    arrays(length=N, dtypes=['float64']),
    arrays(length=N),
    arrays(),
    _ODD,
)
numeric_batches = st.lists(numeric_element, min_size=0, max_size=8)


# -- models: one file per module ---------------------------------------------------------

_X = np.random.RandomState(0).rand(40, N)
_Y = _X @ np.array([1.0, 2.0, 3.0])


@pytest.fixture(scope='module')
def models(tmp_path_factory):
  import pickle

  from sklearn.linear_model import LinearRegression
  root = tmp_path_factory.mktemp('fuzz_models')
  paths = {'sklearn': str(root / 'lin.pkl')}
  with open(paths['sklearn'], 'wb') as f:
    pickle.dump(LinearRegression().fit(_X, _Y), f)
  return root, paths


def test_sklearn_numpy(models):
  path = models[1]['sklearn']

  @FUZZ
  @given(numeric_batches)
  def prop(inputs):
    run_counted(SklearnModelHandlerNumpy(path), inputs)

  prop()


def test_sklearn_numpy_small_batches(models):
  # Tiny batches: bad rows share batches with good ones in other ways.
  path = models[1]['sklearn']

  @FUZZ
  @given(numeric_batches)
  def prop(inputs):
    run_counted(SklearnModelHandlerNumpy(path, max_batch_size=2), inputs)

  prop()


def test_sklearn_numpy_batching_options(models):
  # Weighted and length-bucketed batching, and batches cut across bundles:
  # len() raises on some inputs (None, numbers), which must dead-letter them.
  path = models[1]['sklearn']
  options = st.sampled_from([
      dict(element_size_fn=len, max_batch_weight=7),
      dict(batch_length_fn=len, batch_bucket_boundaries=[2, 4]),
      dict(max_batch_duration_secs=0.05, max_batch_size=3),
  ])

  @FUZZ
  @given(numeric_batches, options)
  def prop(inputs, kwargs):
    run_counted(SklearnModelHandlerNumpy(path, **kwargs), inputs)

  prop()


@st.composite
def frames(draw):
  import pandas as pd
  kind = draw(st.integers(0, 9))
  if kind == 0:
    return draw(st.sampled_from([None, 'text', np.zeros(N)]))
  if kind == 1:  # a Series
    return pd.Series(draw(st.lists(floats, min_size=N, max_size=N)),
                     index=['a', 'b', 'c'])
  rows = 1 if kind > 3 else draw(st.integers(0, 3))
  cols = ['a', 'b', 'c'] if kind > 2 else draw(
      st.lists(st.sampled_from(['a', 'b', 'c', 'd']), unique=True))
  data = {
      c: draw(st.one_of(
          st.lists(floats, min_size=rows, max_size=rows),
          st.lists(st.text(max_size=3), min_size=rows, max_size=rows)
          if kind == 3 else st.lists(floats, min_size=rows, max_size=rows)))
      for c in cols
  }
  return pd.DataFrame(data)


def test_sklearn_pandas(models):
  import pickle

  import pandas as pd
  from sklearn.linear_model import LinearRegression
  root = models[0]
  path = str(root / 'lin_pandas.pkl')
  if not os.path.exists(path):
    with open(path, 'wb') as f:
      pickle.dump(LinearRegression().fit(
          pd.DataFrame(_X, columns=['a', 'b', 'c']), _Y), f)

  @FUZZ
  @given(st.lists(frames(), max_size=6))
  def prop(inputs):
    run_counted(SklearnModelHandlerPandas(path), inputs)

  prop()


def test_keyed_and_maybe_keyed_mixed(models):
  path = models[1]['sklearn']
  keys = st.one_of(st.text(max_size=3), st.integers(-3, 3))
  keyed = st.tuples(keys, numeric_element)
  mixed = st.lists(st.one_of(keyed, numeric_element), max_size=8)

  @FUZZ
  @given(mixed, st.booleans())
  def prop(inputs, maybe):
    base = SklearnModelHandlerNumpy(path, max_batch_size=3)
    handler = (MaybeKeyedModelHandler(base) if maybe else
               KeyedModelHandler(base))
    run_counted(handler, inputs, out_canon=_canon_keyed_out)

  prop()


# -- PyTorch --------------------------------------------------------------------------------


def _torch_inputs(torch):
  dtypes = [torch.float32, torch.float64, torch.int64, torch.float16,
            torch.bool, torch.uint8]

  @st.composite
  def tensors(draw):
    shape = draw(st.one_of(st.just((N,)), st.lists(
        st.integers(0, 4), max_size=3).map(tuple)))
    size = int(np.prod(shape)) if shape else 1
    values = draw(st.lists(floats, min_size=size, max_size=size))
    with np.errstate(all='ignore'):
      arr = np.array(values, dtype=np.float64).reshape(shape)
    return torch.from_numpy(arr).to(draw(st.sampled_from(dtypes)))

  return tensors()


def test_pytorch_tensor_and_keyed_tensor(models):
  torch = pytest.importorskip('torch')
  from runinference.pytorch_inference import (PytorchModelHandlerKeyedTensor,
                                              PytorchModelHandlerTensor)
  from tests.handlers.cases.pytorch import KeyedSum, TimesFive
  root = models[0]
  plain = str(root / 'times_five.pt')
  keyed = str(root / 'keyed_sum.pt')
  torch.save(TimesFive(N).state_dict(), plain)
  torch.save(KeyedSum().state_dict(), keyed)
  tensors = _torch_inputs(torch)
  element = st.one_of(tensors, tensors, _ODD)
  names = st.sampled_from(['a', 'b', 'c'])
  keyed_element = st.one_of(
      st.dictionaries(names, tensors, max_size=3),
      st.fixed_dictionaries({'a': tensors, 'b': tensors}), _ODD)

  @FUZZ_HEAVY
  @given(st.lists(element, max_size=8), st.lists(keyed_element, max_size=6))
  def prop(inputs, keyed_inputs):
    run_counted(PytorchModelHandlerTensor(
        state_dict_path=plain, model_class=TimesFive,
        model_params={'dim': N}), inputs)
    run_counted(PytorchModelHandlerKeyedTensor(
        state_dict_path=keyed, model_class=KeyedSum), keyed_inputs)

  prop()


# -- ONNX, XGBoost, TensorFlow -------------------------------------------------------------


def test_onnx(models):
  pytest.importorskip('onnxruntime')
  skl2onnx = pytest.importorskip('skl2onnx')
  from sklearn.linear_model import LinearRegression

  from runinference.onnx_inference import OnnxModelHandlerNumpy
  path = models[0] / 'lin.onnx'
  x = _X.astype(np.float32)
  path.write_bytes(skl2onnx.to_onnx(
      LinearRegression().fit(x, _Y), x[:1]).SerializeToString())
  element = st.one_of(arrays(length=N, dtypes=['float32']), numeric_element)

  @FUZZ
  @given(st.lists(element, max_size=8))
  def prop(inputs):
    run_counted(OnnxModelHandlerNumpy(str(path)), inputs)

  prop()


def test_xgboost(models):
  xgboost = pytest.importorskip('xgboost')
  from runinference.xgboost_inference import XGBoostModelHandlerNumpy
  path = str(models[0] / 'xgb.json')
  xgboost.XGBRegressor(n_estimators=5).fit(_X, _Y).save_model(path)

  @FUZZ
  @given(numeric_batches)
  def prop(inputs):
    run_counted(XGBoostModelHandlerNumpy(xgboost.XGBRegressor, path), inputs)

  prop()


def test_tensorflow(models):
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  tf = pytest.importorskip('tensorflow')
  from runinference.tensorflow_inference import TFModelHandlerNumpy
  inputs_ = tf.keras.Input(shape=(N,))
  model = tf.keras.Model(inputs_, tf.keras.layers.Dense(1)(inputs_))
  path = str(models[0] / 'dense.keras')
  model.save(path)

  @FUZZ_HEAVY
  @given(numeric_batches)
  def prop(inputs):
    run_counted(TFModelHandlerNumpy(path), inputs)

  prop()


# -- Hugging Face: a tiny BERT made here ---------------------------------------------------


def test_huggingface_tensor(models):
  torch = pytest.importorskip('torch')
  transformers = pytest.importorskip('transformers')
  from runinference.huggingface_inference import HuggingFaceModelHandlerTensor
  path = str(models[0] / 'tiny_bert')
  if not os.path.exists(path):
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=30, hidden_size=8, num_hidden_layers=1,
        num_attention_heads=2, intermediate_size=16,
        max_position_embeddings=16)
    transformers.BertModel(config).save_pretrained(path)
  ids = st.lists(st.integers(-2, 40), max_size=20).map(
      lambda v: torch.tensor(v, dtype=torch.int64))
  element = st.one_of(ids, ids, _torch_inputs(torch), _ODD)

  @FUZZ_HEAVY
  @given(st.lists(element, max_size=6))
  def prop(inputs):
    run_counted(HuggingFaceModelHandlerTensor(path, transformers.AutoModel),
                inputs)

  prop()


# -- the columnar path ---------------------------------------------------------------------


@st.composite
def chunks(draw, start):
  import pandas as pd
  import pyarrow as pa
  rows = draw(st.integers(0, 5))
  cols = draw(st.one_of(
      st.just(['a', 'b', 'c']), st.just(['a', 'b', 'c']),
      st.lists(st.sampled_from(['a', 'b', 'c', 'd']), unique=True)))
  data = {'rid': list(range(start, start + rows))}
  for c in cols:
    kind = draw(st.integers(0, 5))
    if kind == 0:
      data[c] = draw(st.lists(st.text(max_size=2), min_size=rows,
                              max_size=rows))
    elif kind == 1:
      data[c] = draw(st.lists(st.one_of(st.none(), floats), min_size=rows,
                              max_size=rows))
    else:
      data[c] = draw(st.lists(floats, min_size=rows, max_size=rows))
  frame = pd.DataFrame(data)
  if draw(st.booleans()):
    return pa.RecordBatch.from_pandas(frame, preserve_index=False)
  return frame


def _rids(chunk) -> list:
  if hasattr(chunk, 'to_pandas'):
    chunk = chunk.to_pandas()
  return [int(v) for v in chunk['rid']]


def test_columnar(models):
  pytest.importorskip('pyarrow')
  from runinference.columnar import RunInferenceColumnar
  path = models[1]['sklearn']

  @st.composite
  def tables(draw):
    n = draw(st.integers(0, 5))
    return [draw(chunks(100 * i)) for i in range(n)]

  @FUZZ
  @given(tables())
  def prop(inputs):
    run = next(_IDS)
    with beam.Pipeline() as p:
      main, dlq = p | beam.Create(inputs, reshuffle=False) | (
          RunInferenceColumnar(SklearnModelHandlerNumpy(path),
                               feature_columns=['a', 'b', 'c'])
          .with_exception_handling())
      _ = main | 'Out' >> beam.Map(_sink, run, 'out')
      _ = dlq.failed_inferences | 'Dead' >> beam.Map(_sink, run, 'dead')
    seen = collections.Counter()
    for where, value in _SINKS.pop(run, []):
      seen.update(_rids(value if where == 'out' else value[0]))
    want = collections.Counter(r for chunk in inputs for r in _rids(chunk))
    assert seen == want

  prop()
