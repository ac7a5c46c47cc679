"""ReadFromDuckDB / WriteToDuckDB on real DuckDB files and real pipelines."""
import os
import pickle
import subprocess
import sys
import tempfile
import time

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.typehints.row_type import RowTypeConstraint

from runinference.base import KeyedModelHandler, RunInference
from runinference.io import (DuckDBDatabaseNotFoundError, DuckDBQueryError,
                             ReadFromDuckDB, WriteToDuckDB)
from runinference.io._duckdb_read import ReadPlan
from runinference.sklearn_inference import SklearnModelHandlerNumpy
from tests.helpers import run_pipeline

duckdb = pytest.importorskip('duckdb')


@pytest.fixture
def items_db(tmp_path):
  """items(id BIGINT, x DOUBLE, name VARCHAR, tags VARCHAR[], pos STRUCT);
  53 rows, x is NULL for ids divisible by 10."""
  path = str(tmp_path / 'items.duckdb')
  con = duckdb.connect(path)
  con.execute("""
      CREATE TABLE items AS SELECT range AS id,
        CASE WHEN range % 10 = 0 THEN NULL ELSE range * 0.5 END AS x,
        'item' || range AS name, ['a', 'b' || range] AS tags,
        {'lat': range * 1.0, 'lon': -range * 1.0} AS pos
      FROM range(53)""")
  con.close()
  return path


def query(path, sql):
  con = duckdb.connect(path, read_only=True)
  try:
    return con.execute(sql).fetchall()
  finally:
    con.close()


def gather(make):
  """Runs a pipeline whose output is ``make(p)``; returns its elements."""
  fd, path = tempfile.mkstemp(suffix='.pkl')
  os.close(fd)

  def save(elements):
    with open(path, 'wb') as f:
      pickle.dump(list(elements), f)

  run_pipeline(lambda p: assert_that(make(p), save))
  with open(path, 'rb') as f:
    out = pickle.load(f)
  os.unlink(path)
  return out


def read_ids(db, **kwargs):
  return sorted(gather(lambda p: p | ReadFromDuckDB(
      db, 'SELECT * FROM items', **kwargs) | beam.Map(lambda r: r['id'])))


@pytest.mark.parametrize('kwargs', [
    {}, {'rows_per_split': 7}, {'num_splits': 500},
    {'partition_column': 'id', 'num_splits': 4},
    {'partition_column': 'x', 'rows_per_split': 5},
    {'order_by': 'id', 'rows_per_split': 10},
])
def test_every_row_is_read_once(items_db, kwargs):
  assert read_ids(items_db, **kwargs) == list(range(53))


@pytest.mark.parametrize('kwargs', [
    {'rows_per_split': 7}, {'partition_column': 'x', 'num_splits': 6},
    {'partition_column': 'id', 'num_splits': 60},
])
def test_splits_are_disjoint_and_cover_the_query(items_db, kwargs):
  plan = ReadPlan(items_db, 'SELECT * FROM items WHERE id < 50', **kwargs)
  con = duckdb.connect(items_db, read_only=True)
  splits = plan.splits(con)
  parts = [[r[0] for r in con.execute(s.sql, list(s.params)).fetchall()]
           for s in splits]
  con.close()
  assert len(splits) > 1 and all(parts)
  assert sorted(sum(parts, [])) == list(range(50))


def test_nested_columns_come_back_as_python_values(items_db):
  def build(p):
    rows = p | ReadFromDuckDB(items_db, 'SELECT * FROM items WHERE id = 3')
    assert_that(rows, equal_to([{
        'id': 3, 'x': 1.5, 'name': 'item3', 'tags': ['a', 'b3'],
        'pos': {'lat': 3.0, 'lon': -3.0}}]))

  run_pipeline(build)


