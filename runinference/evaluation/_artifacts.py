"""Evaluation artifacts: JSON (always), DuckDB tables (when asked) and the
HTML page, from the records ``EvaluateModel`` outputs."""
from __future__ import annotations

import json
import math
import os
from typing import Optional, Sequence

import apache_beam as beam

from ..exceptions import MissingDependencyError
from ._thresholds import SliceMetrics, ValidationResult


def _clean(v):
  if isinstance(v, float):
    return None if math.isnan(v) or math.isinf(v) else v
  if isinstance(v, dict):
    return {k: _clean(x) for k, x in v.items()}
  if isinstance(v, (list, tuple)):
    return [_clean(x) for x in v]
  return v


def _sorted(records: Sequence[SliceMetrics]) -> list:
  return sorted(records, key=lambda r: (r.model, len(r.slice), str(r.slice)))


def evaluation_dict(records: Sequence[SliceMetrics],
                    validation: Optional[ValidationResult]) -> dict:
  return _clean({
      'metrics': [r.to_dict() for r in _sorted(records)],
      'validation': None if validation is None else validation.to_dict()})


def write_json(records: Sequence[SliceMetrics],
               validation: Optional[ValidationResult], path: str) -> str:
  """Writes the metrics and validation result to ``path`` (NaN as null)."""
  tmp = f'{path}.tmp'
  with open(tmp, 'w', encoding='utf-8') as f:
    json.dump(evaluation_dict(records, validation), f, indent=1,
              allow_nan=False)
  os.replace(tmp, path)
  return path


def write_duckdb(records: Sequence[SliceMetrics],
                 validation: Optional[ValidationResult], path: str) -> str:
  """Writes tables ``metrics`` (model, slice, metric, value, lower, upper;
  scalar metrics), ``plots`` (model, slice, metric, JSON value) and
  ``validation`` (blessed, failed threshold messages) to the DuckDB file
  ``path``, replacing tables of those names."""
  try:
    import duckdb
  except ImportError as exc:
    raise MissingDependencyError(
        'Writing evaluation results to DuckDB needs `pip install duckdb`.'
    ) from exc
  rows, plots = [], []
  for r in _sorted(records):
    for name, value in r.metrics.items():
      ci = r.intervals.get(name, {})
      if isinstance(value, (int, float)):
        rows.append((r.model, r.slice_name, name, _clean(float(value)),
                     ci.get('lower'), ci.get('upper')))
      else:
        plots.append((r.model, r.slice_name, name,
                      json.dumps(_clean(value))))
  con = duckdb.connect(path)
  try:
    con.execute('CREATE OR REPLACE TABLE metrics (model VARCHAR, slice '
                'VARCHAR, metric VARCHAR, value DOUBLE, lower DOUBLE, upper '
                'DOUBLE)')
    con.execute('CREATE OR REPLACE TABLE plots (model VARCHAR, slice '
                'VARCHAR, metric VARCHAR, value VARCHAR)')
    con.execute('CREATE OR REPLACE TABLE validation (blessed BOOLEAN, '
                'checked INTEGER, failures VARCHAR[])')
    if rows:
      con.executemany('INSERT INTO metrics VALUES (?, ?, ?, ?, ?, ?)', rows)
    if plots:
      con.executemany('INSERT INTO plots VALUES (?, ?, ?, ?)', plots)
    if validation is not None:
      con.execute('INSERT INTO validation VALUES (?, ?, ?)',
                  [validation.blessed, validation.checked,
                   [str(f) for f in validation.failures]])
  finally:
    con.close()
  return path


def write_all(records, validation, out_dir: str, html: bool = True,
              duckdb_file: Optional[str] = None) -> dict:
  """``evaluation.json`` (and ``evaluation.html``, the DuckDB file) in
  ``out_dir``; returns ``{kind: path}``."""
  os.makedirs(out_dir, exist_ok=True)
  out = {'json': write_json(records, validation,
                            os.path.join(out_dir, 'evaluation.json'))}
  if html:
    from ._html import write_html
    out['html'] = write_html(records, validation,
                             os.path.join(out_dir, 'evaluation.html'))
  if duckdb_file:
    out['duckdb'] = write_duckdb(records, validation, duckdb_file)
  return out


class WriteEvaluation(beam.PTransform):
  """Writes ``EvaluateModel``'s output (its dict of PCollections) to
  ``out_dir``: ``evaluation.json``, ``evaluation.html`` (``html=False`` to
  skip) and, with ``duckdb_file``, DuckDB tables. Outputs the paths
  written."""
  def __init__(self, out_dir: str, html: bool = True,
               duckdb_file: Optional[str] = None):
    super().__init__()
    self._out_dir, self._html, self._duckdb = out_dir, html, duckdb_file

  def expand(self, evaluation):
    out_dir, html, db = self._out_dir, self._html, self._duckdb
    records = evaluation['metrics'] | 'AllMetrics' >> beam.combiners.ToList()
    return (
        evaluation['validation']
        | 'Write' >> beam.Map(
            lambda v, rs: write_all(rs, v, out_dir, html, db),
            beam.pvalue.AsSingleton(records)))
