"""The columnar fast path: whole Arrow/pandas chunks scored at once, with real
tiny models trained here and real pipelines on the DirectRunner."""
import pickle
import re
import subprocess
import sys
import uuid

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.transforms import window

pa = pytest.importorskip('pyarrow')
pd = pytest.importorskip('pandas')
pq = pytest.importorskip('pyarrow.parquet')

from sklearn.linear_model import LinearRegression, LogisticRegression  # noqa: E402

from runinference.base import KeyedModelHandler, ModelHandler  # noqa: E402
from runinference.columnar import (MatrixPredictor,  # noqa: E402
                                   MissingColumnsError, RunInferenceColumnar)
from runinference.sklearn_inference import (  # noqa: E402
    SklearnModelHandlerNumpy, SklearnModelHandlerPandas)
from tests.helpers import MultiplierHandler  # noqa: E402

FEATURES = ['x1', 'x2', 'x3']
RNG = np.random.default_rng(0)
X = RNG.normal(size=(300, 3))
Y_REG = X @ np.array([1.5, -2.0, 0.5]) + 0.25
Y_CLS = np.digitize(X[:, 0], [-0.5, 0.5])  # three classes


def frame(lo=0, hi=len(X), index=None):
  df = pd.DataFrame(X[lo:hi].copy(), columns=FEATURES, index=index)
  df.insert(0, 'id', np.arange(lo, hi))
  return df


def record_batch(lo=0, hi=len(X)):
  return pa.RecordBatch.from_pandas(frame(lo, hi), preserve_index=False)


def pickled(tmp_path, model, name='model.pkl'):
  path = tmp_path / name
  path.write_bytes(pickle.dumps(model))
  return str(path)


@pytest.fixture(scope='module')
def reg(tmp_path_factory):
  model = LinearRegression().fit(X, Y_REG)
  return model, pickled(tmp_path_factory.mktemp('reg'), model)


@pytest.fixture(scope='module')
def clf(tmp_path_factory):
  model = LogisticRegression().fit(X, Y_CLS)
  return model, pickled(tmp_path_factory.mktemp('clf'), model)


# -- collecting a pipeline's output in this process (DirectRunner) ------------
_OUT: dict = {}


def _keep(x, key):
  _OUT.setdefault(key, []).append(x)


def run(build):
  """Runs ``build(p)`` -> PCollection or tuple of them; returns
  ``(outputs per PCollection, PipelineResult)``."""
  p = beam.Pipeline()
  pcolls = build(p)
  single = not isinstance(pcolls, tuple)
  pcolls = (pcolls,) if single else pcolls
  keys = [uuid.uuid4().hex for _ in pcolls]
  for key, pc in zip(keys, pcolls):
    _ = pc | f'Keep{key}' >> beam.Map(_keep, key)
  result = p.run()
  result.wait_until_finish()
  outs = [_OUT.pop(k, []) for k in keys]
  return (outs[0] if single else outs), result


def to_pandas(chunks):
  """Every chunk as one DataFrame sorted by id."""
  parts = [c if isinstance(c, pd.DataFrame) else c.to_pandas() for c in chunks]
  return pd.concat(parts).sort_values('id').reset_index(drop=True)


def counter(result, namespace, name):
  found = result.metrics().query(
      MetricsFilter().with_namespace(namespace).with_name(name))
  return sum(c.committed for c in found['counters'])


def distribution(result, namespace, name):
  found = result.metrics().query(
      MetricsFilter().with_namespace(namespace).with_name(name))
  return found['distributions'][0].committed


# -- chunk types ----------------------------------------------------------------
def test_record_batches_get_a_prediction_column(reg):
  model, path = reg
  chunks = [record_batch(i, i + 100) for i in range(0, 300, 100)]
  out, result = run(lambda p: p | beam.Create(chunks) | RunInferenceColumnar(
      SklearnModelHandlerNumpy(path), FEATURES))
  assert len(out) == 3
  assert all(isinstance(c, pa.RecordBatch) for c in out)
  assert out[0].schema.names == ['id', *FEATURES, 'prediction']
  got = to_pandas(out)
  np.testing.assert_allclose(got['prediction'], model.predict(X))
  np.testing.assert_array_equal(got[FEATURES].to_numpy(), X)
  assert counter(result, 'BeamML_Sklearn', 'num_inferences') == 300
  sizes = distribution(result, 'BeamML_Sklearn', 'inference_request_batch_size')
  assert (sizes.count, sizes.sum, sizes.max) == (3, 300, 100)
  from runinference.report import RunReport
  [step] = RunReport.from_result(result).steps
  assert (step.inferences, step.batches, step.model_loads) == (300, 3, 1)


