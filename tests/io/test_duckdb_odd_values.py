"""DuckDB IO against odd values (issue 18 items 7-9): partition columns
holding NULL/NaN/+-inf, a table's schema decided once, table names compared
ignoring case. Real DuckDB files, real pipelines."""

import apache_beam as beam
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runinference.exceptions import RunInferenceError
from runinference.io import DuckDBSchemaError, ReadFromDuckDB, WriteToDuckDB
from runinference.io._duckdb_read import ReadPlan
from tests.helpers import run_pipeline
from tests.io.test_duckdb import gather, query

duckdb = pytest.importorskip('duckdb')

ODD = [float('nan'), float('inf'), float('-inf'), None, 1.5, -2.0, 0.0,
       -0.0, 7.25, 1e300, -1e-300]


def _db_with(path, values, kind='DOUBLE'):
  con = duckdb.connect(path)
  con.execute(f'CREATE TABLE t (id BIGINT, x {kind})')
  con.executemany('INSERT INTO t VALUES (?, ?)', list(enumerate(values)))
  con.close()
  return path


@pytest.mark.parametrize('num_splits', [1, 2, 3, 8])
def test_partition_on_nan_inf_null_reads_every_row_once(tmp_path, num_splits):
  db = _db_with(str(tmp_path / 'odd.duckdb'), ODD)
  ids = gather(lambda p: p | ReadFromDuckDB(
      db, 'SELECT * FROM t', partition_column='x', num_splits=num_splits)
      | beam.Map(lambda r: r['id']))
  assert sorted(ids) == list(range(len(ODD)))


def test_partition_column_with_no_finite_value(tmp_path):
  values = [float('nan'), None, float('inf'), float('-inf'), float('nan')]
  db = _db_with(str(tmp_path / 'odd.duckdb'), values)
  ids = gather(lambda p: p | ReadFromDuckDB(
      db, 'SELECT * FROM t', partition_column='x', num_splits=4)
      | beam.Map(lambda r: r['id']))
  assert sorted(ids) == list(range(len(values)))


def test_split_sql_carries_no_value_as_text(tmp_path):
  db = _db_with(str(tmp_path / 'odd.duckdb'), [0.1 * i for i in range(20)])
  con = duckdb.connect(db, read_only=True)
  splits = ReadPlan(db, 'SELECT * FROM t', 'x', num_splits=4).splits(con)
  con.close()
  assert len(splits) == 4 and all(s.params for s in splits)
  assert not any(any(ch.isdigit() for ch in s.sql) for s in splits)


_value = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True),
                   st.sampled_from([float('nan'), float('inf'),
                                    float('-inf')]))


@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(values=st.lists(_value, min_size=1, max_size=30),
       num_splits=st.integers(1, 9))
def test_property_double_partitions_cover_each_row_once(values, num_splits):
  con = duckdb.connect()
  con.execute('CREATE TABLE t (id BIGINT, x DOUBLE)')
  con.executemany('INSERT INTO t VALUES (?, ?)', list(enumerate(values)))
  plan = ReadPlan('unused', 'SELECT * FROM t', 'x', num_splits=num_splits)
  ids = [r[0] for s in plan.splits(con)
         for r in con.execute(s.sql, list(s.params)).fetchall()]
  con.close()
  assert sorted(ids) == list(range(len(values)))


@settings(max_examples=60, deadline=None)
@given(values=st.lists(st.one_of(st.none(), st.integers(-2**63, 2**63 - 1)),
                       min_size=1, max_size=30),
       num_splits=st.integers(1, 9), kind=st.sampled_from(
           ['BIGINT', 'HUGEINT', 'DECIMAL(38,0)']))
def test_property_integer_partitions_cover_each_row_once(values, num_splits,
                                                         kind):
  con = duckdb.connect()
  con.execute(f'CREATE TABLE t (id BIGINT, x {kind})')
  con.executemany('INSERT INTO t VALUES (?, ?)', list(enumerate(values)))
  plan = ReadPlan('unused', 'SELECT * FROM t', 'x', num_splits=num_splits)
  ids = [r[0] for s in plan.splits(con)
         for r in con.execute(s.sql, list(s.params)).fetchall()]
  con.close()
  assert sorted(ids) == list(range(len(values)))


# -- item 8: the schema is decided once --------------------------------------

def _write(db, records, table='t', **kwargs):
  def build(p):
    _ = (p | beam.Create(records, reshuffle=False)
         | WriteToDuckDB(db, table, **kwargs))
  run_pipeline(build)


def test_int_and_str_in_different_batches_is_an_error_naming_the_column(
    tmp_path):
  db = str(tmp_path / 'w.duckdb')
  records = [{'id': i, 'v': i} for i in range(4)] + [{'id': 9, 'v': 'nine'}]
  with pytest.raises(Exception, match=r"column 'v'.*BIGINT, VARCHAR"):
    _write(db, records, batch_size=1)
  assert issubclass(DuckDBSchemaError, RunInferenceError)
  con = duckdb.connect(db)
  assert con.execute("SELECT count(*) FROM information_schema.tables "
                     "WHERE table_name = 't'").fetchone() == (0,)
  con.close()


def test_a_later_commit_must_fit_the_decided_schema(tmp_path):
  db = str(tmp_path / 'w.duckdb')
  _write(db, [{'id': 1, 'v': 10}])
  with pytest.raises(Exception, match=r"column 'v' of table 't' is BIGINT.*"
                     r"VARCHAR"):
    _write(db, [{'id': 2, 'v': '20'}])   # DuckDB alone would cast '20'
  with pytest.raises(Exception, match=r"column 'v' of table 't' is BIGINT.*"
                     r"DOUBLE"):
    _write(db, [{'id': 2, 'v': 2.5}])    # would be rounded to 2 or 3
  assert query(db, 'SELECT id, v FROM t') == [(1, 10)]


