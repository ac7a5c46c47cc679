"""``RunInferenceColumnar`` for Beam YAML: a source of Arrow chunks (Parquet
files or a DuckDB query), a model run once per chunk, and a sink, with no
Python object per row on the way::

    - type: RunInferenceColumnar
      config:
        source: {parquet: 'rows-*.parquet'}        # or {duckdb: {database: db.duckdb, query: 'SELECT ...'}}
        model_handler: {type: SklearnModelHandlerNumpy, config: {model_uri: model.pkl}}
        feature_columns: [x1, x2, x3]
        output_column: prediction
        sink: {parquet: out/scored}               # one Parquet file per chunk

Without ``sink`` the scored chunks become rows with a schema (the source's
columns plus ``output_column``, typed ``output_type``) for the next YAML
step: the model still runs per chunk; rows are made after it.
"""
from __future__ import annotations

import dataclasses
import glob
import os
import uuid
from typing import Any, Optional, Sequence

import apache_beam as beam

from runinference.report import live as live_metrics

from .errors import YamlConfigError, expect_mapping, reject_unknown
from .handlers import build_handler

_NAMESPACE = 'runinference_yaml'
_TYPES = {'number': float, 'float': float, 'integer': int, 'string': str,
          'boolean': bool}


def _parse_source(source) -> tuple[str, Any]:
  source = expect_mapping(source, ['source'], 'source')
  reject_unknown(source, ('parquet', 'duckdb'), ['source'], 'source')
  if len(source) != 1:
    raise YamlConfigError(['source'], 'one of parquet: <file pattern> or '
                          'duckdb: {database: ..., query: ...}')
  kind, value = next(iter(source.items()))
  if kind == 'parquet':
    if not isinstance(value, str) or not value:
      raise YamlConfigError(['source', 'parquet'], 'a file pattern')
    return kind, value
  value = expect_mapping(value, ['source', 'duckdb'], 'source.duckdb')
  reject_unknown(value, ('database', 'query', 'rows_per_batch'),
                 ['source', 'duckdb'], 'source.duckdb')
  for field in ('database', 'query'):
    if not isinstance(value.get(field), str):
      raise YamlConfigError(['source', 'duckdb', field], 'required (a string)')
  return kind, dict(value)


def _parse_sink(sink) -> Optional[str]:
  if sink is None:
    return None
  sink = expect_mapping(sink, ['sink'], 'sink')
  reject_unknown(sink, ('parquet',), ['sink'], 'sink')
  prefix = sink.get('parquet')
  if not isinstance(prefix, str) or not prefix:
    raise YamlConfigError(['sink', 'parquet'], 'required: an output prefix')
  return prefix


@dataclasses.dataclass
class _WriteChunk:
  """Writes each scored chunk to ``<prefix>-<uuid>.parquet``; yields the
  file name."""
  prefix: str

  def __call__(self, chunk):
    import pyarrow as pa
    import pyarrow.parquet as pq
    if not isinstance(chunk, (pa.Table, pa.RecordBatch)):
      chunk = pa.Table.from_pandas(chunk, preserve_index=False)
    os.makedirs(os.path.dirname(os.path.abspath(self.prefix)), exist_ok=True)
    path = f'{self.prefix}-{uuid.uuid4().hex[:12]}.parquet'
    pq.write_table(pa.Table.from_batches([chunk]) if isinstance(
        chunk, pa.RecordBatch) else chunk, path)
    yield path


def _rows(chunk) -> int:
  return chunk.num_rows if hasattr(chunk, 'num_rows') else len(chunk)


@dataclasses.dataclass
class _Count:
  step: str
  direction: str

  def __call__(self, chunk):
    if self.direction == 'in':
      live_metrics.counter_inc(_NAMESPACE, 'rows_in', _rows(chunk))
    live_metrics.step_count(self.step, self.direction, _rows(chunk))
    return chunk


@dataclasses.dataclass
class _ToRows:
  names: Sequence[str]

  def __call__(self, chunk):
    columns = chunk.to_pydict() if hasattr(chunk, 'to_pydict') else {
        n: chunk[n].tolist() for n in chunk.columns}
    rows = len(next(iter(columns.values()))) if columns else 0
    for i in range(rows):
      yield beam.Row(**{n: columns[n][i] for n in self.names})