def test_dataframes_keep_their_index_and_are_not_modified(reg):
  model, path = reg
  chunks = [frame(0, 150, index=np.arange(1000, 1150)), frame(150, 300)]
  out, _ = run(lambda p: p | beam.Create(chunks) | RunInferenceColumnar(
      SklearnModelHandlerNumpy(path), FEATURES, 'y_hat'))
  first = next(c for c in out if c['id'].iloc[0] == 0)
  assert list(first.index[:2]) == [1000, 1001]
  assert list(first.columns) == ['id', *FEATURES, 'y_hat']
  np.testing.assert_allclose(to_pandas(out)['y_hat'], model.predict(X))
  assert 'y_hat' not in chunks[0].columns


def test_multi_chunk_tables_keep_their_chunk_layout(reg):
  model, path = reg
  table = pa.Table.from_batches([record_batch(0, 120), record_batch(120, 300)])
  out, _ = run(lambda p: p | beam.Create([table]) | RunInferenceColumnar(
      SklearnModelHandlerNumpy(path), FEATURES))
  assert len(out) == 1 and isinstance(out[0], pa.Table)
  assert [b.num_rows for b in out[0].to_batches()] == [120, 180]
  np.testing.assert_allclose(
      out[0].column('prediction').to_numpy(), model.predict(X))


def test_parquet_round_trip(reg, tmp_path):
  model, path = reg
  src = tmp_path / 'rows.parquet'
  pq.write_table(pa.Table.from_pandas(frame(), preserve_index=False), src,
                 row_group_size=64)
  prefix = str(tmp_path / 'scored')
  schema = pq.read_schema(src).append(pa.field('prediction', pa.float64()))

  def build(p):
    return (p | beam.io.ReadFromParquetBatched(str(src))
            | RunInferenceColumnar(SklearnModelHandlerNumpy(path), FEATURES)
            | beam.io.WriteToParquetBatched(
                prefix, schema=schema, file_name_suffix='.parquet'))

  run(build)
  files = sorted(tmp_path.glob('scored*.parquet'))
  assert files
  got = pq.read_table([str(f) for f in files]).to_pandas()
  got = got.sort_values('id').reset_index(drop=True)
  assert len(got) == 300
  np.testing.assert_allclose(got['prediction'], model.predict(X))


def test_windows_and_timestamps_are_kept(reg):
  _, path = reg

  def build(p):
    return (p | beam.Create([(record_batch(0, 10), 5), (record_batch(10, 20), 65)])
            | beam.Map(lambda kv: window.TimestampedValue(*kv))
            | beam.WindowInto(window.FixedWindows(60))
            | RunInferenceColumnar(SklearnModelHandlerNumpy(path), FEATURES)
            | beam.Map(lambda c, ts=beam.DoFn.TimestampParam,
                       w=beam.DoFn.WindowParam: (
                           c.column('id')[0].as_py(), int(ts), int(w.start))))

  out, _ = run(build)
  assert sorted(out) == [(0, 5, 0), (10, 65, 60)]


# -- handlers -------------------------------------------------------------------
def test_sklearn_pandas_handler_gets_named_columns(tmp_path):
  named = pd.DataFrame(X, columns=FEATURES)
  model = LinearRegression().fit(named, Y_REG)  # remembers feature names
  path = pickled(tmp_path, model)
  chunk = record_batch()
  with_names = RunInferenceColumnar(SklearnModelHandlerPandas(path), FEATURES)
  scored, dead = with_names._scorer().score(chunk)
  assert not dead
  np.testing.assert_allclose(
      scored.column('prediction').to_numpy(), model.predict(named))
  # The model checks the names: the wrong columns are a clear error.
  wrong = RunInferenceColumnar(SklearnModelHandlerPandas(path), ['x2', 'x1', 'x3'])
  with pytest.raises(ValueError, match='feature names'):
    wrong._scorer().score(chunk)


