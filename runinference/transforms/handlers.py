"""``TFTProcessHandler``: runs a list of ``tft`` column transforms over a
PCollection, import-compatible with ``apache_beam.ml.transforms.handlers``.

The transforms are split into stages: a stage ends where a transform needs
statistics of a column an earlier transform of the stage has rewritten (e.g.
``ComputeAndApplyVocabulary`` then ``TFIDF`` on the same column). Per stage,
write mode computes the statistics with Beam combiners (``_stats``), writes
them (``_artifacts``) and applies the transforms with them as a side input;
read mode loads them from the artifact directory instead.
"""
from __future__ import annotations

import os
import traceback
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Optional, Union

import apache_beam as beam
import numpy as np
from apache_beam.typehints import native_type_compatibility
from apache_beam.typehints.row_type import RowTypeConstraint
from apache_beam.utils.windowed_value import WindowedValue

from . import _artifacts
from ._stats import ComputeStats, column_value
from .base import ArtifactMode, ProcessHandler
from .tft import _EXPECTED_TYPES, TFIDF, ComputeAndApplyVocabulary, TFTOperation

__all__ = ['TFTProcessHandler']

RAW_DATA_METADATA_DIR = 'raw_data_metadata'
SCHEMA_FILE = 'schema.json'
_primitive_types_to_typing_container_type = {
    int: list[int], float: list[float], str: list[str], bytes: list[bytes]
}
# Output element type of each column kind.
_SEQUENCE_TYPES = {
    'float32': Sequence[np.float32],
    'int64': Sequence[np.int64],
    'bytes': Sequence[bytes],
}


@dataclass
class _Stage:
  ops: list  # (index, op)

  @property
  def analyzers(self):
    return [a for i, op in self.ops for a in op._analyzers(i)]


def _plan(transforms: list) -> list[_Stage]:
  stages, dirty = [_Stage([])], set()
  for i, op in enumerate(transforms):
    if op._analyzers(i) and dirty & set(op.columns):
      stages.append(_Stage([]))
      dirty = set()
    stages[-1].ops.append((i, op))
    dirty |= set(op.columns)
  return [s for s in stages if s.ops]


def _to_dict(element) -> dict:
  if isinstance(element, dict):
    return dict(element)
  if hasattr(element, '_asdict'):
    return dict(element._asdict())
  raise TypeError(
      'MLTransform needs dicts, beam.Row or NamedTuples as elements, got '
      f'{type(element).__name__}.')


def _kind_of(typ) -> Optional[str]:
  """'float32' / 'int64' / 'bytes' for a column's declared type."""
  typ = native_type_compatibility.convert_builtin_to_typing(typ)
  if typing.get_origin(typ) in (list, Sequence, typing.Sequence,
                                typing.List) and typing.get_args(typ):
    typ = typing.get_args(typ)[0]
  if isinstance(typ, np.dtype):
    typ = typ.type
  if isinstance(typ, type):
    if issubclass(typ, (float, np.floating)):
      return 'float32'
    if issubclass(typ, (int, np.integer)):
      return 'int64'
    if issubclass(typ, (str, bytes, np.str_, np.bytes_)):
      return 'bytes'
  return None


def _as_kind(value, kind: str) -> np.ndarray:
  if kind == 'bytes':
    items = value if isinstance(value, (list, tuple, np.ndarray)) else [value]
    return np.asarray([
        v.encode('utf-8') if isinstance(v, str) else v for v in items
    ], dtype=object)
  arr = np.asarray(value if isinstance(value, (list, tuple, np.ndarray)) else [value])
  return arr.astype(np.float32 if kind == 'float32' else np.int64).reshape(-1)


_BATCH_ROWS = 512


