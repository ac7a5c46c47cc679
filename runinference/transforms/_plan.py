"""Planning MLTransform's column transforms, before any data is read: which
transforms share a pass over the data (a stage), which raw columns later
stages read, which statistics each stage computes, and whether every
vocabulary a transform needs is made before it. Knows nothing of Beam."""
from __future__ import annotations

from ._engine import StagePlan
from ..exceptions import ConfigurationRuntimeError


def plan_stages(transforms: list) -> list[StagePlan]:
  """Stages: a stage ends where a transform needs statistics of a column an
  earlier transform of the stage rewrote."""
  stages, dirty = [[]], set()
  for i, op in enumerate(transforms):
    if op._analyzers(i) and dirty & set(op.columns):
      stages.append([])
      dirty = set()
    stages[-1].append((i, op))
    for col in op.columns:
      dirty.update(op._outputs(col))
  return [StagePlan(tuple(s)) for s in stages if s]


def later_raw_reads(stages: list[StagePlan]) -> tuple:
  """The raw columns later stages read (column, reader, transform): read
  with the first stage's, so that a row any stage cannot read is taken out
  before any statistics are computed; and every column a transform writes
  (the row dicts need not keep those once read)."""
  written, later = set(), []
  for k, stage in enumerate(stages):
    if k:
      later.extend(r for r in stage.reads() if r[0] not in written)
    written |= {out for _, op in stage.ops for c in op.columns
                for out in op._outputs(c)}
  # Rows an elementwise transform refuses only once statistics exist (a
  # length other than theirs) go to the dead letters as they came: keep them.
  kept = {c for s in stages for _, op in s.ops if getattr(op, 'elementwise', False)
          for c in op.columns}
  return tuple(later), frozenset(written - kept)


def stage_analyzers(plan: StagePlan) -> list:
  return [a for i, op in plan.ops for a in op._analyzers(i)]


def check_vocabularies(transforms) -> None:
  """Raises unless every transform that needs a vocabulary has one: its own
  vocab_size, or an earlier ComputeAndApplyVocabulary of the column."""
  vocab_cols = set()
  for op in transforms:
    missing = [c for c in op._vocabulary_needed() if c not in vocab_cols]
    if missing:
      raise ConfigurationRuntimeError(
          f'vocab_size is not specified for {type(op).__name__} and columns '
          f'{missing} do not come from ComputeAndApplyVocabulary in this '
          'MLTransform. Please specify vocab_size explicitly.')
    vocab_cols |= set(op._vocabulary_made())