def test_xgboost_numpy_and_pandas_handlers(tmp_path):
  xgboost = pytest.importorskip('xgboost')
  from runinference.xgboost_inference import (XGBoostModelHandlerNumpy,
                                              XGBoostModelHandlerPandas)
  model = xgboost.XGBRegressor(n_estimators=10, max_depth=3).fit(X, Y_REG)
  model.save_model(str(tmp_path / 'xgb.json'))
  named = xgboost.XGBRegressor(n_estimators=10, max_depth=3).fit(
      pd.DataFrame(X, columns=FEATURES), Y_REG)
  named.save_model(str(tmp_path / 'xgb_named.json'))

  def build(p):
    chunks = p | beam.Create([record_batch(0, 100), frame(100, 300)])
    a = chunks | 'Numpy' >> RunInferenceColumnar(
        XGBoostModelHandlerNumpy(xgboost.XGBRegressor, str(tmp_path / 'xgb.json')),
        FEATURES)
    b = chunks | 'Booster' >> RunInferenceColumnar(
        XGBoostModelHandlerNumpy(xgboost.Booster, str(tmp_path / 'xgb.json')),
        FEATURES, 'margin', inference_args={'output_margin': True})
    c = chunks | 'Pandas' >> RunInferenceColumnar(
        XGBoostModelHandlerPandas(
            xgboost.XGBRegressor, str(tmp_path / 'xgb_named.json')), FEATURES)
    return a, b, c

  (a, b, c), result = run(build)
  np.testing.assert_allclose(to_pandas(a)['prediction'], model.predict(X),
                             rtol=1e-6)
  np.testing.assert_allclose(to_pandas(b)['margin'],
                             model.predict(X, output_margin=True), rtol=1e-6)
  np.testing.assert_allclose(
      to_pandas(c)['prediction'],
      named.predict(pd.DataFrame(X, columns=FEATURES)), rtol=1e-6)
  assert counter(result, 'BeamML_XGBoost', 'num_inferences') == 900


def test_nulls_reach_the_model_as_nan(tmp_path):
  xgboost = pytest.importorskip('xgboost')
  from runinference.xgboost_inference import XGBoostModelHandlerNumpy
  model = xgboost.XGBRegressor(n_estimators=5).fit(X, Y_REG)
  model.save_model(str(tmp_path / 'xgb.json'))
  ints = pa.array([1, None, 3, None], type=pa.int64())
  chunk = pa.RecordBatch.from_arrays(
      [ints, pa.array([0.5, 1.0, None, 2.0]), pa.array([1.0, 2.0, 3.0, 4.0])],
      names=FEATURES)
  scored, _ = RunInferenceColumnar(
      XGBoostModelHandlerNumpy(xgboost.XGBRegressor, str(tmp_path / 'xgb.json')),
      FEATURES)._scorer().score(chunk)
  expected = model.predict(np.array(
      [[1, .5, 1], [np.nan, 1, 2], [3, np.nan, 3], [np.nan, 2, 4]]))
  np.testing.assert_allclose(scored.column('prediction').to_numpy(), expected)


def test_onnx_first_and_all_outputs(tmp_path):
  skl2onnx = pytest.importorskip('skl2onnx')
  pytest.importorskip('onnxruntime')
  from runinference.onnx_inference import (OnnxModelHandlerNumpy,
                                           all_outputs_inference_fn)
  model = LogisticRegression().fit(X, Y_CLS)
  path = tmp_path / 'clf.onnx'
  path.write_bytes(skl2onnx.to_onnx(
      model, X[:1].astype(np.float32), options={'zipmap': False}
  ).SerializeToString())
  chunk = record_batch()
  labels, _ = RunInferenceColumnar(
      OnnxModelHandlerNumpy(str(path)), FEATURES, 'label')._scorer().score(chunk)
  np.testing.assert_array_equal(labels.column('label').to_numpy(),
                                model.predict(X))
  both, _ = RunInferenceColumnar(
      OnnxModelHandlerNumpy(str(path), inference_fn=all_outputs_inference_fn),
      FEATURES, 'clf')._scorer().score(chunk)
  assert both.schema.names[-2:] == ['clf_label', 'clf_probabilities']
  probs = np.array(both.column('clf_probabilities').to_pylist())
  np.testing.assert_allclose(probs, model.predict_proba(X), atol=1e-5)