def test_row_output_has_a_schema_beam_transforms_can_use(items_db):
  def build(p):
    rows = p | ReadFromDuckDB(
        items_db, 'SELECT id % 3 AS grp, id, tags, pos FROM items',
        output='row', rows_per_split=10)
    assert isinstance(rows.element_type, RowTypeConstraint)
    names = [name for name, _ in rows.element_type._fields]
    assert names == ['grp', 'id', 'tags', 'pos']
    # GroupBy by field name needs the schema.
    sums = (rows | beam.GroupBy('grp').aggregate_field(
        'id', sum, 'total') | beam.Map(lambda r: (r.grp, r.total)))
    assert_that(sums, equal_to([
        (g, sum(i for i in range(53) if i % 3 == g)) for g in range(3)]),
                label='sums')
    lats = rows | beam.Map(lambda r: (r.id, r.pos.lat, list(r.tags)))
    assert_that(lats | beam.Filter(lambda t: t[0] == 7),
                equal_to([(7, 7.0, ['a', 'b7'])]), label='nested')

  run_pipeline(build)


def test_arrow_output_yields_record_batches(items_db):
  import pyarrow as pa
  batches = gather(lambda p: (
      p | ReadFromDuckDB(items_db, 'SELECT id, x FROM items', output='arrow',
                         rows_per_split=20, rows_per_batch=8)
      | beam.Map(lambda b: (isinstance(b, pa.RecordBatch), b.num_rows,
                            sum(b.column('id').to_pylist())))))
  assert all(ok for ok, _, _ in batches)
  assert max(n for _, n, _ in batches) <= 8
  assert sum(n for _, n, _ in batches) == 53
  assert sum(s for _, _, s in batches) == sum(range(53))


def test_read_errors_name_the_problem(tmp_path, items_db):
  missing = str(tmp_path / 'nope.duckdb')
  with pytest.raises(DuckDBDatabaseNotFoundError, match='nope.duckdb'):
    beam.Pipeline() | ReadFromDuckDB(missing, 'SELECT 1')
  assert not (tmp_path / 'nope.duckdb').exists()  # never created
  with pytest.raises(DuckDBQueryError, match='SELEC id'):
    beam.Pipeline() | ReadFromDuckDB(items_db, 'SELEC id FROM items')
  with pytest.raises(DuckDBQueryError, match='missing_table'):
    beam.Pipeline() | ReadFromDuckDB(items_db, 'SELECT * FROM missing_table')
  with pytest.raises(ValueError, match="partition_column 'name' is string"):
    beam.Pipeline() | ReadFromDuckDB(items_db, 'SELECT * FROM items',
                                     partition_column='name')
  def build(p):
    _ = p | ReadFromDuckDB(items_db, 'SELECT * FROM items', validate=False,
                           partition_column='name')

  with pytest.raises(Exception, match="'name' holds str values"):
    run_pipeline(build)
  with pytest.raises(ValueError, match='output must be one of'):
    ReadFromDuckDB(items_db, 'SELECT 1', output='pandas')
  with pytest.raises(ValueError, match='rows_per_split must be a positive'):
    ReadFromDuckDB(items_db, 'SELECT 1', rows_per_split=0)
  with pytest.raises(ValueError, match='not both'):
    ReadFromDuckDB(items_db, 'SELECT 1', num_splits=2, rows_per_split=3)
  with pytest.raises(TypeError):
    ReadFromDuckDB(items_db, 'SELECT 1', splits=2)  # unknown option