class RunInferenceColumnar(beam.PTransform):
  """Beam YAML ``RunInferenceColumnar``: source → chunks → model → sink.

  Args:
    source: ``{parquet: <file pattern>}`` or ``{duckdb: {database, query}}``.
    model_handler: ``{type: <handler class>, config: {...}}`` (a handler with
      a whole-matrix predictor: scikit-learn, XGBoost, ONNX, PyTorch tensor).
    feature_columns: the model's feature columns, in its order.
    output_column: name of the prediction column (default ``prediction``).
    output_type: its type when chunks become rows (``number`` default,
      ``integer``, ``string``, ``boolean``).
    sink: ``{parquet: <prefix>}``: one Parquet file per scored chunk (the
      output is then the written file names); without it, rows.
    rows_per_call: gather chunks until this many rows per model call;
      ``auto`` (default) learns it from the calls' times, ``null`` is one
      call per chunk.
  """

  _yaml_requires_inputs = False

  def __init__(self, source: Any = None, model_handler: Any = None,
               feature_columns: Any = None, output_column: str = 'prediction',
               output_type: str = 'number', sink: Any = None,
               rows_per_call: Any = 'auto', **unknown):
    super().__init__()
    reject_unknown(unknown, ('source', 'model_handler', 'feature_columns', 'output_column',
                    'output_type', 'sink', 'rows_per_call'),
                   [], 'RunInferenceColumnar config')
    if source is None:
      raise YamlConfigError(['source'], 'required field missing')
    if model_handler is None:
      raise YamlConfigError(['model_handler'], 'required field missing')
    if (not isinstance(feature_columns, list) or not feature_columns or
        not all(isinstance(c, str) for c in feature_columns)):
      raise YamlConfigError(['feature_columns'], 'required: a list of column '
                            f'names, got {feature_columns!r}')
    if not isinstance(output_column, str) or not output_column:
      raise YamlConfigError(['output_column'], 'a column name')
    if output_type not in _TYPES:
      raise YamlConfigError(['output_type'], f'one of {sorted(_TYPES)}, got '
                            f'{output_type!r}')
    if rows_per_call not in (None, 'auto') and (
        isinstance(rows_per_call, bool) or not isinstance(rows_per_call, int)
        or rows_per_call < 1):
      raise YamlConfigError(['rows_per_call'],
                            f"'auto', a positive integer or null, got "
                            f'{rows_per_call!r}')
    self._source = _parse_source(source)
    self._sink = _parse_sink(sink)
    spec = build_handler(model_handler, ['model_handler'])
    if getattr(spec.to_input, "preprocess", None) is not None or \
        spec.postprocess is not None:
      raise YamlConfigError(['model_handler', 'config'], 'preprocess and '
                            'postprocess run per row: not in the columnar '
                            'path (choose columns with feature_columns)')
    self._handler = spec.handler
    self._features = list(feature_columns)
    self._output = output_column
    self._type = _TYPES[output_type]
    self._rows_per_call = rows_per_call

  def _read(self, root):
    kind, value = self._source
    if kind == 'parquet':
      if not glob.glob(value) and '://' not in value:
        raise YamlConfigError(['source', 'parquet'],
                              f'no file matches {value!r}')
      return root | 'ReadParquet' >> beam.io.ReadFromParquetBatched(value)
    from runinference.io.duckdb import ReadFromDuckDB
    return root | 'ReadDuckDB' >> ReadFromDuckDB(
        value['database'], value['query'], output='arrow',
        **({'rows_per_batch': value['rows_per_batch']}
           if 'rows_per_batch' in value else {}))

  def _row_type(self):
    """Source columns + the output column, read from the source's schema."""
    from apache_beam.typehints.row_type import RowTypeConstraint
    kind, value = self._source
    if kind == 'parquet':
      import pyarrow.parquet as pq
      schema = pq.read_schema(sorted(glob.glob(value))[0])
    else:
      import duckdb
      with duckdb.connect(value['database'], read_only=True) as con:
        result = con.sql(f'SELECT * FROM ({value["query"]}) LIMIT 0')
        fetch = getattr(result, 'to_arrow_table', None) or getattr(
            result, 'arrow')
        schema = fetch().schema
    fields = [(f.name, _python_type(f.type)) for f in schema]
    return RowTypeConstraint.from_fields(
        [*fields, (self._output, self._type)])

  def expand(self, pbegin):
    from runinference.columnar import RunInferenceColumnar as _Columnar
    chunks = self._read(pbegin) | 'CountIn' >> beam.Map(
        _Count(self.label, 'in'))
    scored = chunks | 'RunInferenceColumnar' >> _Columnar(
        self._handler, self._features, self._output,
        rows_per_call=self._rows_per_call) | 'CountOut' >> beam.Map(
            _Count(self.label, 'out'))
    if self._sink is not None:
      return scored | 'WriteParquet' >> beam.FlatMap(
          _WriteChunk(self._sink)).with_output_types(str)
    row_type = self._row_type()
    names = [n for n, _ in row_type._fields]
    return scored | 'ToRows' >> beam.FlatMap(_ToRows(names)).with_output_types(
        row_type)


def _python_type(arrow_type) -> type:
  import pyarrow as pa
  if pa.types.is_integer(arrow_type):
    return int
  if pa.types.is_floating(arrow_type):
    return float
  if pa.types.is_boolean(arrow_type):
    return bool
  if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
    return str
  return Any

