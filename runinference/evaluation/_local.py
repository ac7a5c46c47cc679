"""Evaluation without a pipeline: the same combiners and slicing over
in-memory blocks (used by the refresh gate, and handy in notebooks)."""
from __future__ import annotations

from typing import Mapping, Optional, Sequence

from ._blocks import Block
from ._combine import MetricsCombineFn
from ._contract import Metric
from ._slicing import SliceSpec, cut_all
from ._thresholds import SliceMetrics


def evaluate_blocks(blocks: Mapping[str, Sequence[Block]],
                    metrics: Sequence[Metric], specs: Sequence[SliceSpec],
                    bootstrap: int = 0,
                    seed: Optional[int] = None) -> list[SliceMetrics]:
  """``{model: [Block, ...]}`` -> one ``SliceMetrics`` per model and slice."""
  fn = MetricsCombineFn(metrics, bootstrap, seed)
  accs: dict = {}
  for model, model_blocks in blocks.items():
    for block in model_blocks:
      for key, sub in cut_all(block, specs):
        acc = accs.get((model, key))
        if acc is None:
          acc = accs[(model, key)] = fn.create_accumulator()
        fn.add_input(acc, sub)
  out = []
  for (model, key), acc in accs.items():
    res = fn.extract_output(acc)
    out.append(SliceMetrics(model, key, res['metrics'], res['intervals']))
  return sorted(out, key=lambda r: (r.model, len(r.slice), str(r.slice)))