def test_pytorch_tensor_handler(tmp_path):
  torch = pytest.importorskip('torch')
  from runinference.pytorch_inference import PytorchModelHandlerTensor
  torch.manual_seed(0)
  net = torch.nn.Linear(3, 1)
  torch.save(net.state_dict(), tmp_path / 'lin.pt')
  handler = PytorchModelHandlerTensor(
      state_dict_path=str(tmp_path / 'lin.pt'), model_class=torch.nn.Linear,
      model_params={'in_features': 3, 'out_features': 1})
  scored, _ = RunInferenceColumnar(handler, FEATURES)._scorer().score(frame())
  with torch.no_grad():
    expected = net(torch.tensor(X, dtype=torch.float32))[:, 0].numpy()
  # a (rows, 1) output is one plain column
  np.testing.assert_allclose(scored['prediction'].to_numpy(), expected,
                             rtol=1e-5)


# -- outputs --------------------------------------------------------------------
def test_predict_proba_as_named_columns_and_as_a_list_column(clf):
  model, path = clf

  def proba(m, x, args):
    return m.predict_proba(x)

  def build(p):
    chunks = p | beam.Create([record_batch(0, 150), frame(150, 300)])
    named = chunks | 'Named' >> RunInferenceColumnar(
        SklearnModelHandlerNumpy(path), FEATURES, ['p0', 'p1', 'p2'],
        predict_fn=proba)
    listed = chunks | 'List' >> RunInferenceColumnar(
        SklearnModelHandlerNumpy(path), FEATURES, 'proba', predict_fn=proba)
    return named, listed

  (named, listed), _ = run(build)
  expected = model.predict_proba(X)
  np.testing.assert_allclose(to_pandas(named)[['p0', 'p1', 'p2']], expected)
  batch = next(c for c in listed if isinstance(c, pa.RecordBatch))
  assert batch.schema.field('proba').type == pa.list_(pa.float64(), 3)
  df = next(c for c in listed if isinstance(c, pd.DataFrame))
  assert isinstance(df['proba'].dtype, pd.ArrowDtype)
  got = np.array(to_pandas(listed)['proba'].tolist())
  np.testing.assert_allclose(got, expected)


def test_wrong_number_of_output_names_is_a_clear_error(clf):
  _, path = clf
  step = RunInferenceColumnar(SklearnModelHandlerNumpy(path), FEATURES,
                              ['a', 'b'], predict_fn=lambda m, x, a:
                              m.predict_proba(x))
  with pytest.raises(ValueError, match='names 2 columns.*3 value'):
    step._scorer().score(record_batch())


def test_output_column_that_exists_is_an_error(reg):
  _, path = reg
  with pytest.raises(ValueError, match='also a feature column'):
    RunInferenceColumnar(SklearnModelHandlerNumpy(path), FEATURES, 'x1')
  step = RunInferenceColumnar(SklearnModelHandlerNumpy(path), FEATURES, 'id')
  with pytest.raises(ValueError, match=r"already has column\(s\) \['id'\]"):
    step._scorer().score(record_batch())


def test_empty_chunks(reg):
  _, path = reg
  scorer = RunInferenceColumnar(SklearnModelHandlerNumpy(path),
                                FEATURES)._scorer()
  scorer.setup()
  assert scorer.score(record_batch(0, 0)) == (None, [])  # layout unknown yet
  scorer.score(record_batch(0, 5))
  empty, dead = scorer.score(record_batch(0, 0))
  assert not dead and empty.num_rows == 0
  assert empty.schema.field('prediction').type == pa.float64()


def test_handler_max_batch_size_caps_rows_per_model_call(reg):
  model, path = reg
  out, result = run(lambda p: p | beam.Create([record_batch()]) |
                    RunInferenceColumnar(
                        SklearnModelHandlerNumpy(path, max_batch_size=128),
                        FEATURES, metrics_namespace='capped'))
  np.testing.assert_allclose(to_pandas(out)['prediction'], model.predict(X))
  sizes = distribution(result, 'capped', 'inference_request_batch_size')
  assert (sizes.count, sizes.max, sizes.min) == (3, 128, 44)
  assert counter(result, 'capped', 'num_inferences') == 300