def test_sklearn_predictions_land_in_duckdb_as_nested_columns(
    tmp_path, five_model):
  out = str(tmp_path / 'preds.duckdb')
  handler = SklearnModelHandlerNumpy(model_uri=five_model)

  def build(p):
    xs = p | beam.Create([np.array([float(i)]) for i in range(40)])
    preds = xs | RunInference(handler)
    _ = preds | WriteToDuckDB(out, 'predictions', batch_size=6)
    keyed = (xs | beam.Map(lambda x: (f'k{int(x[0]) % 2}', x))
             | 'Keyed' >> RunInference(KeyedModelHandler(handler)))
    _ = keyed | 'WriteKeyed' >> WriteToDuckDB(out, 'keyed')
    records = preds | beam.Map(lambda r: {
        'id': int(r.example[0]),
        'result': {'value': r.inference, 'input': r.example,
                   'bounds': {'low': r.inference - 1,
                              'high': r.inference + 1}}})
    _ = records | 'WriteRecords' >> WriteToDuckDB(out, 'records')

  run_pipeline(build)
  types = dict((r[0], r[1]) for r in query(out, 'DESCRIBE predictions'))
  assert types == {'example': 'DOUBLE[]', 'inference': 'DOUBLE',
                   'model_id': 'VARCHAR'}
  rows = query(out, 'SELECT example[1], inference FROM predictions ORDER BY 1')
  assert [r[0] for r in rows] == [float(i) for i in range(40)]
  np.testing.assert_allclose([r[1] for r in rows], [5.0 * i for i in range(40)],
                             atol=1e-9)
  assert query(out, 'SELECT key, count(*), round(sum(inference)) FROM keyed '
                    'GROUP BY key ORDER BY key') == [
                        ('k0', 20, 5.0 * sum(range(0, 40, 2))),
                        ('k1', 20, 5.0 * sum(range(1, 40, 2)))]
  nested = {r[0]: r[1] for r in query(out, 'DESCRIBE records')}
  assert nested['result'].startswith('STRUCT(')
  assert 'bounds STRUCT(low DOUBLE, high DOUBLE)' in nested['result']
  assert query(out, 'SELECT round(result.bounds.high), result.input[1] '
                    'FROM records WHERE id = 7') == [(36.0, 7.0)]


def test_rows_round_trip_through_read_and_write(tmp_path, items_db):
  out = str(tmp_path / 'copy.duckdb')

  def build(p):
    rows = p | ReadFromDuckDB(items_db, 'SELECT * FROM items', output='row',
                              rows_per_split=9)
    _ = rows | WriteToDuckDB(out, 'items', batch_size=7)
    grids = rows | beam.Map(lambda r: {
        'id': r.id, 'grid': np.arange(6.0).reshape(2, 3) * r.id,
        'flags': np.array([r.id % 2 == 0, True]), 'n': np.int32(r.id)})
    _ = grids | 'WriteGrids' >> WriteToDuckDB(out, 'grids')

  run_pipeline(build)
  sql = 'SELECT * FROM items ORDER BY id'
  assert query(out, sql) == query(items_db, sql)
  assert [r[1] for r in query(out, 'DESCRIBE grids')] == [
      'BIGINT', 'DOUBLE[][]', 'BOOLEAN[]', 'BIGINT']  # numpy -> Python types
  assert query(out, 'SELECT grid, flags FROM grids WHERE id = 2') == [
      ([[0.0, 2.0, 4.0], [6.0, 8.0, 10.0]], [True, True])]


def test_write_is_one_transaction_rolled_back_on_a_bad_row(tmp_path):
  db = str(tmp_path / 'w.duckdb')
  con = duckdb.connect(db)
  con.execute('CREATE TABLE t (a BIGINT CHECK (a < 100), b VARCHAR)')
  con.execute("INSERT INTO t VALUES (1, 'old')")
  con.close()
  records = [{'a': i, 'b': 'new'} for i in range(30)]
  records[17] = {'a': 1000, 'b': 'bad'}

  def build(p):
    # batch_size=4: the bad row is in one of several staged files.
    _ = (p | beam.Create(records, reshuffle=False)
         | WriteToDuckDB(db, 't', batch_size=4))

  with pytest.raises(Exception, match="could not insert the records into 't'"):
    run_pipeline(build)
  assert query(db, 'SELECT * FROM t') == [(1, 'old')]  # nothing half-written


def test_table_with_other_columns_is_a_clear_error(tmp_path):
  db = str(tmp_path / 'w.duckdb')
  con = duckdb.connect(db)
  con.execute('CREATE TABLE t (a BIGINT)')
  con.close()

  def build(p):
    _ = p | beam.Create([{'a': 1, 'c': 2.0}]) | WriteToDuckDB(db, 't')

  with pytest.raises(Exception, match=r"exists with columns \['a'\].*\['c'\]"):
    run_pipeline(build)
  assert query(db, 'SELECT count(*) FROM t') == [(0,)]


