"""One Beam ``CombineFn`` for all the metrics of a slice: each distinct
combiner runs once per block, and with ``bootstrap=B`` each of B replicates
re-weights the block with Poisson(1) draws (TFMA's Poisson bootstrap), from
which each scalar metric gets a 95% percentile interval and a standard
error."""
from __future__ import annotations

import math
import zlib
from typing import Optional, Sequence

import apache_beam as beam
import numpy as np

from ._blocks import Block
from ._contract import Metric


class MetricsCombineFn(beam.CombineFn):
  """Blocks in, ``{'metrics': {name: value}, 'intervals': {name: {...}}}``
  out."""
  def __init__(self, metrics: Sequence[Metric], bootstrap: int = 0,
               seed: Optional[int] = None):
    self.metrics = list(metrics)
    combiners: dict = {}
    self._index = []
    for m in self.metrics:
      k = m.combiner.key()
      combiners.setdefault(k, m.combiner)
      self._index.append(list(combiners).index(k))
    self.combiners = list(combiners.values())
    self.replicas = [c.for_bootstrap() for c in self.combiners]
    self.bootstrap = int(bootstrap)
    self.seed = seed
    self._blocks_seen = 0

  def create_accumulator(self):
    main = [c.create_accumulator() for c in self.combiners]
    reps = [[c.create_accumulator() for c in self.replicas]
            for _ in range(self.bootstrap)]
    return [main, reps]

  def _rng(self, block: Block):
    self._blocks_seen += 1
    if self.seed is None:
      return np.random.default_rng()
    head = zlib.crc32(np.ascontiguousarray(block.weights[:64]).tobytes())
    return np.random.default_rng([self.seed, len(block), head,
                                  self._blocks_seen])

  def add_input(self, acc, block: Block):
    if not len(block):
      return acc
    main, reps = acc
    for i, c in enumerate(self.combiners):
      main[i] = c.add_block(main[i], block)
    if reps:
      rng = self._rng(block)
      for rep in reps:
        draws = rng.poisson(1.0, len(block))
        b = block.with_weights(block.weights * draws)
        for i, c in enumerate(self.replicas):
          rep[i] = c.add_block(rep[i], b)
    return acc

  def merge_accumulators(self, accs):
    accs = list(accs)
    main = [c.merge_accumulators([a[0][i] for a in accs])
            for i, c in enumerate(self.combiners)]
    reps = [[c.merge_accumulators([a[1][r][i] for a in accs])
             for i, c in enumerate(self.replicas)]
            for r in range(self.bootstrap)]
    return [main, reps]

  def _values(self, combiners, states) -> dict:
    results = [c.extract(s) for c, s in zip(combiners, states)]
    return {m.name: _plain(m.view(results[i]))
            for m, i in zip(self.metrics, self._index)}

  def extract_output(self, acc):
    main, reps = acc
    values = self._values(self.combiners, main)
    intervals = {}
    if reps:
      samples = [self._values(self.replicas, r) for r in reps]
      for m in self.metrics:
        if not m.scalar:
          continue
        xs = np.array([s[m.name] for s in samples], dtype=np.float64)
        xs = xs[~np.isnan(xs)]
        if not len(xs):
          continue
        lo, hi = np.percentile(xs, [2.5, 97.5])
        intervals[m.name] = {
            'lower': float(lo), 'upper': float(hi),
            'stderr': float(xs.std(ddof=1)) if len(xs) > 1 else 0.0,
            'samples': int(len(xs))}
    return {'metrics': values, 'intervals': intervals}


def _plain(v):
  if isinstance(v, (np.floating, np.integer)):
    v = v.item()
  if isinstance(v, float) and math.isnan(v):
    return float('nan')
  return v
