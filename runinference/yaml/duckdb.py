"""The DuckDB transforms of ``runinference.io.duckdb`` for Beam YAML, where
reads give rows with a schema (``output: row``) by default."""
from __future__ import annotations

from typing import Any


def ReadFromDuckDB(database: str, query: str, output: str = 'row',  # pylint: disable=invalid-name
                   **options: Any):
  """Reads the rows of ``query`` from the DuckDB file ``database``; see
  ``runinference.io.duckdb.ReadFromDuckDB`` for ``options``."""
  from runinference.io.duckdb import ReadFromDuckDB as _Read
  return _Read(database, query, output=output, **options)


def WriteToDuckDB(database: str, table: str, **options: Any):  # pylint: disable=invalid-name
  """Writes rows into ``table`` of the DuckDB file ``database``; see
  ``runinference.io.duckdb.WriteToDuckDB`` for ``options``."""
  from runinference.io.duckdb import WriteToDuckDB as _Write
  return _Write(database, table, **options)
