"""Regression tests for the MLTransform defects of issue 17, through real
Beam pipelines (DirectRunner). Each failed on the implementation before the
columnar engine (commit 78521d7): an inf made every z-score NaN and every
ScaleTo01 output 0.0 silently, elements that are not dicts and ragged
elementwise rows crashed the pipeline even with exception handling, and
Arrow / pandas batches were not accepted as elements.
"""
from __future__ import annotations

import glob
import json
import math
import os

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from runinference.transforms import tft
from runinference.transforms.base import MLTransform

from .mltransform_helpers import run

NON_FINITE = {'inf': math.inf, '-inf': -math.inf, 'nan': math.nan}


def write(path, transforms, catch=True):
  t = MLTransform(write_artifact_location=str(path), transforms=transforms)
  return t.with_exception_handling() if catch else t


def read(path, catch=True):
  t = MLTransform(read_artifact_location=str(path))
  return t.with_exception_handling() if catch else t


def by_id(rows):
  out = {}
  for r in rows:
    assert r['id'] not in out, r['id']
    out[r['id']] = r
  return out


def same_element(a, b) -> bool:
  """Equal elements, NaN equal to NaN."""
  return repr(a) == repr(b)


def f32(values) -> np.ndarray:
  return np.asarray(values, dtype=np.float32).astype(np.float64)

# -- non-finite values ---------------------------------------------------------

STATS_COLUMNS = {  # column -> (transform, its name)
    'z': lambda: tft.ScaleToZScore(columns=['z']),
    'u': lambda: tft.ScaleTo01(columns=['u']),
    'm': lambda: tft.ScaleByMinMax(columns=['m'], min_value=-1, max_value=1),
    'b': lambda: tft.Bucketize(columns=['b'], num_buckets=3),
    'g': lambda: tft.ScaleToGaussian(columns=['g']),
}
BAD_ROW = {'z': 1, 'u': 3, 'm': 5, 'b': 7, 'g': 9}  # the row holding the value
BUCKETS = [0.0, 10.0]
KNOTS = [0.0, 5.0, 10.0]


def _stats_rows(bad):
  rng = np.random.RandomState(11)
  rows = []
  for i in range(14):
    row = {'id': i}
    for c in STATS_COLUMNS:
      row[c] = float(np.float32(rng.lognormal(1, 1)))
    row['ab'] = [bad, -1.0, 5.0, 20.0] if i % 2 == 0 else [3.0]
    row['ai'] = [bad, -1.0, 2.5, 7.5, 20.0] if i % 2 == 0 else [5.0]
    rows.append(row)
  for column, i in BAD_ROW.items():
    rows[i][column] = bad
  return rows


def _artifact_stats(loc, transform):
  """The statistics a transform wrote (from stats_stage0.json)."""
  [path] = glob.glob(os.path.join(str(loc), '*', 'stats_stage0.json'))
  with open(path) as f:
    payload = json.load(f)
  [entry] = [e for e in payload.values() if e['transform'] == transform]
  return entry['value']


def _bucket(v):
  if math.isnan(v) or v == math.inf:
    return len(BUCKETS)
  return sum(b <= v for b in BUCKETS)


def _interpolated(v):
  if math.isnan(v):
    return 0.5
  if v <= KNOTS[0]:
    return 0.0
  if v >= KNOTS[-1]:
    return 1.0
  i = max(j for j in range(len(KNOTS) - 1) if KNOTS[j] <= v)
  return (i + (v - KNOTS[i]) / (KNOTS[i + 1] - KNOTS[i])) / (len(KNOTS) - 1)