class _ApplyStage(beam.DoFn):
  """Applies one stage's transforms to rows, a few hundred at a time (each
  row keeps its own timestamp and window); a row a transform fails on goes
  to 'bad' when exception handling is on."""
  def __init__(self, ops, final: bool, schema_kinds: Optional[dict],
               catch, stats_dir: Optional[str], stage: int):
    self._ops = ops
    self._final = final
    self._schema_kinds = schema_kinds
    self._catch = catch
    self._stats_dir = stats_dir
    self._stage = stage
    self._stats_id = None
    self._ready = None

  def setup(self):
    if self._stats_dir is not None:  # read mode: statistics from the files
      needs = any(op._analyzers(i) for i, op in self._ops)
      stats = _artifacts.read_stage(self._stats_dir, self._stage) if needs else {}
      self._ready = self._prepare(stats)

  def _prepare(self, stats):
    return {i: op._ready(stats, i) for i, op in self._ops}

  def start_bundle(self):
    self._buf = []

  def process(self, element, ts=beam.DoFn.TimestampParam,
              win=beam.DoFn.WindowParam, stats=None):
    if stats is not None and id(stats) != self._stats_id:
      self._ready, self._stats_id = self._prepare(stats), id(stats)
    elif self._ready is None:
      self._ready = self._prepare({})
    self._buf.append((element, ts, win))
    if len(self._buf) >= _BATCH_ROWS:
      yield from self._flush()

  def finish_bundle(self):
    yield from self._flush()

  def _flush(self):
    buf, self._buf = self._buf, []
    if not buf:
      return
    rows = [_to_dict(e) for e, _, _ in buf]
    failed = [None] * len(rows)
    for i, op in self._ops:
      name = type(op).__name__
      for col in op.columns:
        live = [j for j in range(len(rows)) if failed[j] is None]
        batch = None
        if all(col in rows[j] for j in live):
          try:
            batch = op._apply_batch([rows[j][col] for j in live], col,
                                    self._ready[i], i)
          except Exception:  # pylint: disable=broad-except
            batch = None  # the per-row path finds the bad rows
        if batch is not None:
          for j, out in zip(live, batch):
            rows[j].update(out)
          continue
        for j in live:
          try:
            value = column_value(rows[j], col, name)
            rows[j].update(op._apply(value, col, self._ready[i], i))
          except Exception as e:  # pylint: disable=broad-except
            if self._catch is None or not isinstance(e, self._catch):
              raise
            failed[j] = (e, name)
    for (element, ts, win), row, fail in zip(buf, rows, failed):
      if fail is not None:
        e, name = fail
        yield beam.pvalue.TaggedOutput('bad', WindowedValue(beam.Row(
            element=element, msg=f'{type(e).__name__}: {e}',
            stack=''.join(traceback.format_exception(e)),
            transform_name=name), ts, (win, )))
      else:
        yield WindowedValue(self._finish(row), ts, (win, ))

  def _finish(self, row):
    if not self._final:
      return row
    if self._schema_kinds:
      for col, kind in self._schema_kinds.items():
        if col in row and not isinstance(row[col], np.ndarray) and kind:
          row[col] = _as_kind(row[col], kind)
    return beam.Row(**row)