def test_ints_widen_to_a_float_column_and_nulls_fit_anything(tmp_path):
  db = str(tmp_path / 'w.duckdb')
  _write(db, [{'v': 1.5, 'tags': ['a']}, {'v': 2, 'tags': [None]},
              {'v': None, 'tags': None}], batch_size=1)
  _write(db, [{'v': 3, 'tags': None}], batch_size=1)
  assert dict(r[:2] for r in query(db, 'DESCRIBE t')) == {
      'v': 'DOUBLE', 'tags': 'VARCHAR[]'}
  assert sorted(r[0] for r in query(db, 'SELECT v FROM t WHERE v IS NOT NULL')
                ) == [1.5, 2.0, 3.0]


def test_declared_schema_is_the_decision(tmp_path):
  db = str(tmp_path / 'w.duckdb')
  _write(db, [{'v': 1}], schema={'v': 'DOUBLE'})
  with pytest.raises(Exception, match=r"column 'v' of table 't' is VARCHAR"):
    _write(db + '2', [{'v': 1}], schema={'v': 'VARCHAR'})
  assert query(db, 'SELECT v FROM t') == [(1.0,)]


# -- item 9: table names ignore case, as DuckDB's do -------------------------

@pytest.mark.parametrize('mode', ['append', 'replace'])
def test_table_name_in_other_case_is_the_same_table(tmp_path, mode):
  db = str(tmp_path / 'w.duckdb')
  con = duckdb.connect(db)
  con.execute('CREATE TABLE scores (id BIGINT, score DOUBLE)')
  con.execute('INSERT INTO scores VALUES (1, 0.5)')
  con.close()
  _write(db, [{'ID': 2, 'Score': 0.25}], table='Scores', mode=mode)
  rows = query(db, 'SELECT id, score FROM scores ORDER BY id')
  assert rows == ([(1, 0.5), (2, 0.25)] if mode == 'append' else [(2, 0.25)])


# -- the class of input: value kinds mixed across batches and commits --------

_KINDS = {
    'int': st.integers(-2**62, 2**62),
    'float': st.floats(allow_nan=False, allow_infinity=False, width=64),
    'str': st.text(max_size=5),
    'bool': st.booleans(),
    'ints': st.lists(st.integers(-99, 99), max_size=3),
}


def _fits(kind, column_kind):
  if kind == 'empty-ints':  # "NULL"[]: fits any list column
    return column_kind in ('ints', 'strs')
  return kind == column_kind or (kind, column_kind) == ('int', 'float')


def _kind_of(kind, values):
  """A batch's kind as DuckDB types it: lists that are all empty have no
  element type ("NULL"[])."""
  if kind == 'ints' and all(v == [] for v in values if v is not None):
    return 'empty-ints'
  return kind


def _first_commit(kinds: set) -> tuple:
  """(whether the first commit's batches agree, the kind it decides)."""
  typed = kinds - {'empty-ints'}
  agree = (len(typed) <= 1 or typed == {'int', 'float'}) and (
      'empty-ints' not in kinds or typed <= {'ints'})
  if typed:
    return agree, ('float' if typed == {'int', 'float'} else
                   next(iter(typed)))
  # NULL in every record: VARCHAR; lists all empty: VARCHAR[]
  return agree, 'strs' if kinds else 'str'


@st.composite
def _commits(draw):
  """1-2 commits, each of 1-3 batches; each batch one kind of value (or
  None) in column 'v'."""
  commits = []
  for _ in range(draw(st.integers(1, 2))):
    batches = []
    for _ in range(draw(st.integers(1, 3))):
      kind = draw(st.sampled_from(sorted(_KINDS)))
      values = draw(st.lists(st.one_of(st.none(), _KINDS[kind]), min_size=1,
                             max_size=3))
      batches.append((kind, values))
    commits.append(batches)
  return commits


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(commits=_commits())
def test_property_values_keep_their_kind_or_the_column_is_named(
    tmp_path_factory, commits):
  from runinference.io._duckdb_write import (CommitStaged, StageBatches,
                                             WriteSpec)
  folder = tmp_path_factory.mktemp('w')
  db = str(folder / 'w.duckdb')
  spec = WriteSpec(db, 't', str(folder / 'staging'))
  stage = StageBatches(spec.staging_dir, 100)
  column_kind = None   # decided by the first commit
  written = []
  con = duckdb.connect(db)
  try:
    for batches in commits:
      paths = [stage._flush([{'v': v} for v in values])
               for _, values in batches]
      kinds = {_kind_of(k, values) for k, values in batches
               if any(v is not None for v in values)}
      if column_kind is None:
        ok, decided = _first_commit(kinds)
      else:
        ok = all(_fits(k, column_kind) for k in kinds)
        decided = column_kind
      con.execute('BEGIN TRANSACTION')
      try:
        CommitStaged(spec)._insert(con, paths)
        con.execute('COMMIT')
      except DuckDBSchemaError as e:
        con.execute('ROLLBACK')
        assert not ok, e
        assert "'v'" in str(e)
        continue
      assert ok, (batches, column_kind)
      column_kind = column_kind or decided
      written += [v for _, values in batches for v in values]
    got = [r[0] for r in con.execute('SELECT v FROM t').fetchall()] if (
        written) else []
  finally:
    con.close()
  assert len(got) == len(written)
  for want, have in zip(sorted(written, key=repr), sorted(got, key=repr)):
    if want is None or have is None:
      continue
    if isinstance(want, (int, float)) and not isinstance(want, bool):
      assert not isinstance(have, str)
    else:
      assert type(have) is type(want)