@pytest.mark.parametrize('bad', sorted(NON_FINITE))
def test_non_finite_value_is_a_dead_letter_for_every_statistics_transform(
    bad, tmp_path):
  """Before: one inf made every row's z-score NaN and every ScaleTo01
  output 0.0, silently. Now each row holding inf/-inf/NaN in a column whose
  statistics a transform computes is a dead letter naming the transform and
  the value; the statistics and outputs are those of the other rows. The
  fixed-boundary transforms keep TFT's rules for the same values."""
  value = NON_FINITE[bad]
  rows = _stats_rows(value)
  transforms = [make() for make in STATS_COLUMNS.values()] + [
      tft.ApplyBuckets(columns=['ab'], bucket_boundaries=BUCKETS),
      tft.ApplyBucketsWithInterpolation(columns=['ai'], bucket_boundaries=KNOTS)]
  good, dead = run(rows, write(tmp_path, transforms), dead_letters=True)
  good = by_id(good)
  bad_ids = sorted(BAD_ROW.values())
  assert sorted(d['element']['id'] for d in dead) == bad_ids
  for d in dead:
    i = d['element']['id']
    [column] = [c for c, j in BAD_ROW.items() if j == i]
    assert same_element(d['element'], rows[i])
    assert d['transform_name'] == type(STATS_COLUMNS[column]()).__name__
    assert f"column '{column}'" in d['msg'] and 'non-finite' in d['msg']
    assert f'({bad})' in d['msg'], d['msg']
  ids = [i for i in range(len(rows)) if i not in bad_ids]
  assert sorted(good) == ids
  col = {c: f32([rows[i][c] for i in ids]) for c in STATS_COLUMNS}
  for i in ids:
    out = good[i]
    for c in STATS_COLUMNS:
      assert np.isfinite(out[c]).all(), (i, c, out[c])
    x = {c: f32(rows[i][c]) for c in STATS_COLUMNS}
    np.testing.assert_allclose(out['z'], (x['z'] - col['z'].mean()) / col['z'].std(),
                               rtol=1e-5, atol=1e-5)
    lo, hi = col['u'].min(), col['u'].max()
    np.testing.assert_allclose(out['u'], (x['u'] - lo) / (hi - lo), atol=1e-6)
    lo, hi = col['m'].min(), col['m'].max()
    np.testing.assert_allclose(out['m'], (x['m'] - lo) / (hi - lo) * 2 - 1,
                               atol=1e-5)
    s = np.sort(col['b'])
    bounds = [s[(j * len(s)) // 3] for j in (1, 2)]  # QuantileSketch's rule
    assert out['b'].tolist() == [sum(b <= x['b'] for b in bounds)]
    assert out['ab'].tolist() == [_bucket(v) for v in rows[i]['ab']]
    np.testing.assert_allclose(out['ai'], [_interpolated(v) for v in rows[i]['ai']],
                               atol=1e-6)
  gauss = _artifact_stats(tmp_path, 'ScaleToGaussian')
  assert gauss['count'] == len(ids)
  np.testing.assert_allclose(gauss['var'], col['g'].var(), rtol=1e-5)
  order = np.argsort(col['g'])
  outs = np.asarray([good[i]['g'][0] for i in ids])
  assert (np.diff(outs[order]) >= 0).all()  # a monotone map of the column


@pytest.mark.parametrize('column', sorted(STATS_COLUMNS))
@pytest.mark.parametrize('bad', sorted(NON_FINITE))
def test_non_finite_value_fails_the_pipeline_naming_the_column(bad, column,
                                                                tmp_path):
  """Without exception handling, the same row is an error naming the
  column and the value (before: NaN outputs, no error)."""
  rows = [{'id': i, column: float(i)} for i in range(5)]
  rows[2][column] = NON_FINITE[bad]
  with pytest.raises(Exception, match=rf"column '{column}'.*non-finite value \({bad}\)"):
    run(rows, write(tmp_path, [STATS_COLUMNS[column]()], catch=False))

# -- elements that are not dicts -----------------------------------------------

NOT_DICTS = [7, 'text', [1.0, 2.0], None]


def test_element_that_is_not_a_dict_is_a_dead_letter(tmp_path):
  """Before: any such element crashed the pipeline, exception handling or
  not. Now it is a dead letter (and, without exception handling, a clear
  error)."""
  rows = [{'id': i, 'x': float(i), 't': 'ab'[i % 2]} for i in range(4)]
  transforms = [tft.ScaleToZScore(columns=['x']),
                tft.ComputeAndApplyVocabulary(columns=['t'])]
  good, dead = run(rows[:2] + NOT_DICTS + rows[2:],
                   write(tmp_path / 'w', transforms), dead_letters=True)
  assert sorted(map(repr, (d['element'] for d in dead))) == sorted(map(repr, NOT_DICTS))
  for d in dead:
    assert d['transform_name'] == 'ScaleToZScore'
    assert 'needs dicts' in d['msg'], d['msg']
  good = by_id(good)
  assert sorted(good) == [0, 1, 2, 3]
  np.testing.assert_allclose([good[i]['x'][0] for i in range(4)],
                             (np.arange(4) - 1.5) / np.arange(4).std(), rtol=1e-6)
  assert [good[i]['t'].tolist() for i in range(4)] == [[1], [0], [1], [0]]
  # Read mode: the same.
  good, dead = run([5, rows[0]], read(tmp_path / 'w'), dead_letters=True)
  assert [d['element'] for d in dead] == [5]
  assert [r['id'] for r in good] == [0]
  with pytest.raises(Exception, match='needs dicts.*got int'):
    run(rows + [7], write(tmp_path / 'off', transforms, catch=False))

# -- ragged rows with elementwise=True -----------------------------------------

RAGGED = [{'id': 0, 'x': [1.0, 2.0]}, {'id': 1, 'x': [3.0, 5.0]},
          {'id': 2, 'x': [7.0]}, {'id': 3, 'x': [4.0, 9.0]}]
WIDE = np.asarray([[1.0, 2.0], [3.0, 5.0], [4.0, 9.0]])
ELEMENTWISE = {
    'ScaleToZScore': (lambda: tft.ScaleToZScore(columns=['x'], elementwise=True),
                      lambda x: (x - WIDE.mean(0)) / WIDE.std(0)),
    'ScaleTo01': (lambda: tft.ScaleTo01(columns=['x'], elementwise=True),
                  lambda x: (x - WIDE.min(0)) / (WIDE.max(0) - WIDE.min(0))),
}


@pytest.mark.parametrize('name', sorted(ELEMENTWISE))
def test_ragged_row_with_elementwise_is_a_dead_letter(name, tmp_path):
  """Before: a row of another length crashed the pipeline (exception
  handling or not). Now it is a dead letter in write mode, and in read mode
  a row whose length differs from the written statistics is too."""
  make, formula = ELEMENTWISE[name]
  good, dead = run(RAGGED, write(tmp_path / 'w', [make()]), dead_letters=True)
  assert [d['element']['id'] for d in dead] == [2]
  assert dead[0]['transform_name'] == name
  assert 'elementwise' in dead[0]['msg'] and "'x'" in dead[0]['msg']
  good = by_id(good)
  assert sorted(good) == [0, 1, 3]
  for i, row in zip((0, 1, 3), WIDE):
    np.testing.assert_allclose(good[i]['x'], formula(row), rtol=1e-6, atol=1e-6)
  # Read mode: statistics of length 2; a row of 3 values is refused.
  new = [{'id': 10, 'x': [2.0, 4.0]}, {'id': 11, 'x': [1.0, 2.0, 3.0]},
         {'id': 12, 'x': [3.0, 3.0]}]
  good, dead = run(new, read(tmp_path / 'w'), dead_letters=True)
  assert [d['element']['id'] for d in dead] == [11]
  assert 'elementwise' in dead[0]['msg']
  good = by_id(good)
  assert sorted(good) == [10, 12]
  np.testing.assert_allclose(good[10]['x'], formula(np.asarray([2.0, 4.0])),
                             rtol=1e-6, atol=1e-6)


def test_ragged_row_without_exception_handling_is_a_clear_error(tmp_path):
  with pytest.raises(Exception, match=r"elementwise=True\) on column 'x'"):
    run(RAGGED, write(tmp_path, [ELEMENTWISE['ScaleToZScore'][0]()], catch=False))


def test_read_mode_ragged_rows_in_the_majority(tmp_path):
  run(RAGGED, write(tmp_path, [ELEMENTWISE['ScaleToZScore'][0]()]),
      dead_letters=True)
  new = [{'id': 10, 'x': [5.0]}, {'id': 11, 'x': [6.0]},
         {'id': 12, 'x': [3.0, 3.0]}]
  good, dead = run(new, read(tmp_path), dead_letters=True)
  assert [r['id'] for r in good] == [12]
  assert sorted(d['element']['id'] for d in dead) == [10, 11]
  for d in dead:
    assert 'statistics have 2' in d['msg'], d['msg']

# -- every row exactly once ----------------------------------------------------


def _mixed(offset):
  rows = []
  for i in range(offset, offset + 40):
    row = {'id': i, 'x': float(i % 7), 't': ['a', 'b', 'c'][: i % 3 + 1],
           'y': [float(i % 5), 1.0], 'z': float(i) - 20}
    kind = i % 10
    if kind == 1:
      row['x'] = math.inf
    elif kind == 2:
      row['t'] = 5
    elif kind == 3:
      del row['y']
    elif kind == 4:
      row['z'] = 'text'
    elif kind == 5:
      row['x'] = None
    elif kind == 6:
      row['y'] = [float(i), 2.0, 3.0]  # ragged for elementwise
    elif kind == 7:
      row = i  # not a dict
    rows.append(row)
  return rows


def _once(rows, good, dead):
  ids = [r if isinstance(r, int) else r['id'] for r in rows]
  seen = [r['id'] for r in good] + [
      d['element'] if isinstance(d['element'], int) else d['element']['id']
      for d in dead]
  assert sorted(seen) == sorted(ids)
  return {r['id'] for r in good}


def test_every_row_exactly_once_in_write_and_read_mode(tmp_path):
  """Before: the bad rows here crashed the pipeline. Now each input row
  comes out once, as output or as dead letter, in write and read mode."""
  transforms = [
      tft.ScaleToZScore(columns=['x']),
      tft.ComputeAndApplyVocabulary(columns=['t']),
      tft.TFIDF(columns=['t']),  # a second stage
      tft.ScaleTo01(columns=['y'], elementwise=True),
      tft.Bucketize(columns=['x'], num_buckets=3),  # after ScaleToZScore(x)
      tft.ApplyBuckets(columns=['z'], bucket_boundaries=[0.0]),
  ]
  rows = _mixed(0)
  good, dead = run(rows, write(tmp_path, transforms), dead_letters=True)
  assert _once(rows, good, dead) == {i for i in range(40) if i % 10 not in range(1, 8)}
  rows = _mixed(100)
  good, dead = run(rows, read(tmp_path), dead_letters=True)
  assert _once(rows, good, dead) == {i for i in range(100, 140)
                                     if i % 10 not in range(1, 8)}

# -- columnar elements ---------------------------------------------------------

COLUMNAR = {
    'RecordBatch': (pa.RecordBatch.from_pylist, lambda b: b.to_pylist()),
    'Table': (pa.Table.from_pylist, lambda t: t.to_pylist()),
    'DataFrame': (pd.DataFrame, lambda df: df.to_dict('records')),
}


def _columnar_rows(offset):
  rng = np.random.RandomState(offset)
  words = ['red', 'green', 'blue', 'cyan']
  return [{'id': offset + i, 'num': float(rng.normal(3, 2)),
           'vec': [float(v) for v in rng.normal(0, 1, 3)],
           'text': ' '.join(rng.choice(words, rng.randint(1, 4)))}
          for i in range(7)]


def _columnar_transforms():
  return [tft.ScaleToZScore(columns=['num']), tft.ScaleTo01(columns=['vec']),
          tft.ComputeAndApplyVocabulary(columns=['text'],
                                        split_string_by_delimiter=' ')]


def _batches(rows, make):
  return [make(rows[:4]), make(rows[4:])]


def _unbatch(out, kind):
  cls = {'RecordBatch': pa.RecordBatch, 'Table': pa.Table,
         'DataFrame': pd.DataFrame}[kind]
  rows = []
  for element in out:
    assert type(element) is cls, type(element)
    rows.extend(COLUMNAR[kind][1](element))
  return by_id(rows)


def _same_as_dicts(columnar: dict, dicts: list):
  dicts = by_id(dicts)
  assert sorted(columnar) == sorted(dicts)
  for i, row in dicts.items():
    for c in ('num', 'vec', 'text'):
      got = np.asarray(columnar[i][c]).reshape(-1)
      want = np.asarray(row[c]).reshape(-1)
      if want.dtype.kind == 'f':
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
      else:
        assert got.tolist() == want.tolist(), (i, c)


@pytest.mark.parametrize('kind', sorted(COLUMNAR))
def test_columnar_elements_in_write_and_read_mode(kind, tmp_path):
  """Before: Arrow and pandas batches were not accepted. Now each comes
  out as the same type, its transformed columns (scalar numbers, lists,
  text split on a delimiter) equal to what the same data as dict rows gives."""
  make = COLUMNAR[kind][0]
  rows = _columnar_rows(0)
  out = run(_batches(rows, make), write(tmp_path / 'c', _columnar_transforms(),
                                        catch=False))
  dicts = run(rows, write(tmp_path / 'd', _columnar_transforms(), catch=False))
  _same_as_dicts(_unbatch(out, kind), dicts)
  new = _columnar_rows(100)
  out = run(_batches(new, make), read(tmp_path / 'c', catch=False))
  dicts = run(new, read(tmp_path / 'c', catch=False))
  _same_as_dicts(_unbatch(out, kind), dicts)
  assert len(out) == 2


@pytest.mark.parametrize('kind', ['RecordBatch', 'Table'])
def test_null_and_inf_cells_of_a_batch_are_dead_letters(kind, tmp_path):
  """A null cell (or inf, for a statistics transform) makes its row a dead
  letter, given as that row's dict; the output batch has the other rows."""
  values = [1.0, None, 2.0, math.inf, 4.0, 7.0]
  batch = COLUMNAR[kind][0]([{'id': i, 'num': v, 'tag': f't{i}'}
                              for i, v in enumerate(values)])
  good, dead = run([batch], write(tmp_path, [tft.ScaleToZScore(columns=['num'])]),
                   dead_letters=True)
  assert sorted((d['element']['id'], repr(d['element'])) for d in dead) == [
      (1, repr({'id': 1, 'num': None, 'tag': 't1'})),
      (3, repr({'id': 3, 'num': math.inf, 'tag': 't3'}))]
  assert all(d['transform_name'] == 'ScaleToZScore' for d in dead)
  [out] = good
  assert isinstance(out, pa.RecordBatch if kind == 'RecordBatch' else pa.Table)
  rows = out.to_pylist()
  assert [r['id'] for r in rows] == [0, 2, 4, 5]
  assert [r['tag'] for r in rows] == ['t0', 't2', 't4', 't5']
  x = np.asarray([1.0, 2.0, 4.0, 7.0])
  np.testing.assert_allclose(np.asarray([r['num'] for r in rows]).reshape(-1),
                             (x - x.mean()) / x.std(), rtol=1e-6)


def test_null_cell_keeps_the_output_schema_of_a_batch(tmp_path):
  clean = pa.RecordBatch.from_pylist([{'id': 0, 'num': 1.0}, {'id': 1, 'num': 3.0}])
  nulls = pa.RecordBatch.from_pylist([{'id': 2, 'num': None}, {'id': 3, 'num': 5.0}])
  good, _ = run([clean, nulls], write(tmp_path, [tft.ScaleToZScore(columns=['num'])]),
                dead_letters=True)
  types = {tuple(b.column('id').to_pylist()): b.schema.field('num').type
           for b in good}
  assert types == {(0, 1): pa.float32(), (3, ): pa.float32()}
