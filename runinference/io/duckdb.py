"""DuckDB as the embedded warehouse: read a query's rows into a pipeline,
write records (predictions included) into a table.

    from runinference.io.duckdb import ReadFromDuckDB, WriteToDuckDB

    with beam.Pipeline() as p:
      rows = p | ReadFromDuckDB('shop.duckdb', 'SELECT id, x FROM items')
      scored = rows | beam.Map(lambda r: ([r['x']], r['id'])) | ...
      _ = scored | WriteToDuckDB('shop.duckdb', 'predictions')

Reads are split for parallelism and use read-only connections; writes are
staged per bundle and committed in one transaction per window by a single
writer (see docs/duckdb.md). Needs ``pip install 'runinference[duckdb]'``.
"""
from __future__ import annotations

import os
from typing import Optional

import apache_beam as beam

from runinference._core.naming import relabel
from runinference.exceptions import ConfigurationError

from ._duckdb_common import (DuckDBDatabaseNotFoundError,
                             DuckDBLockTimeoutError, DuckDBQueryError,
                             DuckDBSchemaError, check_database_path,
                             clean_query, quote_table)
from ._duckdb_read import (PlanSplits, ReadPlan, ReadSplits,
                           check_partition_column, query_schema)
from ._duckdb_rows import OUTPUTS, RowConverter
from ._duckdb_write import (MODES, CommitStaged, DuckDBWriteResult,
                            StageBatches, WriteSpec, check_schema,
                            global_window_only, staging_dir_for)

__all__ = [
    'DuckDBDatabaseNotFoundError', 'DuckDBLockTimeoutError',
    'DuckDBQueryError', 'DuckDBSchemaError', 'DuckDBWriteResult',
    'ReadFromDuckDB', 'WriteToDuckDB'
]


def _positive_int(value, name: str, what: str) -> int:
  if isinstance(value, bool) or not isinstance(value, int) or value < 1:
    raise ConfigurationError(
        f'{what}: {name} must be a positive int, got {value!r}')
  return value


class ReadFromDuckDB(beam.PTransform):
  """Reads the rows of ``query`` from the DuckDB file ``database``.

  Args:
    database: path of an existing DuckDB file (opened read-only).
    query: a SELECT (any query DuckDB accepts as a subquery).
    output: ``'dict'`` (default), ``'row'`` (``beam.Row``s with a schema, as
      Beam YAML and SqlTransform need) or ``'arrow'`` (``pyarrow.RecordBatch``
      chunks, e.g. for ``RunInferenceColumnar``).
    partition_column: a numeric column to split on by value ranges (cheap:
      each split reads only its range). Without it, splits are row ranges of
      the result in ``order_by`` order (default ``ALL``: every column).
    num_splits / rows_per_split: how many splits (at most one per row), or
      how many rows each (default 100,000); give at most one of them.
    rows_per_batch: rows fetched from DuckDB at a time.
    validate: check the file and the query when the pipeline is built.
  """
  def __init__(self, database: str, query: str, *, output: str = 'dict',
               partition_column: Optional[str] = None, order_by: str = 'ALL',
               num_splits: Optional[int] = None,
               rows_per_split: Optional[int] = None,
               rows_per_batch: int = 10_000, validate: bool = True):
    super().__init__()
    what = 'ReadFromDuckDB'
    if num_splits is not None and rows_per_split is not None:
      raise ConfigurationError(
          f'{what}: give num_splits or rows_per_split, not both')
    if num_splits is not None:
      _positive_int(num_splits, 'num_splits', what)
    if not isinstance(order_by, str) or not order_by.strip():
      raise ConfigurationError(
          f'{what}: order_by must be SQL text, got {order_by!r}')
    self._plan = ReadPlan(
        check_database_path(database, what), clean_query(query),
        partition_column, order_by, num_splits,
        _positive_int(100_000 if rows_per_split is None else rows_per_split,
                      'rows_per_split', what))
    self._rows_per_batch = _positive_int(rows_per_batch, 'rows_per_batch', what)
    self._output = output
    self._validate = validate
    if output not in OUTPUTS:
      raise ConfigurationError(
          f'{what}: output must be one of {OUTPUTS}, got {output!r}')

  def expand(self, pbegin):
    plan = self._plan
    schema = None
    if self._validate or self._output == 'row':
      schema = query_schema(plan.database, plan.query)
      if plan.partition_column is not None:
        check_partition_column(schema, plan.partition_column)
    converter = RowConverter(schema, self._output)
    return (pbegin
            | 'Start' >> beam.Impulse()
            | 'PlanSplits' >> beam.ParDo(PlanSplits(plan))
            | 'Distribute' >> beam.Reshuffle()
            | 'ReadSplits' >> beam.ParDo(
                ReadSplits(plan.database, converter, self._rows_per_batch)
            ).with_output_types(converter.element_type()))


class WriteToDuckDB(beam.PTransform):
  """Writes records into ``table`` of the DuckDB file ``database`` (created
  with the table if missing); yields one ``DuckDBWriteResult`` per commit.

  Elements are dicts, NamedTuples such as ``PredictionResult``, ``beam.Row``s,
  dataclasses, or ``(key, one of those)`` pairs (a ``key`` column is added).
  Numpy arrays and lists become LIST columns, dicts and nested records
  STRUCT columns.

  Args:
    batch_size: records per staged Parquet file (bounds worker memory).
    mode: ``'append'`` (default) or ``'replace'`` (drop the table first, in
      the same transaction).
    schema: column -> DuckDB type for the columns of a table this creates,
      e.g. ``{'inference': 'DOUBLE[]'}`` (other columns take the records'
      types).
    staging_dir: where staged files go (default: beside the database file;
      on a distributed runner it must be visible to every worker).
    lock_timeout_s: how long a commit waits for another process's write lock.
  """
  def __init__(self, database: str, table: str, *, batch_size: int = 10_000,
               mode: str = 'append', schema: Optional[dict] = None,
               staging_dir: Optional[str] = None,
               lock_timeout_s: float = 60.0):
    super().__init__()
    what = 'WriteToDuckDB'
    database = check_database_path(database, what)
    quote_table(table)
    if mode not in MODES:
      raise ConfigurationError(
          f'{what}: mode must be one of {MODES}, got {mode!r}')
    if not isinstance(lock_timeout_s, (int, float)) or lock_timeout_s < 0:
      raise ConfigurationError(
          f'{what}: lock_timeout_s must be a number >= 0, got '
          f'{lock_timeout_s!r}')
    self._batch_size = _positive_int(batch_size, 'batch_size', what)
    self._spec = WriteSpec(
        database, table,
        os.fspath(staging_dir) if staging_dir else staging_dir_for(database),
        mode, check_schema(schema), float(lock_timeout_s))

  def expand(self, pcoll):
    global_window_only(pcoll, self._spec.mode)
    return (pcoll
            | 'StageBatches' >> beam.ParDo(
                StageBatches(self._spec.staging_dir, self._batch_size))
            | 'OneWriter' >> beam.Map(lambda path: ('', path))
            | 'GroupStaged' >> beam.GroupByKey()
            | 'Commit' >> beam.ParDo(CommitStaged(self._spec)))



relabel(globals())