def test_rows_per_call_scores_several_chunks_in_one_model_call(reg):
  model, path = reg
  chunks = [record_batch(i, i + 30) for i in range(0, 300, 30)]
  chunks[3] = chunks[3].to_pandas()  # chunk types may mix in one call
  chunks.insert(5, record_batch(0, 0))  # an empty chunk is scored alone

  def build(p):
    return (p | beam.Create(
        [(c, 10 * i) for i, c in enumerate(chunks)])
            | beam.Map(lambda kv: window.TimestampedValue(*kv))
            | beam.WindowInto(window.FixedWindows(60))
            | RunInferenceColumnar(SklearnModelHandlerNumpy(path), FEATURES,
                                   metrics_namespace='merged',
                                   rows_per_call=100)
            | beam.Map(lambda c, ts=beam.DoFn.TimestampParam,
                       w=beam.DoFn.WindowParam: (c, int(ts), int(w.start))))

  out, result = run(build)
  scored = [c for c, _, _ in out]
  np.testing.assert_allclose(to_pandas(scored)['prediction'], model.predict(X))
  assert [type(c).__name__ for c in scored].count('DataFrame') == 1
  # each chunk keeps its own timestamp and window
  for c, ts, start in out:
    if len(c):
      first = int(c['id'][0] if isinstance(c, pd.DataFrame) else
                  c.column('id')[0].as_py())
      k = first // 30 + (first // 30 >= 5)
      assert (ts, start) == (10 * k, 10 * k // 60 * 60)
  sizes = distribution(result, 'merged', 'inference_request_batch_size')
  assert sizes.count < 10 and sizes.max >= 100 and sizes.sum == 300
  assert counter(result, 'merged', 'num_inferences') == 300


def test_rows_per_call_still_isolates_bad_rows(reg):
  model, path = reg
  df = frame()
  df.loc[[7, 250], 'x2'] = np.nan
  chunks = [df.iloc[i:i + 50] for i in range(0, 300, 50)]

  def build(p):
    main, dlq = p | beam.Create(chunks) | RunInferenceColumnar(
        SklearnModelHandlerNumpy(path), FEATURES,
        rows_per_call=1000).with_exception_handling()
    return main, dlq.failed_inferences

  (main, dead), _ = run(build)
  good = to_pandas(main)
  assert sorted(set(range(300)) - set(good['id'])) == [7, 250]
  np.testing.assert_allclose(good['prediction'],
                             model.predict(X[good['id'].to_numpy()]))
  assert sorted(int(rec['id'].iloc[0]) for rec, _ in dead) == [7, 250]


def test_rows_per_call_must_be_auto_a_positive_int_or_none(reg):
  for bad in (0, -5, 2.5, True, '100', 'AUTO'):
    with pytest.raises(ValueError,
                       match="rows_per_call must be 'auto', a positive int"):
      RunInferenceColumnar(SklearnModelHandlerNumpy(reg[1]), FEATURES,
                           rows_per_call=bad)


@pytest.mark.parametrize('overlap', [True, False])
def test_by_default_small_chunks_share_model_calls(reg, overlap):
  """rows_per_call='auto' (the default): 100 chunks of 3 rows -- a model
  call's fixed cost dwarfs its rows -- are scored in far fewer calls, each
  chunk still in its own window."""
  model, path = reg

  def build(p):
    return (p | beam.Create([(record_batch(i, i + 3), i)
                             for i in range(0, 300, 3)])
            | beam.Map(lambda kv: window.TimestampedValue(*kv))
            | beam.WindowInto(window.FixedWindows(30))
            | RunInferenceColumnar(SklearnModelHandlerNumpy(path), FEATURES,
                                   metrics_namespace='auto', overlap=overlap)
            | beam.Map(lambda c, w=beam.DoFn.WindowParam: (c, int(w.start))))

  out, result = run(build)
  scored = [c for c, _ in out]
  np.testing.assert_allclose(
      to_pandas(scored).sort_values('id')['prediction'], model.predict(X))
  for c, start in out:
    assert int(c.column('id')[0].as_py()) // 30 * 30 == start
  sizes = distribution(result, 'auto', 'inference_request_batch_size')
  assert sizes.sum == 300 and sizes.count < 30 and sizes.max > 3


# -- dead letters -----------------------------------------------------------------
def test_bad_rows_are_bisected_out_of_the_chunk(reg):
  model, path = reg
  bad_rows = {3, 57, 58, 199}
  df = frame()
  for i in bad_rows:
    df.loc[i, 'x2'] = np.nan  # LinearRegression rejects NaN input
  chunks = [df.iloc[:100], pa.RecordBatch.from_pandas(df.iloc[100:],
                                                      preserve_index=False)]

  def build(p):
    main, dlq = p | beam.Create(chunks) | RunInferenceColumnar(
        SklearnModelHandlerNumpy(path), FEATURES).with_exception_handling()
    return main, dlq.failed_inferences

  (main, dead), result = run(build)
  good = to_pandas(main)
  assert sorted(set(range(300)) - set(good['id'])) == sorted(bad_rows)
  keep = good['id'].to_numpy()
  np.testing.assert_allclose(good['prediction'], model.predict(X[keep]))
  assert len(dead) == 4
  rows = to_pandas([rec for rec, _ in dead])
  assert sorted(rows['id']) == sorted(bad_rows)
  for rec, (exc_type, text, tb) in dead:
    assert len(rec) == 1
    assert exc_type is ValueError and 'NaN' in text and tb
  assert counter(result, 'BeamML_Sklearn', 'failed_inferences') == 4
  assert counter(result, 'BeamML_Sklearn', 'failed_batches_counter') == 2


def test_a_value_that_does_not_convert_fails_only_its_row(reg):
  model, path = reg
  df = frame(0, 10)
  df['x3'] = df['x3'].astype(object)
  df.loc[4, 'x3'] = 'n/a'
  scorer = RunInferenceColumnar(SklearnModelHandlerNumpy(path),
                                FEATURES).with_exception_handling()._scorer()
  scored, dead = scorer.score(df)
  assert list(scored['id']) == [0, 1, 2, 3, 5, 6, 7, 8, 9]
  np.testing.assert_allclose(scored['prediction'],
                             model.predict(X[[0, 1, 2, 3, 5, 6, 7, 8, 9]]))
  [(row, (exc_type, text, _))] = dead
  assert list(row['id']) == [4] and exc_type is ValueError and 'n/a' in text


def test_without_bisection_the_failing_call_is_one_record(reg):
  _, path = reg
  df = frame(0, 10)
  df.loc[2, 'x1'] = np.nan
  scorer = RunInferenceColumnar(
      SklearnModelHandlerNumpy(path), FEATURES).with_exception_handling(
          bisect=False)._scorer()
  assert scorer.score(df)[0] is None
  [(rows, _)] = scorer.score(df)[1]
  assert len(rows) == 10


def test_failures_over_the_threshold_fail_the_pipeline(reg):
  _, path = reg
  df = frame(0, 10)
  df['x1'] = np.nan
  with pytest.raises(Exception, match='over the threshold'):
    run(lambda p: (p | beam.Create([df]) | RunInferenceColumnar(
        SklearnModelHandlerNumpy(path), FEATURES).with_exception_handling(
            threshold=0.5))[0])


# -- errors ------------------------------------------------------------------------
def test_missing_columns_name_the_missing_and_the_available(reg):
  _, path = reg
  chunk = record_batch().drop_columns(['x2'])
  with pytest.raises(Exception) as info:
    run(lambda p: p | beam.Create([chunk]) | RunInferenceColumnar(
        SklearnModelHandlerNumpy(path), ['x1', 'x2', 'x3', 'x4']))
  assert "no column(s) ['x2', 'x4']" in str(info.value)
  assert "its columns are ['id', 'x1', 'x3']" in str(info.value)


def test_missing_columns_with_exception_handling_dead_letter_the_chunk(reg):
  _, path = reg
  chunk = frame(0, 20).drop(columns=['x3'])
  scorer = RunInferenceColumnar(SklearnModelHandlerNumpy(path),
                                FEATURES).with_exception_handling()._scorer()
  scored, [(rec, (exc_type, _, _))] = scorer.score(chunk)
  assert scored is None and rec is chunk and exc_type is MissingColumnsError


def test_non_numeric_feature_column_is_a_clear_error(reg):
  _, path = reg
  chunk = pa.RecordBatch.from_arrays(
      [pa.array([1.0]), pa.array(['a']), pa.array([2.0])], names=FEATURES)
  with pytest.raises(TypeError, match="'x2'.*Arrow type string"):
    RunInferenceColumnar(SklearnModelHandlerNumpy(path),
                         FEATURES)._scorer().score(chunk)


def test_elements_that_are_not_chunks_are_a_clear_error(reg):
  _, path = reg
  with pytest.raises(TypeError, match='chunks of rows.*RunInference'):
    RunInferenceColumnar(SklearnModelHandlerNumpy(path),
                         FEATURES)._scorer().score(X[0])


def test_unsupported_handlers_say_what_to_use(reg):
  _, path = reg
  with pytest.raises(
      TypeError,
      match=r'cannot run MultiplierHandler.*Implement matrix_predictor\(\).*'
      'predict_fn='):
    RunInferenceColumnar(MultiplierHandler(), FEATURES)
  with pytest.raises(TypeError, match='cannot run a KeyedModelHandler.*by key'):
    RunInferenceColumnar(KeyedModelHandler(SklearnModelHandlerNumpy(path)),
                         FEATURES)
  with pytest.raises(TypeError, match='per-row preprocessing'):
    RunInferenceColumnar(
        SklearnModelHandlerNumpy(path).with_preprocess_fn(abs), FEATURES)
  with pytest.raises(TypeError, match=r"list of column names.*\['x1'\]"):
    RunInferenceColumnar(SklearnModelHandlerNumpy(path), 'x1')
  torch_inference = pytest.importorskip('runinference.pytorch_inference')
  keyed = torch_inference.PytorchModelHandlerKeyedTensor(
      torch_script_model_path='m.pt')
  with pytest.raises(TypeError, match='PytorchModelHandlerKeyedTensor'):
    RunInferenceColumnar(keyed, FEATURES)


class _CountingLinear(ModelHandler):
  """A handler of our own: loads a real sklearn model and counts loads."""
  loads = 0

  def __init__(self, path):
    super().__init__()
    self.path = path

  def load_model(self):
    type(self).loads += 1
    with open(self.path, 'rb') as f:
      return pickle.load(f)

  def run_inference(self, batch, model, inference_args=None):
    raise AssertionError('the columnar path calls predict_fn instead')


def test_any_handler_with_predict_fn_and_one_load_per_process(reg):
  model, path = reg
  _CountingLinear.loads = 0
  chunks = [record_batch(i, i + 30) for i in range(0, 300, 30)]
  out, result = run(lambda p: p | beam.Create(chunks) | RunInferenceColumnar(
      _CountingLinear(path), FEATURES,
      predict_fn=lambda m, x, args: m.predict(x) * args['scale'],
      inference_args={'scale': 2.0}))
  np.testing.assert_allclose(to_pandas(out)['prediction'], 2 * model.predict(X))
  assert _CountingLinear.loads == 1
  assert counter(result, 'RunInference', 'num_inferences') == 300


def test_one_model_per_process_shared_by_dofn_instances(reg):
  from apache_beam.internal import pickler
  _, path = reg
  _CountingLinear.loads = 0
  scorer = RunInferenceColumnar(_CountingLinear(path), FEATURES,
                                predict_fn=lambda m, x, a: m.predict(x))._scorer()
  blob = pickler.dumps(scorer)
  copies = [pickler.loads(blob) for _ in range(3)]  # as workers unpickle DoFns
  for c in copies:
    c.setup()
    assert c.score(record_batch(0, 10))[0].num_rows == 10
  assert _CountingLinear.loads == 1


def _times_three(model, matrix, inference_args):
  return 3 * model.predict(matrix)


class _OwnHookHandler(_CountingLinear):
  """A user's handler offering the columnar hook (and per-element use)."""
  def run_inference(self, batch, model, inference_args=None):
    from runinference.base import PredictionResult
    return [PredictionResult(x, y, self.path)
            for x, y in zip(batch, 3 * model.predict(np.stack(batch)))]

  def matrix_predictor(self):
    return MatrixPredictor(_times_three)


def test_a_users_handler_gets_the_columnar_path_through_its_hook(reg):
  model, path = reg
  handler = _OwnHookHandler(path).with_no_batching()  # wrappers forward it
  chunks = [record_batch(i, i + 100) for i in range(0, 300, 100)]
  out, _ = run(lambda p: p | beam.Create(chunks) | RunInferenceColumnar(
      handler, FEATURES))
  got = to_pandas(out)['prediction'].to_numpy()
  row_by_row = [r.inference for r in _OwnHookHandler(path).run_inference(
      list(X), model)]
  np.testing.assert_allclose(got, row_by_row)
  np.testing.assert_allclose(got, 3 * model.predict(X))


class _WrongHook(_CountingLinear):
  def matrix_predictor(self):
    return _times_three


def test_a_hook_returning_something_else_is_a_clear_error(reg):
  with pytest.raises(TypeError, match=r'_WrongHook.matrix_predictor\(\) must '
                     'return a MatrixPredictor or None, got function'):
    RunInferenceColumnar(_WrongHook(reg[1]), FEATURES)
  with pytest.raises(ValueError, match="takes must be 'numpy' or 'pandas'"):
    MatrixPredictor(_times_three, takes='arrow')


def test_a_custom_sklearn_inference_fn_gets_the_matrix(reg):
  model, path = reg

  def times_ten(m, batch, args):
    return m.predict(np.stack(batch)) * 10  # written for a list of rows

  scored, _ = RunInferenceColumnar(
      SklearnModelHandlerNumpy(path, inference_fn=times_ten),
      FEATURES)._scorer().score(frame())
  np.testing.assert_allclose(scored['prediction'], 10 * model.predict(X))


def test_a_custom_torch_inference_fn_asks_for_predict_fn():
  pytest.importorskip('torch')
  from runinference.pytorch_inference import (PytorchModelHandlerTensor,
                                              make_tensor_model_fn)
  handler = PytorchModelHandlerTensor(
      torch_script_model_path='m.pt', inference_fn=make_tensor_model_fn('score'))
  with pytest.raises(TypeError, match='predict_fn'):
    RunInferenceColumnar(handler, FEATURES)


def test_import_needs_neither_arrow_nor_pandas_nor_beam_ml():
  # Beam itself imports both when they are installed: block them instead.
  code = ('import sys\n'
          'sys.modules["pyarrow"] = sys.modules["pandas"] = None\n'
          'import runinference, runinference.columnar\n'
          'from runinference.columnar import RunInferenceColumnar\n'
          'print([m for m in sys.modules if m.startswith("apache_beam.ml")])')
  out = subprocess.run([sys.executable, '-c', code], capture_output=True,
                       text=True, check=True)
  assert out.stdout.strip().splitlines()[-1] == '[]'


def test_the_parquet_example_runs(tmp_path, capsys):
  import importlib.util
  from pathlib import Path
  spec = importlib.util.spec_from_file_location(
      'columnar_parquet',
      Path(__file__).resolve().parents[2] / 'examples' / 'columnar_parquet.py')
  example = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(example)
  assert example.main(['--rows', '20000', '--row-group', '5000',
                       '--out', str(tmp_path)]) == 0
  out = capsys.readouterr().out
  assert 'num_inferences: 20,000' in out
  # 4 row groups: at most one call each (rows_per_call='auto' may merge)
  calls = int(re.search(r'model calls: (\d+)', out).group(1))
  assert 1 <= calls <= 4


@pytest.mark.parametrize('overlap', [True, False])
def test_overlap_on_and_off_score_every_chunk_in_its_window(reg, overlap):
  model, path = reg

  def build(p):
    return (p | beam.Create([(record_batch(i, i + 10), i) for i in
                             range(0, 300, 10)])
            | beam.Map(lambda kv: window.TimestampedValue(*kv))
            | beam.WindowInto(window.FixedWindows(60))
            | RunInferenceColumnar(SklearnModelHandlerNumpy(path), FEATURES,
                                   overlap=overlap)
            | beam.Map(lambda c, ts=beam.DoFn.TimestampParam,
                       w=beam.DoFn.WindowParam: (
                           c, int(ts), int(w.start))))

  out, result = run(build)
  assert sorted((c.column('id')[0].as_py(), ts, start)
                for c, ts, start in out) == [
                    (i, i, i // 60 * 60) for i in range(0, 300, 10)]
  got = to_pandas([c for c, _, _ in out])
  np.testing.assert_allclose(got['prediction'], model.predict(X))
  assert counter(result, 'BeamML_Sklearn', 'num_inferences') == 300


def test_overlap_must_be_a_bool(reg):
  with pytest.raises(TypeError, match='overlap must be'):
    RunInferenceColumnar(SklearnModelHandlerNumpy(reg[1]), FEATURES,
                         overlap='yes')
