"""MLTransform's columnar engine without a pipeline (hypothesis).

``drive`` runs rows through the engine's own DoFns and combiner as
``TFTProcessHandler.expand`` wires them, in plain Python: ``ToBlocks``
(blocks of ``block_rows`` rows, the first stage's columns and the later
stages' raw columns read), per stage ``StageStatsFn`` (blocks, pickled as a
runner would, added to several accumulators, which are pickled and merged in
a random order and tree shape), ``_artifacts.write_stage`` (the side input
the pipeline hands ``ApplyStage``) and ``ApplyStage.process``; read mode
builds ``ApplyStage`` over the written artifacts, as ``setup`` does.

Properties, for every ``tft`` transform, over rows that mix good rows with
bad ones (inf/NaN, text in numeric columns, numbers in text columns, None,
missing columns, elements that are not dicts): every row comes out exactly
once (output or dead letter, with its own timestamp); statistics equal
numpy's over exactly the good rows; outputs equal a per-row recomputation;
none of it depends on block size or merge order; read mode gives write
mode's outputs.
"""
from __future__ import annotations

import collections
import math
import os
import pickle
import random
import re
import tempfile
from dataclasses import dataclass

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pytest
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.timestamp import Timestamp
from apache_beam.utils.windowed_value import WindowedBatch, WindowedValue
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from runinference.transforms import _artifacts, tft
from runinference.transforms._emit import RowOutput
from runinference.transforms._engine import (BAD, ApplyStage, ToBlocks,
                                             ToBlocksPerRow)
from runinference.transforms._hashing import fingerprint64, hash_buckets
from runinference.transforms._stats import StageStatsFn
from runinference.transforms._plan import (later_raw_reads, plan_stages,
                                          stage_analyzers)

