"""A live progress line for a running pipeline, read from
``runinference.live_metrics`` (rows in, inferred, per second, dead letters)."""
from __future__ import annotations

import dataclasses
import sys
import time
from typing import Optional

from runinference.report import live as live_metrics

_YAML_NS = 'runinference_yaml'


@dataclasses.dataclass
class Counts:
  """What the progress display shows at one moment."""
  rows_in: int
  inferred: int
  dead_letters: int
  elapsed_s: float
  transformed: int = 0  # rows out of MLTransform steps
  transform_in: int = 0  # rows into MLTransform steps
  steps: dict = dataclasses.field(default_factory=dict)  # step -> in/out

  @property
  def rows_per_s(self) -> float:
    return self.inferred / self.elapsed_s if self.elapsed_s > 0 else 0.0


def read_counts(start: float) -> Counts:
  snap = live_metrics.snapshot()
  rows_in = snap.counter('rows_in', _YAML_NS)
  # The core's counters (every RunInference step) or, where the core does
  # not report live, the YAML transform's own count.
  inferred = max(snap.counter('num_inferences'),
                 snap.counter('rows_inferred', _YAML_NS))
  dead = max(snap.counter('dead_letters', _YAML_NS),
             snap.counter('failed_inferences'))
  return Counts(rows_in, inferred, dead, time.monotonic() - start,
                snap.counter('mltransform_rows_out', _YAML_NS),
                snap.counter('mltransform_rows_in', _YAML_NS),
                live_metrics.step_counts())


def describe(c: Counts) -> str:
  parts = []
  if c.transform_in or c.transformed:
    parts.append(f'MLTransform {c.transform_in:,} rows in · '
                 f'{c.transformed:,} out')
  if c.rows_in or c.inferred or not parts:
    parts.append(f'{c.rows_in:,} rows in · {c.inferred:,} inferred '
                 f'({c.rows_per_s:,.0f}/s)')
  text = (' · '.join(parts) + f' · {c.dead_letters:,} dead letters · '
          f'{c.elapsed_s:,.1f}s')
  if len(c.steps) > 1:  # which step the rows are at
    text += ' | ' + ', '.join(f'{step} {n["in"]:,}→{n["out"]:,}'
                              for step, n in c.steps.items())
  return text


class ProgressDisplay:
  """``update()`` redraws; ``close()`` leaves the last line. A rich live
  line on a terminal, a line every ``every_s`` seconds otherwise."""

  def __init__(self, start: float, every_s: float = 5.0):
    self._start = start
    self._every = every_s
    self._last_print = 0.0
    self._live = None
    if sys.stderr.isatty():
      try:
        from rich.console import Console
        from rich.live import Live
        self._live = Live('', console=Console(stderr=True),
                          refresh_per_second=4, transient=False)
        self._live.start()
      except ImportError:
        self._live = None

  def update(self) -> Counts:
    counts = read_counts(self._start)
    text = describe(counts)
    if self._live is not None:
      from rich.text import Text
      self._live.update(Text('⏵ ' + text))
    elif counts.elapsed_s - self._last_print >= self._every:
      self._last_print = counts.elapsed_s
      print(text, file=sys.stderr, flush=True)
    return counts

  def close(self) -> Optional[Counts]:
    counts = self.update()
    if self._live is not None:
      self._live.stop()
    else:
      print(describe(counts), file=sys.stderr, flush=True)
    return counts