class TFTProcessHandler(ProcessHandler):
  """Runs column transforms (``tft``) in write mode (``artifact_mode=
  'produce'``: statistics computed and written to ``artifact_location``) or
  read mode (``'consume'``: statistics and transforms read from there)."""
  def __init__(
      self,
      *,
      artifact_location: str,
      transforms: Optional[Sequence[TFTOperation]] = None,
      artifact_mode: str = ArtifactMode.PRODUCE):
    super().__init__()
    self.transforms = list(transforms) if transforms else []
    self.transformed_schema: dict[str, type] = {}
    self.artifact_location = artifact_location
    self.artifact_mode = artifact_mode
    if artifact_mode not in ['produce', 'consume']:
      raise ValueError('artifact_mode must be either `produce` or `consume`.')
    self._catch = None

  def append_transform(self, transform):
    self.transforms.append(transform)

  def to_json(self, parent: str) -> dict:
    """This handler's entry in the MLTransform's ``attributes.json``."""
    return {
        'kind': 'tft',
        'dir': os.path.relpath(self.artifact_location, parent),
        'transforms': [t.to_json() for t in self.transforms],
    }

  def with_exception_handling(self, *, exc_class=Exception,
                              use_subprocess=False, threshold=1):
    """Returns ``(good, bad)``: rows a transform fails on go to ``bad`` as
    ``beam.Row(element, msg, stack, transform_name)`` (and are left out of
    the statistics)."""
    if use_subprocess:
      raise NotImplementedError(
          'use_subprocess is not supported by MLTransform column transforms.')
    if threshold != 1:
      raise NotImplementedError(
          'threshold is not supported by MLTransform column transforms; '
          'count the dead letters downstream instead.')
    self._catch = exc_class
    return self

  def process_data_fn(self, inputs: dict) -> dict:
    """Applies the transforms in order to one dict of column values."""
    outputs = dict(inputs)
    for transform in self.transforms:
      for col in transform.columns:
        outputs.update(transform(outputs[col], output_column_name=col))
    return outputs

  def _map_column_names_to_types(self, row_type):
    try:
      if not isinstance(row_type, RowTypeConstraint):
        row_type = RowTypeConstraint.from_user_type(row_type)
      inferred = {name: typ for name, typ in row_type._fields}
      for k, t in inferred.items():
        if t in _primitive_types_to_typing_container_type:
          inferred[k] = _primitive_types_to_typing_container_type[t]
        elif isinstance(t, np.dtype):
          inferred[k] = t.type
      return inferred
    except Exception:  # pylint: disable=broad-except
      return {}

  def _map_column_names_to_types_from_transforms(self):
    mapping = {}
    for transform in self.transforms:
      name = type(transform).__name__
      for col in transform.columns:
        if col not in mapping:
          if name not in _EXPECTED_TYPES:
            raise KeyError(
                f'Transform {name} is not registered with a supported '
                'type. Please register the transform with a supported type '
                'using register_input_dtype decorator.')
          mapping[col] = _EXPECTED_TYPES[name]
    return mapping

  def _fail_on_non_default_windowing(self, pcoll):
    if not pcoll.windowing.is_default():
      raise RuntimeError(
          'MLTransform only supports GlobalWindows when producing '
          'artifacts such as min, max, variance etc over the dataset. '
          'Please use beam.WindowInto(beam.transforms.window.GlobalWindows()) '
          'to convert your PCollection to GlobalWindow.')

  def _load_transforms(self):
    payload = _artifacts.read_json(
        os.path.join(self.artifact_location, _artifacts.TRANSFORMS_FILE),
        'MLTransform transforms')
    return [_artifacts.decode_object(s) for s in payload['transforms']]

  def _schema_kinds(self, element_type) -> Optional[dict]:
    if not (isinstance(element_type, RowTypeConstraint) or
            native_type_compatibility.match_is_named_tuple(element_type)):
      return None
    types = self._map_column_names_to_types(element_type)
    return {c: _kind_of(t) for c, t in types.items()} if types else None

  def _output_type(self, schema_kinds):
    kinds = dict(schema_kinds)
    for op in self.transforms:
      for col in op.columns:
        if isinstance(op, TFIDF):
          kinds[col + '_vocab_index'] = 'int64'
          kinds[col + '_tfidf_weight'] = 'float32'
        else:
          kinds[col] = op._output_kind or kinds.get(col)
    fields = [(c, _SEQUENCE_TYPES.get(k, Any)) for c, k in kinds.items()]
    self.transformed_schema = dict(fields)
    return RowTypeConstraint.from_fields(fields)

  def _check_tfidf(self):
    vocab_cols = set()
    for op in self.transforms:
      if isinstance(op, TFIDF) and op.vocab_size is None:
        missing = [c for c in op.columns if c not in vocab_cols]
        if missing:
          raise RuntimeError(
              'vocab_size is not specified for TFIDF and columns '
              f'{missing} do not come from ComputeAndApplyVocabulary in this '
              'MLTransform. Please specify vocab_size explicitly.')
      if isinstance(op, ComputeAndApplyVocabulary):
        vocab_cols |= set(op.columns)

  def expand(self, raw_data):
    produce = self.artifact_mode == ArtifactMode.PRODUCE
    if produce:
      self._fail_on_non_default_windowing(raw_data)
      _artifacts.write_json(
          os.path.join(self.artifact_location, _artifacts.TRANSFORMS_FILE),
          {'transforms': [t.to_json() for t in self.transforms]})
    elif not self.transforms:
      self.transforms = self._load_transforms()
    self._check_tfidf()
    schema_kinds = self._schema_kinds(raw_data.element_type)
    if produce:
      types = self._map_column_names_to_types_from_transforms()
      _artifacts.write_json(
          os.path.join(self.artifact_location, RAW_DATA_METADATA_DIR,
                       SCHEMA_FILE),
          {'columns': {c: getattr(t, '__name__', str(t)) for c, t in types.items()}})
    stages = _plan(self.transforms)
    rows, bad = raw_data, []
    if schema_kinds:
      # Rows of a schema'd PCollection would be encoded with its RowCoder
      # between stages; as dicts they travel as they are.
      rows = rows | 'ToDict' >> beam.Map(_to_dict).with_output_types(Any)
    for k, stage in enumerate(stages):
      final = k == len(stages) - 1
      side = {}
      analyzers = stage.analyzers
      if produce and analyzers:
        stats = (
            rows
            | f'Stats{k}' >> ComputeStats(analyzers, self._catch is not None, _to_dict)
            | f'WriteArtifacts{k}' >> beam.Map(
                _write_stage, self.artifact_location, k, analyzers))
        side = {'stats': beam.pvalue.AsSingleton(stats)}
      dofn = _ApplyStage(
          stage.ops, final, schema_kinds, self._catch,
          None if produce else self.artifact_location, k)
      out = rows | f'Apply{k}' >> beam.ParDo(dofn, **side).with_outputs(
          'bad', main='good')
      rows = out.good
      bad.append(out.bad)
    if schema_kinds:
      rows = rows | 'Typed' >> beam.Map(lambda r: r).with_output_types(
          self._output_type(schema_kinds))
    if self._catch is not None:
      return rows, bad | 'DeadLetters' >> beam.Flatten()
    return rows


def _write_stage(stats, directory, stage, analyzers):
  return _artifacts.write_stage(directory, stage, analyzers, stats)


tft_process_handler_input_type = Union[NamedTuple, beam.Row, dict[str, Any]]
tft_process_handler_output_type = Union[beam.Row, dict[str, np.ndarray]]
TFTProcessHandler.__module__ = __name__