_EXPLORE = int(os.environ.get('RUNINFERENCE_FUZZ_EXAMPLES', '0'))
PROPS = settings(
    max_examples=_EXPLORE or 30,
    derandomize=not _EXPLORE,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
# (rows per block, seed of the accumulators' split and merge order; odd: the
# per-row ToBlocks)
RUNS = ((1, 0), (3, 1), (7, 2), (3, 3))
_WINDOWS = (GlobalWindow(), )


def feed(to_blocks: ToBlocks, wvs: list) -> list:
  """``to_blocks``' outputs for ``wvs``, batched as Beam's runners batch a
  batched DoFn's input: up to 4,096 values at a time, grouped by timestamp
  and windows (one call per window); one call per value for
  ``ToBlocksPerRow``."""
  out = []
  if isinstance(to_blocks, ToBlocksPerRow):
    for wv in wvs:
      for window in wv.windows:
        out.extend(to_blocks.process(wv.value, wv.timestamp, window))
    return out
  for start in range(0, len(wvs), 4096):
    for batch in WindowedBatch.from_windowed_values(wvs[start:start + 4096],
                                                    produce_fn=list):
      for window in batch.windows:
        out.extend(to_blocks.process_batch(batch.values, batch.timestamp, window))
  return out

# -- the driver ----------------------------------------------------------------


@dataclass
class Result:
  good: dict  # id -> output row (dict of the beam.Row)
  bad: dict  # id -> dead letter (beam.Row)
  stats: list  # per stage: StageStatsFn.extract_output, or None


def ident(element):
  """The id of an input element (see ``_not_a_dict``)."""
  if isinstance(element, dict):
    return element['id']
  if isinstance(element, beam.Row):
    return element.id
  if isinstance(element, int):
    return element - 1000
  if isinstance(element, str):
    return int(element[3:])
  return element[1]


def _not_a_dict(i: int, kind: int):
  return (1000 + i, f'row{i}', ['row', i])[kind]


def _outputs(out: list) -> tuple[list, list]:
  main, bad = [], []
  for o in out:
    if isinstance(o, beam.pvalue.TaggedOutput):
      assert o.tag == BAD
      bad.append(o.value)
    else:
      main.append(o)
  return main, bad


def _merge(fn: StageStatsFn, accs: list, rng: random.Random) -> dict:
  """Accumulators pickled, merged in a random order and tree shape."""
  accs = [pickle.loads(pickle.dumps(a)) for a in accs]
  rng.shuffle(accs)
  while len(accs) > 1:
    i = rng.randrange(len(accs) - 1)
    accs[i:i + 2] = [fn.merge_accumulators([accs[i], accs[i + 1]])]
  return fn.extract_output(accs[0])


def _combine(fn: StageStatsFn, blocks: list, rng: random.Random,
             empty: bool = True) -> dict:
  """Blocks (pickled) added to a few accumulators, then ``_merge``;
  ``empty``: accumulators that got no block are merged too (as runners do)."""
  accs = [fn.create_accumulator() for _ in range(rng.randint(1, 4))]
  used = set()
  for block in blocks:
    j = rng.randrange(len(accs))
    used.add(j)
    fn.add_input(accs[j], pickle.loads(pickle.dumps(block)))
  if not empty:
    accs = [a for j, a in enumerate(accs) if j in used] or accs[:1]
  return _merge(fn, accs, rng)


def drive(rows: list, transforms: list, artifacts: str, *, block_rows: int = 4096,
          seed: int = 0, read: bool = False, catch=Exception,
          empty: bool = True) -> Result:
  """Runs ``rows`` (row i at timestamp i) through the engine; write mode
  writes the statistics to ``artifacts``, read mode reads them there."""
  stages = plan_stages(transforms)
  later, written = later_raw_reads(stages)
  if read or not any(stage_analyzers(s) for s in stages):
    written = frozenset()  # as TFTProcessHandler.expand: rows kept whole
  # Odd seeds: the per-row DoFn (runners that call process per element).
  to_blocks = (ToBlocksPerRow if seed % 2 else ToBlocks)(
      stages[0], catch, later, written, block_rows)
  to_blocks.setup()
  to_blocks.start_bundle()
  out = feed(to_blocks, [WindowedValue(row, Timestamp(i), _WINDOWS)
                          for i, row in enumerate(rows)])
  out.extend(to_blocks.finish_bundle())
  to_blocks.teardown()
  blocks, bad = _outputs(out)
  blocks = [wv.value for wv in blocks]
  rng = random.Random(seed)
  all_stats = []
  for k, stage in enumerate(stages):
    final = k == len(stages) - 1
    analyzers = stage_analyzers(stage)
    side = None
    if analyzers and not read:
      raw = _combine(StageStatsFn(analyzers), blocks, rng, empty)
      side = _artifacts.write_stage(artifacts, k, analyzers, raw)
      all_stats.append(raw)
    else:
      all_stats.append(None)
    apply = ApplyStage(stage, None if final else stages[k + 1],
                       RowOutput(None) if final else None, catch,
                       artifacts if read else None, k)
    apply.setup()
    out = []
    for block in blocks:
      out.extend(apply.process(block, side) if side is not None else
                 apply.process(block))
    blocks, more = _outputs(out)
    bad.extend(more)
    if not final:
      blocks = [pickle.loads(pickle.dumps(wv.value)) for wv in blocks]
  good = {}
  for wv in blocks:
    if isinstance(wv.value, (pa.RecordBatch, pa.Table)):
      for r in wv.value.to_pylist():
        good.setdefault(r['id'], []).append((r, None))
    else:
      r = wv.value.as_dict()
      good.setdefault(r['id'], []).append((r, wv.timestamp))
  dead = {}
  for wv in bad:
    dead.setdefault(ident(wv.value.element), []).append((wv.value, wv.timestamp))
  _check_once(rows, good, dead)
  return Result({i: v[0][0] for i, v in good.items()},
                {i: v[0][0] for i, v in dead.items()}, all_stats)


def _check_once(rows, good, dead):
  """Every row exactly once, as output or dead letter, at its timestamp."""
  ids = [ident(r) for r in rows]
  seen = sorted(list(good) + list(dead))
  assert seen == sorted(ids), (sorted(good), sorted(dead))
  for i, outs in list(good.items()) + list(dead.items()):
    assert len(outs) == 1, (i, outs)
    stamp = outs[0][1]
    assert stamp is None or stamp == Timestamp(ids.index(i)), (i, stamp)
  for i, [(row, _)] in dead.items():
    assert row.msg.split(':')[0] in ('ColumnTypeError', 'MissingColumnError'), row.msg
    assert row.transform_name and row.stack
    original = rows[ids.index(i)]
    if not isinstance(original, beam.Row):  # the element as it came in
      assert repr(row.element) == repr(original)


def drive_all(rows, transforms, *, read_block_rows=2, empty=True) -> list:
  """Write mode for each of ``RUNS``, then read mode over the first run's
  artifacts; returns the results (read last)."""
  results = []
  with tempfile.TemporaryDirectory() as tmp:
    for n, (block_rows, seed) in enumerate(RUNS):
      where = os.path.join(tmp, str(n))
      os.makedirs(where)
      results.append(drive(rows, transforms, where, block_rows=block_rows,
                           seed=seed, empty=empty))
    results.append(drive(rows, transforms, os.path.join(tmp, '0'),
                         block_rows=read_block_rows, read=True))
  return results


def assert_same_outputs(a: Result, b: Result, rtol=2e-6, atol=1e-6):
  assert sorted(a.good) == sorted(b.good)
  assert sorted(a.bad) == sorted(b.bad)
  for i, row in a.good.items():
    other = b.good[i]
    assert row.keys() == other.keys()
    for k, v in row.items():
      assert_cell(other[k], v, rtol, atol, f'row {i} column {k}')


def assert_cell(actual, expected, rtol=2e-6, atol=1e-6, what=''):
  actual, expected = np.asarray(actual), np.asarray(expected)
  if expected.dtype.kind == 'f' or actual.dtype.kind == 'f':
    np.testing.assert_allclose(actual.astype(np.float64),
                               expected.astype(np.float64), rtol=rtol,
                               atol=atol, err_msg=what)
  else:
    assert actual.tolist() == expected.tolist(), what


# -- rows ----------------------------------------------------------------------

MISSING = object()
# Exact in float32, so that numpy over the float32 input is the reference.
NUMBER = st.one_of(st.integers(-400, 400).map(lambda v: v / 4),
                   st.integers(-100, 100))
NON_FINITE = st.sampled_from([math.inf, -math.inf, math.nan])
WORDS = st.sampled_from(['a', 'b', 'c', 'dd', 'é', 'Zz'])


@st.composite
def table(draw, good, bad, *, n=(0, 12)):
  """(rows, good ids): each row has an 'id' and a 'keep' column no
  transform touches, and column(s) drawn from ``good`` (``{column:
  strategy}``) or, for bad rows, one column from ``bad`` (``MISSING``: the
  column left out); some bad rows are not dicts, some good rows are
  ``beam.Row``."""
  size = draw(st.integers(*n))
  rows, good_ids = [], []
  for i in range(size):
    kind = draw(st.sampled_from(['good'] * 5 + ['row', 'bad', 'bad', 'nodict']))
    if kind == 'nodict':
      rows.append(_not_a_dict(i, draw(st.integers(0, 2))))
      continue
    row = {'id': i, 'keep': f'k{i}'}
    for column, strategy in good.items():
      row[column] = draw(strategy)
    if kind == 'bad':
      column = draw(st.sampled_from(sorted(bad)))
      cell = draw(bad[column])
      if cell is MISSING:
        del row[column]
      else:
        row[column] = cell
    else:
      good_ids.append(i)
    rows.append(beam.Row(**row) if kind == 'row' else row)
  return rows, good_ids


def _cell(rows, i, column):
  r = rows[i]
  return r[column] if isinstance(r, dict) else getattr(r, column)


def _flat(cell) -> np.ndarray:
  """A numeric cell as the engine reads it (float32), as float64."""
  return np.asarray(cell, dtype=np.float32).reshape(-1).astype(np.float64)


def _tokens(cell, delimiter=None) -> list:
  items = cell if isinstance(cell, (list, tuple, np.ndarray)) else [cell]
  out = [t if isinstance(t, bytes) else str(t).encode() for t in items]
  if delimiter:
    pattern = b'[' + re.escape(delimiter.encode()) + b']'
    out = [p for t in out for p in re.split(pattern, t) if p]
  return out


def _check_passthrough(result):
  for i, row in result.good.items():
    assert row['keep'] == f'k{i}'
    assert row['id'] == i


def numeric_bad():
  return st.one_of(
      NON_FINITE,
      st.lists(st.one_of(NUMBER, NON_FINITE), min_size=1, max_size=3).filter(
          lambda v: not np.isfinite(v).all()),
      st.sampled_from(['1.5', 'abc', None, MISSING, b'7']),
      st.lists(st.one_of(NUMBER, st.just('x')), min_size=1, max_size=3).filter(
          lambda v: 'x' in v),
      st.just({'a': 1.0}))


NUMERIC_GOOD = st.one_of(
    NUMBER,
    st.lists(NUMBER, max_size=3),
    st.lists(NUMBER, min_size=1, max_size=3).map(
        lambda v: np.asarray(v, dtype=np.float64)))

# -- statistics transforms over whole columns -----------------------------------


def _moments(vals: np.ndarray) -> dict:
  if not len(vals):
    return {'count': 0, 'mean': 0.0, 'var': 0.0, 'min': 0.0, 'max': 0.0}
  return {'count': len(vals), 'mean': vals.mean(axis=0), 'var': vals.var(axis=0),
          'min': vals.min(axis=0), 'max': vals.max(axis=0)}


def _check_moments(stats: dict, vals: np.ndarray, atol=None):
  want = _moments(vals)
  assert np.asarray(stats['count']).tolist() == np.broadcast_to(
      want['count'], np.shape(stats['count'])).tolist()
  scale = float(np.abs(vals).max()) if vals.size else 0.0
  for k in ('mean', 'var', 'min', 'max'):
    np.testing.assert_allclose(np.asarray(stats[k], dtype=np.float64), want[k],
                               rtol=1e-6, atol=atol or 1e-9 * (1 + scale)**2,
                               err_msg=k)


def _z(x, vals):
  mean, var = vals.mean(axis=0), vals.var(axis=0)
  std = np.sqrt(var)
  return np.where(var > 0, (x - mean) / np.where(var > 0, std, 1), x - mean), std


def _unit(x, vals):
  lo, hi = vals.min(axis=0), vals.max(axis=0)
  return np.where(lo < hi, (x - lo) / np.where(lo < hi, hi - lo, 1),
                  1 / (1 + np.exp(-x))), None


def _by_min_max(a, b):
  def f(x, vals):
    unit, _ = _unit(x, vals)
    return unit * (b - a) + a, None
  return f


def _tolerance(vals, std):
  """Float32 error of (x - centre) / spread for inputs up to max |x|."""
  big = float(np.abs(vals).max()) + 1 if vals.size else 1.0
  spread = np.maximum(std, 1e-30) if std is not None else 1.0
  return 3e-7 * big / spread + 1e-6


MOMENT_OPS = {
    'zscore': (lambda: tft.ScaleToZScore(columns=['x']), _z),
    'unit': (lambda: tft.ScaleTo01(columns=['x']), _unit),
    'minmax': (lambda: tft.ScaleByMinMax(columns=['x'], min_value=-2,
                                         max_value=3), _by_min_max(-2, 3)),
}


def _good_values(rows, good_ids):
  """Column x of the good rows, flattened (what statistics must equal)."""
  return (np.concatenate([_flat(_cell(rows, i, 'x')) for i in good_ids])
          if good_ids else np.zeros(0))


@pytest.mark.parametrize('name', sorted(MOMENT_OPS))
@PROPS
@given(data=table({'x': NUMERIC_GOOD}, {'x': numeric_bad()}))
def test_moments_transforms(name, data):
  rows, good_ids = data
  make, formula = MOMENT_OPS[name]
  results = drive_all(rows, [make()])
  vals = _good_values(rows, good_ids)
  for res in results:
    assert sorted(res.good) == good_ids
    _check_passthrough(res)
  for res in results[:-1]:
    _check_moments(res.stats[0]['t0_c0_moments'], vals)
  for res in results:
    for i in good_ids:
      x = _flat(_cell(rows, i, 'x'))
      got = res.good[i]['x']
      assert got.dtype == np.float32
      if not x.size:
        assert not got.size
        continue
      want, std = formula(x, vals)
      assert_cell(got, want, rtol=2e-6, atol=_tolerance(vals, std))
  for res in results[1:]:
    assert_same_outputs(results[0], res)


def _bucketize_bounds(vals: np.ndarray, k: int) -> list:
  """QuantileSketch's documented rule, exact for small n: boundary i is the
  smallest value whose rank (1-based) exceeds i * n / k."""
  if not len(vals):
    return []
  s = np.sort(vals)
  return [float(s[min((i * len(s)) // k, len(s) - 1)]) for i in range(1, k)]


@PROPS
@given(data=table({'x': NUMERIC_GOOD}, {'x': numeric_bad()}),
       k=st.integers(1, 5))
def test_bucketize(data, k):
  rows, good_ids = data
  results = drive_all(rows, [tft.Bucketize(columns=['x'], num_buckets=k)])
  vals = _good_values(rows, good_ids)
  bounds = _bucketize_bounds(vals, k)
  for res in results[:-1]:
    assert res.stats[0]['t0_c0_quantiles'] == bounds
  for res in results:
    assert sorted(res.good) == good_ids
    _check_passthrough(res)
    for i in good_ids:
      want = [sum(b <= v for b in bounds) for v in _flat(_cell(rows, i, 'x'))]
      assert res.good[i]['x'].tolist() == want
      assert res.good[i]['x'].dtype == np.int64


def _check_tukey_mapping(out, x, stats):
  """The output z of ScaleToGaussian inverts the Tukey HH map: with s the
  input scaled by the statistics, z * exp(h * z**2 / 2) == s, h = hl for
  z < 0 and hr otherwise (TFT's ``_scale_to_gaussian_internal``)."""
  loc, scale, hl, hr, var = (np.asarray(stats[k], dtype=np.float64)
                             for k in ('location', 'scale', 'hl', 'hr', 'var'))
  den = np.where((hl > 0) | (hr > 0), scale, np.sqrt(var))
  s = np.where(den != 0, (x - loc) / np.where(den != 0, den, 1), x - loc)
  z = np.asarray(out, dtype=np.float64)
  h = np.where(z < 0, hl, hr)
  np.testing.assert_allclose(z * np.exp(h * z * z / 2), s, rtol=2e-5,
                             atol=2e-6 * (1 + np.abs(s).max(initial=0)))


@PROPS
@given(data=table({'x': NUMERIC_GOOD}, {'x': numeric_bad()}, n=(0, 20)))
def test_scale_to_gaussian(data):
  """Its Tukey parameters depend on how rows fall into batches (as TFT's
  do), so across block sizes only the rows, count and variance must agree;
  read mode must give write mode's outputs."""
  rows, good_ids = data
  results = drive_all(rows, [tft.ScaleToGaussian(columns=['x'])], read_block_rows=1)
  vals = _good_values(rows, good_ids)
  for res in results:
    assert sorted(res.good) == good_ids
    _check_passthrough(res)
  for res in results[:-1]:
    stats = res.stats[0]['t0_c0_tukey']
    assert stats['count'] == len(vals)
    np.testing.assert_allclose(stats['var'], vals.var() if vals.size else 0.0,
                               rtol=1e-5, atol=1e-6)
    for i in good_ids:
      _check_tukey_mapping(res.good[i]['x'], _flat(_cell(rows, i, 'x')), stats)
  assert_same_outputs(results[0], results[-1])


def test_scale_to_gaussian_merge_order_is_irrelevant():
  """The same blocks and accumulators, merged in several random orders and
  tree shapes: the same parameters."""
  rng = np.random.RandomState(3)
  rows = [{'id': i, 'x': float(v)} for i, v in enumerate(rng.lognormal(0, 1.5, 200))]
  stages = plan_stages([tft.ScaleToGaussian(columns=['x'])])
  to_blocks = ToBlocks(stages[0], None, block_rows=10)
  to_blocks.setup()
  to_blocks.start_bundle()
  blocks = feed(to_blocks, [WindowedValue(row, Timestamp(i), _WINDOWS)
                             for i, row in enumerate(rows)])
  blocks = [wv.value for wv in blocks + list(to_blocks.finish_bundle())]
  assert len(blocks) == 20
  fn = StageStatsFn(stage_analyzers(stages[0]))
  accs = [fn.create_accumulator() for _ in range(4)]
  for j, block in enumerate(blocks):
    fn.add_input(accs[j % 4], block)
  got = [_merge(fn, accs, random.Random(seed))['t0_c0_tukey'] for seed in range(5)]
  assert got[0]['hr'] > 0  # long-tailed: the Tukey parameters are in play
  for other in got[1:]:
    for k in ('location', 'scale', 'hl', 'hr', 'var'):
      assert other[k] == pytest.approx(got[0][k], rel=1e-5, abs=1e-7), k


# -- elementwise ---------------------------------------------------------------


@st.composite
def elementwise_table(draw, ragged=False):
  width = draw(st.integers(1, 3))
  vector = st.lists(NUMBER, min_size=width, max_size=width)
  good = st.one_of(vector, vector.map(lambda v: np.asarray(v, np.float32)))
  bad = {'x': st.one_of(
      vector.flatmap(lambda v: st.integers(0, width - 1).flatmap(
          lambda j: NON_FINITE.map(lambda f: v[:j] + [f] + v[j + 1:]))),
      st.sampled_from([None, MISSING, 'abc']),
      vector.map(lambda v: v[:-1] + ['x']))}
  if ragged:
    bad['x'] = st.lists(NUMBER, min_size=0, max_size=4).filter(
        lambda v: len(v) != width)
  rows, good_ids = draw(table({'x': good}, bad, n=(1, 12)))
  return rows, good_ids, width


ELEMENTWISE_OPS = {
    'zscore': (lambda: tft.ScaleToZScore(columns=['x'], elementwise=True), _z),
    'unit': (lambda: tft.ScaleTo01(columns=['x'], elementwise=True), _unit),
}


@pytest.mark.parametrize('name', sorted(ELEMENTWISE_OPS))
@PROPS
@given(data=elementwise_table())
def test_elementwise_moments(name, data):
  rows, good_ids, width = data
  make, formula = ELEMENTWISE_OPS[name]
  results = drive_all(rows, [make()])
  vals = (np.stack([_flat(_cell(rows, i, 'x')) for i in good_ids])
          if good_ids else np.zeros((0, width)))
  for res in results[:-1]:
    stats = res.stats[0]['t0_c0_moments']
    if good_ids:
      _check_moments(stats, vals)
    else:
      assert stats['count'] == 0
  for res in results:
    assert sorted(res.good) == good_ids
    for i in good_ids:
      want, std = formula(_flat(_cell(rows, i, 'x')), vals)
      assert_cell(res.good[i]['x'], want, atol=np.max(_tolerance(vals, std)))
  for res in results[1:]:
    assert_same_outputs(results[0], res)


@PROPS
@given(data=elementwise_table())
def test_elementwise_scale_to_gaussian(data):
  rows, good_ids, width = data
  # No empty accumulators: see test_elementwise_tukey_merges_an_empty_accumulator.
  results = drive_all(rows, [tft.ScaleToGaussian(columns=['x'], elementwise=True)],
                      empty=False)
  for res in results:
    assert sorted(res.good) == good_ids
  for res in results[:-1]:
    stats = res.stats[0]['t0_c0_tukey']
    if good_ids:
      vals = np.stack([_flat(_cell(rows, i, 'x')) for i in good_ids])
      assert stats['count'] == [float(len(good_ids))] * width
      np.testing.assert_allclose(stats['var'], vals.var(axis=0), rtol=1e-5,
                                 atol=1e-6)
      for i in good_ids:
        _check_tukey_mapping(res.good[i]['x'], _flat(_cell(rows, i, 'x')), stats)
  assert_same_outputs(results[0], results[-1])


@pytest.mark.parametrize('width', [1, 2])
def test_elementwise_tukey_merges_an_empty_accumulator(width):
  """A CombineFn must merge accumulators that got no input (runners make
  them); merging one changes nothing."""
  stages = plan_stages([tft.ScaleToGaussian(columns=['x'], elementwise=True)])
  to_blocks = ToBlocks(stages[0], None)
  to_blocks.setup()
  to_blocks.start_bundle()
  rows = [{'id': i, 'x': [float(i)] * width} for i in range(5)]
  assert not feed(to_blocks, [WindowedValue(row, Timestamp(i), _WINDOWS)
                              for i, row in enumerate(rows)])
  [block] = [wv.value for wv in to_blocks.finish_bundle()]
  fn = StageStatsFn(stage_analyzers(stages[0]))
  alone = fn.extract_output(fn.add_input(fn.create_accumulator(), block))
  merged = fn.extract_output(fn.merge_accumulators(
      [fn.add_input(fn.create_accumulator(), block), fn.create_accumulator()]))
  assert merged == alone
  assert len(merged['t0_c0_tukey']['location']) == width


@PROPS
@given(data=elementwise_table(ragged=True))
def test_elementwise_ragged_rows_in_one_block_are_dead_letters(data):
  """With the rows in one block, a row whose length differs from most rows'
  goes to the dead letters; statistics are over the other rows."""
  rows, good_ids, width = data
  lengths = collections.Counter(len(_cell(rows, i, 'x')) for i, r in enumerate(rows)
                                if isinstance(r, (dict, beam.Row)))
  assume(all(c < lengths[width] for n, c in lengths.items() if n != width))
  with tempfile.TemporaryDirectory() as tmp:
    res = drive(rows, [tft.ScaleToZScore(columns=['x'], elementwise=True)], tmp)
  assert sorted(res.good) == good_ids
  for i in res.bad:
    if i not in good_ids and isinstance(rows[i], dict):
      assert 'elementwise' in res.bad[i].msg
  vals = np.stack([_flat(_cell(rows, i, 'x')) for i in good_ids]) if good_ids \
      else np.zeros((0, width))
  if good_ids:
    _check_moments(res.stats[0]['t0_c0_moments'], vals)


RAGGED = [{'id': 0, 'x': [1.0, 2.0]}, {'id': 1, 'x': [3.0, 5.0]},
          {'id': 2, 'x': [4.0, 9.0]}, {'id': 3, 'x': [7.0]}]


@pytest.mark.parametrize('block_rows', [1, 3])
def test_elementwise_ragged_row_does_not_depend_on_block_size(block_rows):
  with tempfile.TemporaryDirectory() as tmp:
    one = drive(RAGGED, [tft.ScaleToZScore(columns=['x'], elementwise=True)],
                os.path.join(tmp, 'a') + os.sep, block_rows=4096)
    assert sorted(one.bad) == [3]
    res = drive(RAGGED, [tft.ScaleToZScore(columns=['x'], elementwise=True)],
                os.path.join(tmp, 'b') + os.sep, block_rows=block_rows)
  assert_same_outputs(one, res)


def test_read_mode_elementwise_keeps_rows_of_the_statistics_length():
  ops = [tft.ScaleToZScore(columns=['x'], elementwise=True)]
  with tempfile.TemporaryDirectory() as tmp:
    drive(RAGGED[:3], ops, tmp)  # statistics of length 2
    res = drive([{'id': 0, 'x': [5.0]}, {'id': 1, 'x': [6.0]},
                 {'id': 2, 'x': [4.0, 9.0]}], ops, tmp, read=True)
  assert sorted(res.good) == [2]


def test_read_mode_elementwise_wrong_length_rows_get_the_length_error():
  ops = [tft.ScaleToZScore(columns=['x'], elementwise=True)]
  with tempfile.TemporaryDirectory() as tmp:
    drive(RAGGED[:3], ops, tmp)  # statistics of length 2
    res = drive([{'id': 0, 'x': [5.0]}], ops, tmp, read=True)
    assert 'statistics have 2' in res.bad[0].msg, res.bad[0].msg
    with pytest.raises(TypeError, match='statistics have 2'):
      drive([{'id': 0, 'x': [5.0]}], ops, tmp, read=True, catch=None)

# -- fixed boundaries ----------------------------------------------------------

BOUNDS = st.lists(st.integers(-40, 40).map(lambda v: v / 4), min_size=1,
                  max_size=4, unique=True).map(sorted)
BUCKET_GOOD = st.one_of(NUMBER, NON_FINITE,
                        st.lists(st.one_of(NUMBER, NON_FINITE), max_size=3))
BUCKET_BAD = st.one_of(
    st.sampled_from(['1.5', None, MISSING]),
    st.lists(st.one_of(NUMBER, st.just('x')), min_size=1, max_size=3).filter(
        lambda v: 'x' in v))


def _bucket(v, bounds):
  """TFT: -inf first bucket, inf and NaN last, else #boundaries <= v."""
  if math.isnan(v) or v == math.inf:
    return len(bounds)
  return sum(b <= v for b in bounds)


def _interpolated(v, b):
  """TFT's apply_buckets_with_interpolation; NaN gives 0.5."""
  if math.isnan(v):
    return 0.5
  if v <= b[0]:
    return 0.0
  if v >= b[-1]:
    return 1.0
  i = max(j for j in range(len(b) - 1) if b[j] <= v)
  return (i + (v - b[i]) / (b[i + 1] - b[i])) / (len(b) - 1)


@PROPS
@given(data=table({'x': BUCKET_GOOD}, {'x': BUCKET_BAD}), bounds=BOUNDS)
def test_apply_buckets(data, bounds):
  """Non-finite values are not errors here: they follow TFT's rules."""
  rows, good_ids = data
  for res in drive_all(rows, [tft.ApplyBuckets(columns=['x'],
                                               bucket_boundaries=bounds)]):
    assert sorted(res.good) == good_ids
    _check_passthrough(res)
    for i in good_ids:
      want = [_bucket(v, bounds) for v in _flat(_cell(rows, i, 'x'))]
      assert res.good[i]['x'].tolist() == want


@PROPS
@given(data=table({'x': BUCKET_GOOD}, {'x': BUCKET_BAD}),
       bounds=BOUNDS.filter(lambda b: len(b) >= 2))
def test_apply_buckets_with_interpolation(data, bounds):
  rows, good_ids = data
  op = tft.ApplyBucketsWithInterpolation(columns=['x'], bucket_boundaries=bounds)
  for res in drive_all(rows, [op]):
    assert sorted(res.good) == good_ids
    for i in good_ids:
      want = [_interpolated(v, bounds) for v in _flat(_cell(rows, i, 'x'))]
      assert_cell(res.good[i]['x'], want, rtol=1e-6, atol=1e-6)

# -- text ----------------------------------------------------------------------

TEXT_BAD = st.one_of(
    st.sampled_from([3, 1.5, None, MISSING, True]),
    st.lists(WORDS, max_size=2).map(lambda v: v + [7]))


def text_good(delimiter=None):
  token = (st.lists(WORDS, min_size=0, max_size=4).map(
      lambda ws: ' ' + ' '.join(ws) + '  ') if delimiter else WORDS)
  return st.one_of(token, token.map(str.encode), st.lists(token, max_size=4))


def _counts(rows, ids, column, delimiter=None):
  counts = collections.Counter()
  for i in ids:
    counts.update(_tokens(_cell(rows, i, column), delimiter))
  return counts


def _vocab(counts, top_k=None, threshold=None) -> list:
  """TFT's order: decreasing count, ties by decreasing token."""
  items = [(t, c) for t, c in counts.items()
           if threshold is None or c >= threshold]
  items.sort(key=lambda kv: (kv[1], kv[0]), reverse=True)
  return items[:top_k] if top_k is not None else items


VOCAB_CASES = {
    'plain': {},
    'split': {'split_string_by_delimiter': ' '},
    'top_k': {'top_k': 2, 'default_value': -7},
    'threshold': {'frequency_threshold': 2},
    'oov': {'top_k': 2, 'num_oov_buckets': 3},
    'split_threshold_oov': {'split_string_by_delimiter': ' ',
                            'frequency_threshold': 2, 'num_oov_buckets': 2},
}


@pytest.mark.parametrize('case', sorted(VOCAB_CASES))
@PROPS
@given(data=st.data())
def test_compute_and_apply_vocabulary(case, data):
  kwargs = VOCAB_CASES[case]
  delimiter = kwargs.get('split_string_by_delimiter')
  rows, good_ids = data.draw(table({'t': text_good(delimiter)}, {'t': TEXT_BAD}))
  op = lambda: tft.ComputeAndApplyVocabulary(columns=['t'], **kwargs)  # noqa: E731
  results = drive_all(rows, [op()])
  vocab = _vocab(_counts(rows, good_ids, 't', delimiter), kwargs.get('top_k'),
                 kwargs.get('frequency_threshold'))
  index = {t: j for j, (t, _) in enumerate(vocab)}
  oov = kwargs.get('num_oov_buckets', 0)
  for res in results[:-1]:
    assert res.stats[0]['t0_c0_vocab'] == vocab
  for res in results:
    assert sorted(res.good) == good_ids
    _check_passthrough(res)
    for i in good_ids:
      got = res.good[i]['t'].tolist()
      tokens = _tokens(_cell(rows, i, 't'), delimiter)
      assert len(got) == len(tokens)
      for t, g in zip(tokens, got):
        if t in index:
          assert g == index[t]
        elif oov:  # TFT's OOV bucket: FarmHash Fingerprint64 of the token
          assert g == len(vocab) + fingerprint64(t) % oov
        else:
          assert g == kwargs.get('default_value', -1)


def _tfidf(indices, df, n_docs, smooth=True):
  counts = collections.Counter(indices)
  uniq = sorted(counts)
  out = []
  for u in uniq:
    idf = (math.log((1 + n_docs) / (1 + df[u])) + 1 if smooth else
           math.log(n_docs / df[u]) + 1)
    out.append(counts[u] / len(indices) * idf)
  return uniq, out


@PROPS
@given(data=table({'t': st.lists(WORDS, max_size=5)}, {'t': TEXT_BAD}))
def test_tfidf_after_vocabulary(data):
  rows, good_ids = data
  results = drive_all(rows, [tft.ComputeAndApplyVocabulary(columns=['t']),
                             tft.TFIDF(columns=['t'])])
  vocab = _vocab(_counts(rows, good_ids, 't'))
  index = {t: j for j, (t, _) in enumerate(vocab)}
  docs = {i: [index[t] for t in _tokens(_cell(rows, i, 't'))] for i in good_ids}
  df = collections.Counter(u for d in docs.values() for u in set(d))
  for res in results[:-1]:
    assert len(res.stats) == 2  # TFIDF needs the vocabulary's output: stage 2
    assert res.stats[0]['t0_c0_vocab'] == vocab
    assert res.stats[1]['t1_c0_df'] == {**df, -1: len(good_ids)}
  for res in results:
    assert sorted(res.good) == good_ids
    for i, d in docs.items():
      row = res.good[i]
      assert row['t'].tolist() == d
      uniq, weights = _tfidf(d, df, len(good_ids))
      assert row['t_vocab_index'].tolist() == uniq
      assert_cell(row['t_tfidf_weight'], weights, rtol=1e-6)


# Empty lists: see test_tfidf_empty_list_does_not_depend_on_its_block.
INDEX_GOOD = st.one_of(st.integers(0, 6),
                       st.lists(st.integers(0, 6), min_size=1, max_size=5),
                       st.lists(st.integers(0, 6), max_size=5).map(
                           lambda v: np.asarray(v, np.int64)))
INDEX_BAD = st.one_of(st.sampled_from([1.5, 'a', None, MISSING, [1.0, 2.5]]),
                      st.lists(st.integers(0, 6), max_size=2).map(
                          lambda v: v + ['x']))


@PROPS
@given(data=table({'ix': INDEX_GOOD}, {'ix': INDEX_BAD}), smooth=st.booleans())
def test_tfidf_of_given_indices(data, smooth):
  rows, good_ids = data
  op = tft.TFIDF(columns=['ix'], vocab_size=7, smooth=smooth)
  results = drive_all(rows, [op])
  docs = {i: np.asarray(_cell(rows, i, 'ix')).reshape(-1).tolist()
          for i in good_ids}
  df = collections.Counter(u for d in docs.values() for u in set(d))
  for res in results[:-1]:
    assert res.stats[0]['t0_c0_df'] == {**df, -1: len(good_ids)}
  for res in results:
    assert sorted(res.good) == good_ids
    for i, d in docs.items():
      uniq, weights = _tfidf(d, df, len(good_ids), smooth)
      assert res.good[i]['ix_vocab_index'].tolist() == uniq
      assert_cell(res.good[i]['ix_tfidf_weight'], weights, rtol=1e-6)


def test_tfidf_empty_list_does_not_depend_on_its_block():
  rows = [{'id': 0, 'ix': 1}, {'id': 1, 'ix': []}, {'id': 2, 'ix': [2]}]
  with tempfile.TemporaryDirectory() as tmp:
    for block_rows in (1, 4096):
      where = os.path.join(tmp, str(block_rows))
      os.makedirs(where)
      res = drive(rows, [tft.TFIDF(columns=['ix'], vocab_size=3)], where,
                  block_rows=block_rows)
      assert sorted(res.good) == [0, 1, 2], block_rows


def _ngrams(tokens, lo, hi, sep):
  return [sep.join(tokens[s:s + n]) for s in range(len(tokens))
          for n in range(lo, hi + 1) if s + n <= len(tokens)]


@PROPS
@given(data=table({'t': text_good(' ')}, {'t': TEXT_BAD}),
       span=st.sampled_from([(1, 1), (1, 2), (2, 3)]))
def test_ngrams(data, span):
  rows, good_ids = data
  op = tft.NGrams(columns=['t'], split_string_by_delimiter=' ',
                  ngram_range=span, ngrams_separator='-')
  for res in drive_all(rows, [op]):
    assert sorted(res.good) == good_ids
    _check_passthrough(res)
    for i in good_ids:
      want = _ngrams(_tokens(_cell(rows, i, 't'), ' '), *span, b'-')
      assert res.good[i]['t'].tolist() == want


@PROPS
@given(data=table({'t': text_good(' ')}, {'t': TEXT_BAD}),
       span=st.sampled_from([(1, 1), (1, 2)]))
def test_bag_of_words(data, span):
  rows, good_ids = data
  op = tft.BagOfWords(columns=['t'], split_string_by_delimiter=' ',
                      ngram_range=span, ngrams_separator='-',
                      compute_word_count=True)
  results = drive_all(rows, [op])
  counts = _vocab(_counts(rows, good_ids, 't', ' '))
  for res in results[:-1]:
    assert res.stats[0]['t0_c0_word_count'] == counts
  for res in results:
    assert sorted(res.good) == good_ids
    for i in good_ids:
      grams = _ngrams(_tokens(_cell(rows, i, 't'), ' '), *span, b'-')
      assert res.good[i]['t'].tolist() == list(dict.fromkeys(grams))


@PROPS
@given(data=table({'t': text_good()}, {'t': TEXT_BAD}),
       key=st.sampled_from([None, (123, 456)]))
def test_hash_strings(data, key):
  """Each token of each row hashed in place (the hash itself is checked
  against TensorFlow in test_mltransform_tft)."""
  rows, good_ids = data
  op = tft.HashStrings(columns=['t'], hash_buckets=11, key=key)
  for res in drive_all(rows, [op]):
    assert sorted(res.good) == good_ids
    for i in good_ids:
      tokens = _tokens(_cell(rows, i, 't'))
      want = [hash_buckets([t], 11, key)[0] for t in tokens]
      assert res.good[i]['t'].tolist() == want
      assert all(0 <= h < 11 for h in want)


DEDUP_GOOD = st.one_of(st.lists(WORDS, max_size=5), st.lists(
    st.integers(0, 3), min_size=1, max_size=5), WORDS)


@PROPS
@given(data=table({'t': DEDUP_GOOD}, {'t': st.just(MISSING)}))
def test_deduplicate_tensor_per_row(data):
  rows, good_ids = data
  for res in drive_all(rows, [tft.DeduplicateTensorPerRow(columns=['t'])]):
    assert sorted(res.good) == good_ids
    for i in good_ids:
      cell = _cell(rows, i, 't')
      items = cell if isinstance(cell, list) else [cell]
      items = [v.encode() if isinstance(v, str) else v for v in items]
      assert res.good[i]['t'].tolist() == list(dict.fromkeys(items))

# -- several stages ------------------------------------------------------------


@PROPS
@given(data=table({'t': st.lists(WORDS, max_size=4), 'y': NUMBER},
                  {'t': TEXT_BAD, 'y': numeric_bad()}))
def test_later_stage_raw_read_keeps_bad_rows_out_of_earlier_statistics(data):
  """ScaleToZScore(y) runs in stage 2 (after TFIDF), but a row with a bad y
  never reaches stage 1's vocabulary."""
  rows, good_ids = data
  results = drive_all(rows, [tft.ComputeAndApplyVocabulary(columns=['t']),
                             tft.TFIDF(columns=['t']),
                             tft.ScaleToZScore(columns=['y'])])
  vocab = _vocab(_counts(rows, good_ids, 't'))
  ys = np.asarray([_cell(rows, i, 'y') for i in good_ids], np.float32)
  for res in results[:-1]:
    assert [len(s) for s in res.stats] == [1, 2]
    assert res.stats[0]['t0_c0_vocab'] == vocab
    _check_moments(res.stats[1]['t2_c0_moments'], ys.astype(np.float64))
  for res in results:
    assert sorted(res.good) == good_ids
  for res in results[1:]:
    assert_same_outputs(results[0], res)


@PROPS
@given(data=table({'x': NUMERIC_GOOD}, {'x': numeric_bad()}))
def test_chained_statistics_on_one_column(data):
  """ScaleToZScore then ScaleTo01 on x: the second statistics are over the
  first's outputs of the good rows."""
  rows, good_ids = data
  results = drive_all(rows, [tft.ScaleToZScore(columns=['x']),
                             tft.ScaleTo01(columns=['x'])])
  for res in results:
    assert sorted(res.good) == good_ids
  vals = np.concatenate([np.zeros(0)] + [_flat(_cell(rows, i, 'x')) for i in good_ids])
  if not vals.size:
    return
  z = _z(vals, vals)[0].astype(np.float32).astype(np.float64)
  for res in results[:-1]:  # the first stage's outputs, within float32 rounding
    _check_moments(res.stats[1]['t1_c0_moments'], z, atol=1e-5)
  for res in results:
    for i in good_ids:
      zi = _z(_flat(_cell(rows, i, 'x')), vals)[0]
      assert_cell(res.good[i]['x'], _unit(zi, z)[0], rtol=1e-5, atol=1e-4)


# -- columnar input ------------------------------------------------------------

NULLABLE = st.one_of(NUMBER, NUMBER, NUMBER, NON_FINITE, st.none())


@PROPS
@given(values=st.lists(NULLABLE, min_size=1, max_size=15),
       cuts=st.lists(st.integers(1, 15), max_size=3))
def test_record_batches_match_dict_rows(values, cuts):
  """A RecordBatch element per slice of the rows: nulls and non-finite
  values become dead letters (as dicts), the other rows' outputs equal the
  same rows given as dicts, whatever the slicing."""
  n = len(values)
  bounds = sorted({0, n, *[c for c in cuts if c < n]})
  batches = [pa.RecordBatch.from_pydict(
      {'id': list(range(a, b)), 'x': pa.array(values[a:b], pa.float64())})
      for a, b in zip(bounds[:-1], bounds[1:])]
  dicts = [{'id': i, 'x': v} for i, v in enumerate(values)]
  ops = lambda: [tft.ScaleToZScore(columns=['x'])]  # noqa: E731
  with tempfile.TemporaryDirectory() as tmp:
    want = drive(dicts, ops(), os.path.join(tmp, 'a') + os.sep)
    good, bad = {}, {}
    os.makedirs(os.path.join(tmp, 'b'))
    stages = plan_stages(ops())
    later, written = later_raw_reads(stages)
    to_blocks = ToBlocks(stages[0], Exception, later, written)
    to_blocks.setup()
    to_blocks.start_bundle()
    blocks, dead = [], []
    for batch in batches:
      b, d = _outputs(feed(to_blocks, [WindowedValue(batch, Timestamp(0), _WINDOWS)]))
      blocks += [wv.value for wv in b]
      dead += d
    assert not list(to_blocks.finish_bundle())  # nothing was buffered
    fn = StageStatsFn(stage_analyzers(stages[0]))
    stats = _combine(fn, blocks, random.Random(1))
    side = _artifacts.write_stage(os.path.join(tmp, 'b'), 0,
                                  stage_analyzers(stages[0]), stats)
    apply = ApplyStage(stages[0], None, RowOutput(None), Exception, None, 0)
    for block in blocks:
      out, d = _outputs(list(apply.process(block, side)))
      dead += d
      for wv in out:
        assert isinstance(wv.value, pa.RecordBatch)
        for r in wv.value.to_pylist():
          assert r['id'] not in good
          good[r['id']] = r
    for wv in dead:
      assert isinstance(wv.value.element, dict)
      bad[wv.value.element['id']] = wv.value.element
  for k, v in stats['t0_c0_moments'].items():
    assert v == pytest.approx(want.stats[0]['t0_c0_moments'][k], rel=1e-9), k
  assert sorted(good) == sorted(want.good)
  assert sorted(bad) == sorted(want.bad)
  assert sorted(list(good) + list(bad)) == list(range(n))
  for i, r in good.items():
    assert_cell(r['x'], want.good[i]['x'])
  for i, element in bad.items():
    v = values[i]
    assert v is None or not math.isfinite(v)
    assert element == {'id': i, 'x': v} or math.isnan(element['x'])


# -- inputs the engine must not crash on ---------------------------------------


def test_int_beyond_float_range_is_a_dead_letter():
  rows = [{'id': 0, 'x': 1.0}, {'id': 1, 'x': 2.0}, {'id': 2, 'x': 2**1100}]
  with tempfile.TemporaryDirectory() as tmp:
    res = drive(rows, [tft.ScaleToZScore(columns=['x'])], tmp)
  assert sorted(res.good) == [0, 1]
  assert sorted(res.bad) == [2]


def test_jagged_nested_cell_gets_a_column_type_error():
  rows = [{'id': 0, 'x': 1.0}, {'id': 1, 'x': [0.0, []]}]
  with tempfile.TemporaryDirectory() as tmp:
    res = drive(rows, [tft.ScaleToZScore(columns=['x'])], tmp)
  assert "column 'x'" in res.bad[1].msg, res.bad[1].msg


LONE_SURROGATE = 'caf\udc80'  # what decoding with errors='surrogateescape' leaves


@pytest.mark.parametrize('scalar', [False, True], ids=['list', 'scalar'])
@pytest.mark.parametrize('read', [False, True], ids=['write', 'read'])
def test_text_that_is_not_utf8_is_a_dead_letter(scalar, read):
  """Before: a str holding a lone surrogate raised UnicodeEncodeError from
  Arrow and failed the whole block, exception handling or not. (Beam's
  coders cannot encode such a str either: it reaches MLTransform only from
  a step fused with it, before any size sampling.)"""
  words = [['tea', 'milk'], ['milk'], [LONE_SURROGATE, 'tea'], ['tea']]
  rows = [{'id': i, 't': w[0] if scalar else w} for i, w in enumerate(words)]
  transforms = [tft.ComputeAndApplyVocabulary(columns=['t'])]
  with tempfile.TemporaryDirectory() as tmp:
    if read:
      drive([r for r in rows if r['id'] != 2], transforms, tmp)
    res = drive(rows, transforms, tmp, read=read)
    assert sorted(res.good) == [0, 1, 3]
    assert sorted(res.bad) == [2]
    msg = res.bad[2].msg
    assert msg.startswith('ColumnTypeError') and 'UTF-8' in msg and "'t'" in msg, msg
    assert res.bad[2].transform_name == 'ComputeAndApplyVocabulary'
    with pytest.raises(Exception, match='UTF-8'):
      drive(rows, transforms, tmp, read=read, catch=None)


@example(rows=[{'id': 0, 'x': [1.0, 2.0]}, {'id': 1, 'x': [[3.0], [4.0]]}])
@PROPS
@given(rows=st.lists(
    st.one_of(NUMERIC_GOOD, numeric_bad(), st.lists(
        st.one_of(NUMBER, st.lists(NUMBER, max_size=2)), max_size=3)),
    max_size=8).map(lambda cells: [
        {'id': i, 'x': c} for i, c in enumerate(cells) if c is not MISSING]))
def test_any_cells_every_row_once_without_crash(rows):
  """Whatever the cells (nested lists included), every row comes out once
  from every numeric transform; ``drive`` checks it."""
  with tempfile.TemporaryDirectory() as tmp:
    for n, op in enumerate([tft.ScaleToZScore(columns=['x']),
                            tft.Bucketize(columns=['x'], num_buckets=2),
                            tft.ApplyBuckets(columns=['x'], bucket_boundaries=[0]),
                            tft.ScaleToGaussian(columns=['x'])]):
      for block_rows in (1, 4096):
        where = os.path.join(tmp, f'{n}_{block_rows}')
        os.makedirs(where)
        drive(rows, [op], where, block_rows=block_rows)


class _Cycle:
  """Cyclic garbage: freed only by the cyclic GC."""
  live = 0

  def __init__(self):
    self.me = self
    _Cycle.live += 1

  def __del__(self):
    _Cycle.live -= 1


def test_cyclic_garbage_made_upstream_is_freed_during_a_long_bundle():
  """ToBlocks pauses the GC for its bundle (Beam buffers rows before a batch
  reaches it); cyclic garbage made upstream meanwhile is still collected
  as the bundle goes on, not held until it ends."""
  import gc
  stages = plan_stages([tft.ScaleToZScore(columns=['x'])])
  to_blocks = ToBlocks(stages[0], None)
  to_blocks.setup()
  to_blocks.start_bundle()
  made = 0
  try:
    for b in range(60):
      for _ in range(10_000):  # what an upstream step leaves behind
        _Cycle()
      made += 10_000
      rows = [{'x': float(i)} for i in range(4096)]
      assert len(list(to_blocks.process_batch(rows, Timestamp(0), GlobalWindow()))) == 1
      assert not gc.isenabled()
    assert _Cycle.live < made / 2, (_Cycle.live, made)
  finally:
    list(to_blocks.finish_bundle())
    to_blocks.teardown()
  assert gc.isenabled()
  gc.collect()
