"""MLTransform on columnar chunks: Parquet -> MLTransform -> RunInferenceColumnar
with no dict per row; output chunks keep their type."""
import pickle

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.linear_model import LinearRegression

from runinference.columnar import RunInferenceColumnar
from runinference.sklearn_inference import SklearnModelHandlerNumpy
from runinference.transforms import tft
from runinference.transforms.base import MLTransform

from .mltransform_helpers import collect


def _table(n=3000, seed=0):
  rng = np.random.RandomState(seed)
  return pa.table({
      'x1': rng.normal(5, 2, n),
      'x2': rng.exponential(3, n).astype(np.float32),
      'word': rng.choice(['a', 'b', 'c'], n),
  })


def test_parquet_to_mltransform_to_runinference_columnar(tmp_path):
  table = _table()
  path = str(tmp_path / 'rows.parquet')
  pq.write_table(table, path, row_group_size=500)
  x1, x2 = table['x1'].to_numpy(), table['x2'].to_numpy().astype(np.float64)
  z1 = ((x1.astype(np.float32) - x1.astype(np.float32).astype(np.float64).mean())
        / x1.astype(np.float32).astype(np.float64).std())
  s2 = (x2 - x2.min()) / (x2.max() - x2.min())
  model = LinearRegression().fit(np.c_[z1, s2], 3 * z1 - 2 * s2 + 1)
  model_path = tmp_path / 'model.pkl'
  model_path.write_bytes(pickle.dumps(model))

  with beam.Pipeline() as p:
    chunks = (p
              | beam.io.ReadFromParquetBatched(path)
              | MLTransform(write_artifact_location=str(tmp_path / 'art'), transforms=[
                  tft.ScaleToZScore(columns=['x1']),
                  tft.ScaleTo01(columns=['x2']),
                  tft.ComputeAndApplyVocabulary(columns=['word'])]))
    types = collect(chunks | beam.Map(
        lambda c: (type(c).__name__, str(c.schema.field('x1').type),
                   str(c.schema.field('word').type))), 'Types')
    scored = chunks | RunInferenceColumnar(
        SklearnModelHandlerNumpy(str(model_path)), feature_columns=['x1', 'x2'])
    out = collect(scored | beam.Map(lambda b: b.to_pydict()), 'Out')
  # ReadFromParquetBatched's chunks keep their type; TFT's dtypes.
  assert set(types()) == {('Table', 'float', 'int64')}
  rows = {k: np.concatenate([np.asarray(d[k]) for d in out()]) for k in out()[0]}
  assert len(rows['x1']) == len(table)
  order = np.argsort(rows['x2'])  # chunks may come back in any order
  np.testing.assert_allclose(rows['x2'][order], np.sort(s2), rtol=1e-5, atol=1e-6)
  pred = [c for c in out()[0] if c not in ('x1', 'x2', 'word')][0]
  np.testing.assert_allclose(rows[pred], 3 * rows['x1'] - 2 * rows['x2'] + 1,
                             rtol=1e-4, atol=1e-4)
  assert set(rows['word'].tolist()) == {0, 1, 2}


@pytest.mark.parametrize('form', ['batch', 'table', 'pandas'])
def test_columnar_chunks_equal_dict_rows(tmp_path, form):
  table = _table(400, seed=1)
  if form == 'batch':
    chunks = table.to_batches(max_chunksize=100)
  elif form == 'table':
    chunks = [table.slice(i, 100) for i in range(0, 400, 100)]
  else:
    chunks = [table.slice(i, 100).to_pandas() for i in range(0, 400, 100)]
  rows = table.to_pylist()
  transforms = lambda: [tft.ScaleToZScore(columns=['x1']),  # noqa: E731
                        tft.Bucketize(columns=['x2'], num_buckets=4),
                        tft.ComputeAndApplyVocabulary(columns=['word'])]
  with beam.Pipeline() as p:
    got = collect(p | 'C' >> beam.Create(chunks, reshuffle=False)
                  | 'M' >> MLTransform(write_artifact_location=str(tmp_path / 'a'),
                                       transforms=transforms()), 'Chunks')
    want = collect(p | 'R' >> beam.Create(rows)
                   | 'N' >> MLTransform(write_artifact_location=str(tmp_path / 'b'),
                                        transforms=transforms()), 'Rows')
  out = got()
  expected_type = {'batch': pa.RecordBatch, 'table': pa.Table}.get(form)
  if expected_type is not None:
    assert all(isinstance(c, expected_type) for c in out)
    merged = pa.concat_tables([pa.Table.from_batches([c]) if isinstance(c, pa.RecordBatch)
                               else c for c in out]).to_pydict()
  else:
    import pandas as pd
    assert all(isinstance(c, pd.DataFrame) for c in out)
    merged = pd.concat(out).to_dict('list')
  assert len(merged['x1']) == len(rows) == len(want())
  # Same statistics, same values: compare column multisets.
  np.testing.assert_allclose(np.sort(np.asarray(merged['x1'], np.float32)),
                             np.sort([r['x1'][0] for r in want()]), rtol=1e-6)
  assert sorted(merged['x2']) == sorted(int(r['x2'][0]) for r in want())
  assert sorted(merged['word']) == sorted(int(r['word'][0]) for r in want())
