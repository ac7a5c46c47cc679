"""Writing to DuckDB in two phases, like Beam's file sinks.

Stage: every bundle, in parallel, turns its records into Arrow tables of up
to ``batch_size`` rows and writes each to a Parquet file in a staging
directory (no database lock needed). Commit: the staged paths of a window are
grouped under one key, and one DoFn inserts them all with a single
``INSERT ... SELECT FROM read_parquet(...)`` inside one transaction.

Why: a DuckDB file takes one writing process at a time, so parallel workers
cannot insert themselves; a single keyed commit serialises the writes, and
the transaction makes the window's rows appear all together or not at all
(a failed or retried commit leaves the table as it was).
"""
from __future__ import annotations

import dataclasses
import os
import shutil
import uuid
from typing import Optional

import apache_beam as beam
from apache_beam.utils.windowed_value import WindowedValue

from runinference.exceptions import ConfigurationError, ConfigurationTypeError

from ._duckdb_common import (DuckDBSchemaError, connect_writable,
                             import_duckdb, quote_identifier, quote_literal,
                             quote_table, run_query)
from ._duckdb_records import to_record
from ._duckdb_types import clash, misfit

_WHAT = 'WriteToDuckDB'
MODES = ('append', 'replace')


@dataclasses.dataclass(frozen=True)
class DuckDBWriteResult:
  """One committed transaction: how many rows went into which table."""
  database: str
  table: str
  rows: int



@dataclasses.dataclass(frozen=True)
class WriteSpec:
  database: str
  table: str
  staging_dir: str
  mode: str = 'append'
  schema: Optional[dict] = None
  lock_timeout_s: float = 60.0


class StageBatches(beam.DoFn):
  """Elements -> Parquet files of up to ``batch_size`` records, one path out
  per file (in the window of its records)."""
  def __init__(self, staging_dir: str, batch_size: int):
    self._dir = staging_dir
    self._batch_size = batch_size

  def start_bundle(self):
    self._buffers: dict = {}

  def process(self, element, window=beam.DoFn.WindowParam):
    buffer = self._buffers.setdefault(window, [])
    buffer.append(to_record(element))
    if len(buffer) >= self._batch_size:
      yield self._flush(buffer)
      buffer.clear()

  def finish_bundle(self):
    for window, buffer in self._buffers.items():
      if buffer:
        yield WindowedValue(self._flush(buffer), window.max_timestamp(),
                            [window])
    self._buffers = {}

  def _flush(self, records: list) -> str:
    import pyarrow as pa
    import pyarrow.parquet as pq
    try:
      table = pa.Table.from_pylist(records)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
      raise DuckDBSchemaError(
          f'{_WHAT}: the records of one batch do not share column types: {e}. '
          'Make every record give a column the same type.') from e
    os.makedirs(self._dir, exist_ok=True)
    path = os.path.join(self._dir, f'{uuid.uuid4().hex}.parquet')
    pq.write_table(table, path)
    return path


class CommitStaged(beam.DoFn):
  """(key, staged paths) -> one transaction that inserts them all."""
  def __init__(self, spec: WriteSpec):
    self._spec = spec

  def process(self, keyed):
    paths = sorted(set(keyed[1]))
    spec = self._spec
    con = connect_writable(spec.database, spec.lock_timeout_s)
    try:
      con.execute('BEGIN TRANSACTION')
      try:
        rows = self._insert(con, paths)
        con.execute('COMMIT')
      except BaseException:
        con.execute('ROLLBACK')
        raise
    finally:
      con.close()
    for path in paths:
      os.remove(path)
    if os.path.isdir(spec.staging_dir) and not os.listdir(spec.staging_dir):
      shutil.rmtree(spec.staging_dir, ignore_errors=True)
    yield DuckDBWriteResult(spec.database, spec.table, rows)

  def _insert(self, con, paths: list) -> int:
    spec = self._spec
    table = quote_table(spec.table)
    per_file = [_staged_types(con, [p]) for p in paths]
    source = ('read_parquet([' + ', '.join(quote_literal(p) for p in paths) +
              '], union_by_name=true)')
    existing = _table_columns(con, spec.table)
    if existing is not None and spec.mode == 'replace':
      con.execute(f'DROP TABLE {table}')
      existing = None
    if existing is None:
      _check_batches_agree(per_file, spec.table)
      run_query(con, _create_sql(table, _staged_types(con, paths, source),
                                 spec.schema or {}),
                f'{_WHAT} creating table {spec.table!r}')
      existing = _table_columns(con, spec.table)
    else:
      known = {c.lower() for c in existing}
      extra = sorted({c for types in per_file for c in types
                      if c.lower() not in known})
      if extra:
        raise DuckDBSchemaError(
            f'{_WHAT}: table {spec.table!r} in {spec.database!r} exists with '
            f'columns {list(existing)}, but the records also have {extra}. '
            "Write to a new table, use mode='replace', or map the records "
            'to the existing columns.')
    for types in per_file:
      wrong = misfit(types, existing)
      if wrong:
        column, kind, target = wrong
        raise DuckDBSchemaError(
            f'{_WHAT}: column {column!r} of table {spec.table!r} is '
            f'{target}, but a batch of records holds {kind} values in it. '
            'A table\'s column types are decided once (the declared schema, '
            'or the first records written); make every record give '
            f'{column!r} the same type.')
    try:
      return con.execute(
          f'INSERT INTO {table} BY NAME SELECT * FROM {source}').fetchone()[0]
    except import_duckdb().Error as e:
      raise DuckDBSchemaError(
          f'{_WHAT}: could not insert the records into {spec.table!r} '
          f'(columns {existing}): {e}') from e