def test_append_replace_schema_and_results(tmp_path):
  db = str(tmp_path / 'w.duckdb')
  results = []

  def write(records, **kwargs):
    results.extend(gather(lambda p: p | beam.Create(records) | WriteToDuckDB(
        db, 't', **kwargs)))

  write([{'a': 1, 'note': None}, {'a': 2, 'note': None}],
        schema={'a': 'INTEGER'})
  assert dict(r[:2] for r in query(db, 'DESCRIBE t')) == {
      'a': 'INTEGER', 'note': 'VARCHAR'}  # an all-NULL column is VARCHAR
  write([{'a': 3, 'note': 'x'}])
  assert query(db, 'SELECT a, note FROM t ORDER BY a') == [
      (1, None), (2, None), (3, 'x')]
  write([{'z': 9}], mode='replace')
  assert query(db, 'SELECT * FROM t') == [(9,)]
  assert [(r.table, r.rows) for r in results] == [('t', 2), ('t', 1),
                                                   ('t', 1)]
  assert [p.name for p in tmp_path.iterdir()] == ['w.duckdb']  # staging gone


def test_windowed_input_commits_once_per_window(tmp_path):
  db = str(tmp_path / 'w.duckdb')
  results = gather(lambda p: (
      p | beam.Create([(i, float(i)) for i in range(10)])
      | beam.Map(lambda t: beam.window.TimestampedValue({'i': t[0]}, t[1]))
      | 'Fixed' >> beam.WindowInto(beam.window.FixedWindows(5))
      | WriteToDuckDB(db, 'w', batch_size=3)
      | beam.Map(lambda r: r.rows)
      | 'Global' >> beam.WindowInto(beam.window.GlobalWindows())))
  assert sorted(results) == [5, 5]
  assert query(db, 'SELECT count(*), sum(i) FROM w') == [(10, 45)]
  with pytest.raises(ValueError, match="mode='replace'"):
    (beam.Pipeline() | beam.Create([{'i': 1}])
     | beam.WindowInto(beam.window.FixedWindows(5))
     | WriteToDuckDB(db, 'w', mode='replace'))


def test_write_errors_name_the_problem(tmp_path):
  db = str(tmp_path / 'w.duckdb')
  with pytest.raises(ValueError, match='mode must be one of'):
    WriteToDuckDB(db, 't', mode='overwrite')
  with pytest.raises(TypeError, match='schema must map column names'):
    WriteToDuckDB(db, 't', schema=['a'])
  with pytest.raises(ValueError, match='in-memory database'):
    WriteToDuckDB(':memory:', 't')
  with pytest.raises(ValueError, match='batch_size must be a positive int'):
    WriteToDuckDB(db, 't', batch_size=0)

  def build(p):
    _ = p | beam.Create([{'a': 1}, object()]) | WriteToDuckDB(db, 't')

  with pytest.raises(Exception, match='Map the elements to dicts first'):
    run_pipeline(build)


def test_a_held_write_lock_is_waited_for_within_a_bound(tmp_path):
  db = str(tmp_path / 'w.duckdb')
  holder = subprocess.Popen([
      sys.executable, '-c',
      f'import duckdb, time; c = duckdb.connect({db!r}); print("held", '
      'flush=True); time.sleep(30)'], stdout=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline().strip() == 'held'

    def build(p):
      _ = (p | beam.Create([{'a': 1}])
           | WriteToDuckDB(db, 't', lock_timeout_s=1.0))

    start = time.monotonic()
    with pytest.raises(Exception, match='one writing process at a time'):
      run_pipeline(build)
    assert time.monotonic() - start < 25
  finally:
    holder.kill()
    holder.wait(timeout=10)


def test_example_scores_a_warehouse_into_duckdb(tmp_path):
  import importlib.util
  from pathlib import Path
  path = Path(__file__).resolve().parents[2] / 'examples/duckdb_scoring.py'
  spec = importlib.util.spec_from_file_location('duckdb_scoring', path)
  example = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(example)
  assert example.main(['--rows', '300', '--out', str(tmp_path)]) == 0
  db = str(tmp_path / 'shop.duckdb')
  assert query(db, 'SELECT count(DISTINCT key), min(len(inference)) '
                   'FROM scores') == [(300, 2)]
  assert (tmp_path / 'report.html').read_text().count('data-chart=') == 3
