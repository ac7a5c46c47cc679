"""What the DuckDB reader and writer share: the lazy import, connections,
identifier quoting and the errors."""
from __future__ import annotations

import os
import time
from typing import Any

from runinference.exceptions import (  # noqa: F401  (errors re-exported)
    ConfigurationError, ConfigurationTypeError, DuckDBDatabaseNotFoundError,
    DuckDBLockTimeoutError, DuckDBQueryError, DuckDBSchemaError,
    MissingDependencyError, RunInferenceError)


def import_duckdb():
  try:
    import duckdb
  except ImportError as e:
    raise MissingDependencyError(
        'The DuckDB transforms need the duckdb package: '
        "pip install 'runinference[duckdb]'") from e
  return duckdb


def check_database_path(database: Any, what: str) -> str:
  if not isinstance(database, (str, os.PathLike)) or not str(database):
    raise ConfigurationTypeError(
        f'{what}: database must be a path to a DuckDB file, got '
        f'{database!r}')
  database = os.fspath(database)
  if database == ':memory:':
    raise ConfigurationError(
        f'{what}: an in-memory database is private to one connection, so '
        'pipeline workers cannot share it; give a file path')
  return database


def connect_read_only(database: str):
  """A read-only connection; a clear error if the file does not exist."""
  duckdb = import_duckdb()
  if not os.path.exists(database):
    raise DuckDBDatabaseNotFoundError(
        f'DuckDB database {database!r} does not exist. ReadFromDuckDB opens '
        'databases read-only and never creates one: check the path.')
  return duckdb.connect(database, read_only=True)


def connect_writable(database: str, lock_timeout_s: float):
  """A read-write connection; waits up to ``lock_timeout_s`` while another
  process holds the file's write lock."""
  duckdb = import_duckdb()
  directory = os.path.dirname(os.path.abspath(database))
  if not os.path.isdir(directory):
    raise ConfigurationError(
        f'WriteToDuckDB: the directory of database {database!r} does not '
        'exist; create it first')
  deadline = time.monotonic() + lock_timeout_s
  delay = 0.05
  while True:
    try:
      return duckdb.connect(database)
    except duckdb.IOException as e:
      if 'lock' not in str(e).lower() or time.monotonic() > deadline:
        raise DuckDBLockTimeoutError(
            f'WriteToDuckDB could not open {database!r} for writing within '
            f'{lock_timeout_s:g}s: {e}. A DuckDB file takes one writing '
            'process at a time; close other connections to it.') from e
      time.sleep(delay)
      delay = min(delay * 2, 1.0)


def run_query(con, sql: str, what: str, shown: str = '',
              params: tuple = ()):
  """Runs ``sql`` (with ``params`` bound to its ``?``s); DuckDB's own errors
  come back naming the query."""
  duckdb = import_duckdb()
  try:
    return con.sql(sql, params=list(params)) if params else con.sql(sql)
  except (duckdb.ParserException, duckdb.BinderException,
          duckdb.CatalogException) as e:
    raise DuckDBQueryError(
        f'{what}: DuckDB rejected the query {shown or sql!r}: {e}') from e


def arrow_reader(relation, rows_per_batch: int):
  """A pyarrow RecordBatchReader over a relation (duckdb 1.x and 2.x)."""
  if hasattr(relation, 'to_arrow_reader'):
    return relation.to_arrow_reader(rows_per_batch)
  return relation.fetch_arrow_reader(rows_per_batch)


def quote_identifier(name: str) -> str:
  return '"' + name.replace('"', '""') + '"'


def quote_table(table: Any) -> str:
  """``name`` or ``schema.name``, each part quoted."""
  if not isinstance(table, str) or not table.strip():
    raise ConfigurationTypeError(
        f'WriteToDuckDB: table must be a table name, got {table!r}')
  parts = table.split('.')
  if len(parts) > 2 or not all(p.strip() for p in parts):
    raise ConfigurationError(
        f'WriteToDuckDB: table {table!r} is not a name or schema.name')
  return '.'.join(quote_identifier(p.strip()) for p in parts)


def quote_literal(value: str) -> str:
  return "'" + value.replace("'", "''") + "'"


def clean_query(query: Any) -> str:
  if not isinstance(query, str) or not query.strip():
    raise ConfigurationTypeError(
        f'ReadFromDuckDB: query must be SQL text, got {query!r}')
  return query.strip().rstrip(';').strip()
