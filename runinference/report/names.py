"""Step names as a pipeline's author wrote them, for the report's pages."""
from __future__ import annotations

import re

_INTERNAL_PART = re.compile(r'^(ParDo|Map|FlatMap|MapTuple|FlatMapTuple)\(.*\)$'
                            r'|^BeamML_\w+$')


def public_step_name(step: str) -> str:
  """A metric's step as the pipeline's author named it: Beam's internal
  parts (``BeamML_RunInference``, ``ParDo(GlobalBatchDoFn)``) dropped, a
  part repeated by a nested transform of the same name shown once, and the
  inner ``RunInference`` of a named step (``Score/RunInference``) dropped."""
  parts = [p for p in step.split('/') if p and not _INTERNAL_PART.match(p)]
  out: list[str] = []
  for part in parts:
    if not out or out[-1] != part:
      out.append(part)
  if len(out) > 1 and out[-1] in ('RunInference', 'RunInferenceColumnar'):
    out.pop()
  return '/'.join(out) or step
