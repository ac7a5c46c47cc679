"""Arrow batches read from DuckDB -> the elements ReadFromDuckDB yields:
dicts, schema'd ``beam.Row``s (what Beam YAML and SQL need) or the
``pyarrow.RecordBatch`` itself (for ``RunInferenceColumnar``)."""
from __future__ import annotations

import dataclasses
import decimal
from typing import Any, Callable, Mapping, Optional, Sequence

import apache_beam as beam
from apache_beam.typehints.row_type import RowTypeConstraint
from apache_beam.utils.timestamp import Timestamp

from runinference.exceptions import ConfigurationError, ConfigurationTypeError

OUTPUTS = ('dict', 'row', 'arrow')


def _same(value):
  return value


@dataclasses.dataclass(frozen=True)
class _Field:
  hint: Any
  convert: Callable[[Any], Any]


def _field(kind, path: str) -> _Field:
  """The Beam schema type of an Arrow type and how to convert its values."""
  import pyarrow as pa
  t = pa.types
  if t.is_boolean(kind):
    return _Field(bool, _same)
  if t.is_integer(kind):
    return _Field(int, _same)
  if t.is_floating(kind):
    return _Field(float, _same)
  if t.is_string(kind) or t.is_large_string(kind) or t.is_null(kind):
    return _Field(str, _same)
  if t.is_binary(kind) or t.is_large_binary(kind):
    return _Field(bytes, _same)
  if t.is_decimal(kind):
    return _Field(decimal.Decimal, _same)
  if t.is_timestamp(kind):
    return _Field(Timestamp, Timestamp.from_utc_datetime if kind.tz else
                  _naive_timestamp)
  if t.is_list(kind) or t.is_large_list(kind) or t.is_fixed_size_list(kind):
    item = _field(kind.value_type, path + '[]')
    return _Field(Sequence[Optional[item.hint]],
                  lambda v: None if v is None else [_opt(item.convert, x)
                                                    for x in v])
  if t.is_map(kind):
    key = _field(kind.key_type, path + '.key')
    value = _field(kind.item_type, path + '.value')
    return _Field(Mapping[key.hint, Optional[value.hint]],
                  lambda v: None if v is None else {
                      key.convert(k): _opt(value.convert, x) for k, x in v})
  if t.is_struct(kind):
    fields = [(kind.field(i).name, _field(kind.field(i).type,
                                          f'{path}.{kind.field(i).name}'))
              for i in range(kind.num_fields)]
    hint = RowTypeConstraint.from_fields([(n, Optional[f.hint])
                                          for n, f in fields])

    def to_row(v):
      if v is None:
        return None
      return beam.Row(**{n: _opt(f.convert, v.get(n)) for n, f in fields})

    return _Field(hint, to_row)
  raise ConfigurationTypeError(
      f"ReadFromDuckDB(output='row'): column {path!r} has type {kind}, which "
      'has no Beam schema type here; cast it in the query (e.g. '
      f'CAST({path.split(".")[0]} AS VARCHAR)) or use output=\'dict\'')


def _opt(convert, value):
  return None if value is None else convert(value)


def _naive_timestamp(value):
  import datetime
  return Timestamp.from_utc_datetime(
      value.replace(tzinfo=datetime.timezone.utc))


class RowConverter:
  """Turns one Arrow RecordBatch into output elements."""
  def __init__(self, schema, output: str):
    if output not in OUTPUTS:
      raise ConfigurationError(
          f'ReadFromDuckDB: output must be one of {OUTPUTS}, got {output!r}')
    self.output = output
    self._fields = None
    self.row_type = None
    if output == 'row':
      self._fields = [(f.name, _field(f.type, f.name)) for f in schema]
      self.row_type = RowTypeConstraint.from_fields([
          (name, Optional[f.hint]) for name, f in self._fields])

  def element_type(self):
    import pyarrow as pa
    return {'dict': dict, 'row': self.row_type,
            'arrow': pa.RecordBatch}[self.output]

  def convert(self, batch):
    if self.output == 'arrow':
      if batch.num_rows:
        yield batch
      return
    rows = batch.to_pylist()
    if self.output == 'dict':
      yield from rows
      return
    for row in rows:
      yield beam.Row(**{name: _opt(f.convert, row[name])
                        for name, f in self._fields})