def _staged_types(con, paths: list, source: str = '') -> dict:
  """Column -> DuckDB type of the staged Parquet file(s)."""
  source = source or f'read_parquet({quote_literal(paths[0])})'
  rows = run_query(con, f'DESCRIBE SELECT * FROM {source}', _WHAT).fetchall()
  return {row[0]: row[1] for row in rows}


def _check_batches_agree(per_file: list, table: str) -> None:
  wrong = clash(per_file)
  if wrong:
    column, kinds = wrong
    raise DuckDBSchemaError(
        f'{_WHAT}: column {column!r} of the records for table {table!r} holds '
        f'values of different types in different batches ({", ".join(kinds)}). '
        f'Make every record give {column!r} the same type, or declare it '
        "with schema={...}.")


def _table_columns(con, table: str) -> Optional[dict]:
  """Column name -> type of ``table``, or None if it does not exist (names
  compared ignoring case, as DuckDB does)."""
  parts = table.split('.')
  schema, name = (parts[0], parts[1]) if len(parts) == 2 else ('main', parts[0])
  rows = con.execute(
      'SELECT column_name, data_type FROM information_schema.columns '
      'WHERE lower(table_schema) = lower(?) AND lower(table_name) = lower(?) '
      'ORDER BY ordinal_position',
      [schema.strip(), name.strip()]).fetchall()
  return {c: t for c, t in rows} if rows else None


def _create_sql(table: str, staged: dict, schema: dict) -> str:
  # A column that was NULL in every record has no type yet: VARCHAR, unless
  # the user's schema says otherwise; so has the element of a list column
  # whose lists were all empty ("NULL"[], a type DuckDB cannot store into).
  types = {c: t.replace('"NULL"', 'VARCHAR') for c, t in staged.items()}
  types.update(schema)
  columns = ', '.join(f'{quote_identifier(c)} {t}' for c, t in types.items())
  return f'CREATE TABLE {table} ({columns})'


def check_schema(schema) -> Optional[dict]:
  if schema is None:
    return None
  if not isinstance(schema, dict) or not all(
      isinstance(k, str) and isinstance(v, str) for k, v in schema.items()):
    raise ConfigurationTypeError(
        f'{_WHAT}: schema must map column names to DuckDB types, e.g. '
        f"{{'id': 'BIGINT', 'scores': 'DOUBLE[]'}}; got {schema!r}")
  return dict(schema)


def staging_dir_for(database: str) -> str:
  base = os.path.abspath(database)
  return os.path.join(os.path.dirname(base),
                      f'.{os.path.basename(base)}.staging-{uuid.uuid4().hex}')


def global_window_only(pcoll, mode: str) -> None:
  if mode == 'replace' and not isinstance(
      pcoll.windowing.windowfn, beam.transforms.window.GlobalWindows):
    raise ConfigurationError(
        f"{_WHAT}: mode='replace' replaces the table at every commit, and "
        'windowed input commits once per window; use the global window or '
        "mode='append'")

