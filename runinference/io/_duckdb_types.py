"""Whether the column types of staged records fit a table's columns.

The schema of a table WriteToDuckDB writes is decided once: declared, or
taken from the first commit's records. Later records must fit it: the same
kind of value (an int where an int or a float is, a string where a string
is), a column that was NULL in every record fits anything. DuckDB itself
would cast ``'7'`` into a BIGINT column, or widen a column that is ``1`` in
one batch and ``'a'`` in another to VARCHAR, without a word: these checks
turn that into an error naming the column.
"""
from __future__ import annotations

import re
from typing import Optional

_INT = 'INT#'
_FLOAT = 'FLOAT#'
_RULES = (
    (re.compile(r'\bDECIMAL\(\d+,\s*\d+\)'), _FLOAT),
    (re.compile(r'\b(?:FLOAT|DOUBLE|REAL)\b'), _FLOAT),
    (re.compile(r'\bU?(?:TINYINT|SMALLINT|INTEGER|BIGINT|HUGEINT)\b'), _INT),
    (re.compile(r'\bTIMESTAMP(?:_NS|_MS|_S| WITH TIME ZONE)?\b'), 'TS#'),
)
_NULL = '"NULL"'  # DuckDB's type of a column NULL in every record


def _kind(duckdb_type: str) -> str:
  for pattern, kind in _RULES:
    duckdb_type = pattern.sub(kind, duckdb_type)
  return duckdb_type


def fits(staged: str, target: str) -> bool:
  """Whether values of DuckDB type ``staged`` fit a column of ``target``
  without changing kind (ints widen to floats; NULL fits anything)."""
  pattern = re.escape(_kind(staged)).replace(re.escape(_NULL), '.+?')
  pattern = pattern.replace(re.escape(_INT), f'(?:{_INT}|{_FLOAT})')
  return re.fullmatch(pattern, _kind(target)) is not None


def clash(staged: list) -> Optional[tuple]:
  """``staged`` is one {column: type} per staged file; the first column whose
  types do not fit each other, as (column, types), or None."""
  seen: dict = {}
  for types in staged:
    for column, kind in types.items():
      seen.setdefault(column.lower(), (column, []))[1].append(kind)
  for column, kinds in seen.values():
    kinds = sorted(set(kinds))
    for i, a in enumerate(kinds):
      for b in kinds[i + 1:]:
        if not (fits(a, b) or fits(b, a)):
          return column, kinds
  return None


def misfit(staged: dict, table: dict) -> Optional[tuple]:
  """The first column of ``staged`` whose type does not fit the ``table``'s
  column of that name (names compared as DuckDB does, ignoring case), as
  (column, staged type, table type), or None."""
  columns = {c.lower(): t for c, t in table.items()}
  for column, kind in staged.items():
    target = columns.get(column.lower())
    if target is not None and not fits(kind, target):
      return column, kind, target
  return None
