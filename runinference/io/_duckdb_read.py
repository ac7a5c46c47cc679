"""Reading a DuckDB query in splits: a plan made when the pipeline runs
(count rows, cut ranges), then one read-only connection per split."""
from __future__ import annotations

import dataclasses
import decimal
import math
from typing import Any, Optional

import apache_beam as beam

from runinference.exceptions import ConfigurationError

from ._duckdb_common import (arrow_reader, connect_read_only, quote_identifier,
                             run_query)
from ._duckdb_rows import RowConverter

_WHAT = 'ReadFromDuckDB'


@dataclasses.dataclass(frozen=True)
class ReadSplit:
  """One part of the query's rows: its own SQL over the user's query."""
  index: int
  sql: str
  params: tuple = ()


@dataclasses.dataclass(frozen=True)
class ReadPlan:
  """How to cut ``query`` into splits."""
  database: str
  query: str
  partition_column: Optional[str] = None
  order_by: str = 'ALL'
  num_splits: Optional[int] = None
  rows_per_split: int = 100_000

  def _count(self, n: int) -> int:
    if self.num_splits is not None:
      return max(1, min(self.num_splits, n))
    return max(1, math.ceil(n / self.rows_per_split))

  def splits(self, con) -> list[ReadSplit]:
    if self.partition_column is not None:
      return self._range_splits(con)
    n = self._scalar(con, f'SELECT count(*) FROM ({self.query})')
    if not n:
      return []
    k = self._count(n)
    per = math.ceil(n / k)
    return [
        ReadSplit(i, f'SELECT * FROM ({self.query}) ORDER BY {self.order_by} '
                  f'LIMIT {per} OFFSET {i * per}')
        for i in range(math.ceil(n / per))
    ]

  def _range_splits(self, con) -> list[ReadSplit]:
    # Bounds come from the finite values only (NaN and +-inf have no place
    # on a range), and every value goes into the SQL as a bound parameter,
    # never as text. The first split is open below (-inf, and NULL), the
    # last open above (+inf, and NaN: DuckDB orders NaN above every
    # number), so each row falls in exactly one split.
    col = quote_identifier(self.partition_column)
    lo, hi, n = run_query(
        con, f'SELECT min({col}), max({col}), count(*) FROM ({self.query})',
        _WHAT).fetchall()[0]
    base = f'SELECT * FROM ({self.query})'
    if not n or lo is None:  # no rows, or every value is NULL
      return [ReadSplit(0, base)] if n else []
    if not all(isinstance(v, (int, float, decimal.Decimal)) for v in (lo, hi)):
      raise ConfigurationError(
          f'{_WHAT}: partition_column {self.partition_column!r} holds '
          f'{type(lo).__name__} values; give a numeric column')
    if isinstance(lo, float) and not (math.isfinite(lo) and
                                      math.isfinite(hi)):
      lo, hi = run_query(
          con, f'SELECT min({col}), max({col}) FROM ({self.query}) '
          f'WHERE isfinite({col})', _WHAT).fetchall()[0]
      if lo is None:  # no finite value: only NaN, +-inf (and NULL)
        return [ReadSplit(0, base)]
    k = self._count(n)
    if isinstance(lo, int) and isinstance(hi, int):
      k = min(k, hi - lo + 1)
      bounds = [lo + (hi - lo + 1) * i // k for i in range(1, k)]
    else:
      lo, hi = float(lo), float(hi)
      bounds = sorted({lo * (1 - i / k) + hi * (i / k) for i in range(1, k)}
                      - {lo}) if hi > lo else []
    if not bounds:
      return [ReadSplit(0, base)]
    splits = [ReadSplit(0, base + f' WHERE {col} < ? OR {col} IS NULL',
                        (bounds[0],))]
    for i in range(1, len(bounds)):
      splits.append(ReadSplit(i, base + f' WHERE {col} >= ? AND {col} < ?',
                              (bounds[i - 1], bounds[i])))
    splits.append(ReadSplit(len(bounds), base + f' WHERE {col} >= ?',
                            (bounds[-1],)))
    return splits

  def _scalar(self, con, sql: str) -> Any:
    return run_query(con, sql, _WHAT, self.query).fetchall()[0][0]


class PlanSplits(beam.DoFn):
  """Impulse -> the splits of the query, planned against the file as it is
  when the pipeline runs."""
  def __init__(self, plan: ReadPlan):
    self._plan = plan

  def process(self, unused_impulse):
    con = connect_read_only(self._plan.database)
    try:
      yield from self._plan.splits(con)
    finally:
      con.close()


class ReadSplits(beam.DoFn):
  """ReadSplit -> its rows (dicts, beam.Rows or Arrow RecordBatches)."""
  def __init__(self, database: str, converter: RowConverter,
               rows_per_batch: int):
    self._database = database
    self._converter = converter
    self._rows_per_batch = rows_per_batch

  def process(self, split: ReadSplit):
    con = connect_read_only(self._database)
    try:
      relation = run_query(con, split.sql, _WHAT, params=split.params)
      for batch in arrow_reader(relation, self._rows_per_batch):
        yield from self._converter.convert(batch)
    finally:
      con.close()


def query_schema(database: str, query: str):
  """The Arrow schema of ``query``'s result; checks the file and the SQL."""
  con = connect_read_only(database)
  try:
    relation = run_query(con, f'SELECT * FROM ({query}) LIMIT 0', _WHAT, query)
    schema = arrow_reader(relation, 1).schema
  finally:
    con.close()
  return schema


def check_partition_column(schema, column: str) -> None:
  import pyarrow as pa
  if column not in schema.names:
    raise ConfigurationError(
        f'{_WHAT}: partition_column {column!r} is not a column of the query; '
        f'its columns are {schema.names}')
  kind = schema.field(column).type
  if not (pa.types.is_integer(kind) or pa.types.is_floating(kind) or
          pa.types.is_decimal(kind)):
    raise ConfigurationError(
        f'{_WHAT}: partition_column {column!r} is {kind}; give a numeric '
        'column, or leave partition_column unset to split by row ranges')
