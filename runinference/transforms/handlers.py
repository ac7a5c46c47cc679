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
from collections.abc import Sequence
from typing import Any, NamedTuple, Optional, Union

import apache_beam as beam
import numpy as np
from apache_beam.typehints import native_type_compatibility
from apache_beam.typehints.row_type import RowTypeConstraint

from . import _artifacts
from ._emit import RowOutput, kind_of
from ._engine import ApplyStage, to_blocks
from ._plan import (check_vocabularies, later_raw_reads, plan_stages,
                    stage_analyzers)
from ._stats import StageStatsFn
from ._contract import (_EXPECTED_TYPES, ArtifactMode, BaseOperation,
                        ProcessHandler)
from ..exceptions import (ConfigurationError, ConfigurationRuntimeError,
                          UnknownOperationError, UnsupportedOptionError)

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


class TFTProcessHandler(ProcessHandler):
  """Runs column transforms (``tft``) in write mode (``artifact_mode=
  'produce'``: statistics computed and written to ``artifact_location``) or
  read mode (``'consume'``: statistics and transforms read from there)."""
  def __init__(
      self,
      *,
      artifact_location: str,
      transforms: Optional[Sequence[BaseOperation]] = None,
      artifact_mode: str = ArtifactMode.PRODUCE):
    super().__init__()
    self.transforms = list(transforms) if transforms else []
    self.transformed_schema: dict[str, type] = {}
    self.artifact_location = artifact_location
    self.artifact_mode = artifact_mode
    if artifact_mode not in ['produce', 'consume']:
      raise ConfigurationError('artifact_mode must be either `produce` or `consume`.')
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
      raise UnsupportedOptionError(
          'use_subprocess is not supported by MLTransform column transforms.')
    if threshold != 1:
      raise UnsupportedOptionError(
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
            raise UnknownOperationError(
                f'Transform {name} is not registered with a supported '
                'type. Please register the transform with a supported type '
                'using register_input_dtype decorator.')
          mapping[col] = _EXPECTED_TYPES[name]
    return mapping

  def _fail_on_non_default_windowing(self, pcoll):
    if not pcoll.windowing.is_default():
      raise ConfigurationRuntimeError(
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
    return {c: kind_of(t) for c, t in types.items()} if types else None

  def _output_type(self, schema_kinds):
    kinds = dict(schema_kinds)
    for op in self.transforms:
      for col in op.columns:
        kinds.update(op._output_kinds(col, kinds.get(col)))
    fields = [(c, _SEQUENCE_TYPES.get(k, Any)) for c, k in kinds.items()]
    self.transformed_schema = dict(fields)
    return RowTypeConstraint.from_fields(fields)

  def expand(self, raw_data):
    produce = self.artifact_mode == ArtifactMode.PRODUCE
    if produce:
      self._fail_on_non_default_windowing(raw_data)
      _artifacts.write_json(
          os.path.join(self.artifact_location, _artifacts.TRANSFORMS_FILE),
          {'transforms': [t.to_json() for t in self.transforms]})
    elif not self.transforms:
      self.transforms = self._load_transforms()
    check_vocabularies(self.transforms)
    schema_kinds = self._schema_kinds(raw_data.element_type)
    if produce:
      types = self._map_column_names_to_types_from_transforms()
      _artifacts.write_json(
          os.path.join(self.artifact_location, RAW_DATA_METADATA_DIR,
                       SCHEMA_FILE),
          {'columns': {c: getattr(t, '__name__', str(t)) for c, t in types.items()}})
    stages = plan_stages(self.transforms)
    later, written = later_raw_reads(stages)
    if not (produce and any(stage_analyzers(s) for s in stages)):
      # Blocks are never materialized between passes: copying the row
      # dicts without the rewritten columns would only cost time.
      written = frozenset()
    first = raw_data | 'ToBlocks' >> beam.ParDo(
        to_blocks(raw_data.pipeline, stages[0], self._catch, later,
                  written)).with_outputs(
            'bad', main='blocks')
    blocks, bad = first.blocks, [first.bad]
    impulse = None
    for k, stage in enumerate(stages):
      final = k == len(stages) - 1
      side = {}
      analyzers = stage_analyzers(stage)
      if produce and analyzers:
        if impulse is None:
          impulse = raw_data.pipeline | 'Impulse' >> beam.Impulse()
        fn = StageStatsFn(analyzers)
        # Without CombineGlobally's default-value injection (six more steps
        # per stage): an empty input gets empty statistics in _write_stage.
        found = blocks | f'Stats{k}' >> beam.CombineGlobally(fn).without_defaults()
        stats = impulse | f'WriteArtifacts{k}' >> beam.Map(
            _write_stage, beam.pvalue.AsIter(found), fn, self.artifact_location,
            k, analyzers).with_output_types(dict)
        side = {'stats': beam.pvalue.AsSingleton(stats)}
      dofn = ApplyStage(
          stage, None if final else stages[k + 1],
          RowOutput(schema_kinds) if final else None, self._catch,
          None if produce else self.artifact_location, k)
      out = blocks | f'Apply{k}' >> beam.ParDo(dofn, **side).with_outputs(
          'bad', main='good')
      blocks = out.good
      bad.append(out.bad)
    rows = blocks
    if schema_kinds:
      rows = rows | 'Typed' >> beam.Map(lambda r: r).with_output_types(
          self._output_type(schema_kinds))
    if self._catch is not None:
      return rows, bad | 'DeadLetters' >> beam.Flatten()
    return rows


def _write_stage(_, found, fn, directory, stage, analyzers):
  """Writes a stage's statistics (those of no rows when ``found`` is empty)."""
  stats = next(iter(found), None)
  if stats is None:
    stats = fn.extract_output(fn.create_accumulator())
  return _artifacts.write_stage(directory, stage, analyzers, stats)


tft_process_handler_input_type = Union[NamedTuple, beam.Row, dict[str, Any]]
tft_process_handler_output_type = Union[beam.Row, dict[str, np.ndarray]]
