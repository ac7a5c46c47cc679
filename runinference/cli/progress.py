"""A live progress line for a running pipeline, read from
``runinference.live_metrics`` (rows in, inferred, per second, dead letters),
with the share done and an ETA when the source's size is known
(``source_rows``)."""
from __future__ import annotations

import dataclasses
import glob
import sys
import time
from typing import Any, Optional

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
  expected: Optional[int] = None  # the source's rows, when known

  @property
  def rows_per_s(self) -> float:
    return self.inferred / self.elapsed_s if self.elapsed_s > 0 else 0.0

  @property
  def source_rows_done(self) -> int:
    """Source rows that reached a model step: the furthest step's rows in
    (each step sees every row of a one-source pipeline without filters)."""
    done = max([n['in'] for n in self.steps.values()] +
               [self.rows_in if len(self.steps) <= 1 else 0,
                self.transform_in if len(self.steps) <= 1 else 0])
    return min(done, self.expected or 0)

  @property
  def eta_s(self) -> Optional[float]:
    """Seconds left at the rate so far; None when unknown or done."""
    done = self.source_rows_done
    if not self.expected or not 0 < done < self.expected:
      return None
    return self.elapsed_s * (self.expected - done) / done


def _strip(node: Any) -> Any:
  if isinstance(node, dict):
    return {k: v for k, v in node.items() if k not in ('__line__', '__uuid__')}
  return node


def source_rows(spec: dict) -> Optional[int]:
  """Rows the pipeline reads, when known before it runs: one source, a
  ``Create`` (its elements) or a ``ReadFromParquet`` of local files (their
  footers); None otherwise (several sources, other IO, unreadable)."""
  pipeline = _strip(spec.get('pipeline'))
  if isinstance(pipeline, list):
    pipeline = {'transforms': pipeline}
  if not isinstance(pipeline, dict):
    return None
  transforms = [_strip(t) for t in pipeline.get('transforms') or []]
  if not transforms or not all(isinstance(t, dict) for t in transforms):
    return None
  if pipeline.get('type') == 'chain':
    sources = transforms[:1]
  elif 'source' in pipeline:
    sources = [_strip(pipeline['source'])]
  else:
    sources = [t for t in transforms if 'input' not in t]
  if len(sources) != 1:
    return None
  config = _strip(sources[0].get('config')) or {}
  kind = sources[0].get('type')
  if kind == 'Create' and isinstance(config.get('elements'), list):
    return len(config['elements'])
  if kind == 'ReadFromParquet' and isinstance(config.get('path'), str):
    try:
      import pyarrow.parquet as pq
      files = sorted(glob.glob(config['path']))
      if not files:
        return None
      return sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    except Exception:  # pylint: disable=broad-except  (no estimate, no harm)
      return None
  return None


def _duration(seconds: float) -> str:
  seconds = int(round(seconds))
  if seconds < 60:
    return f'{seconds}s'
  minutes, seconds = divmod(seconds, 60)
  if minutes < 60:
    return f'{minutes}m{seconds:02d}s'
  hours, minutes = divmod(minutes, 60)
  return f'{hours}h{minutes:02d}m'


def read_counts(start: float, expected: Optional[int] = None) -> Counts:
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
                live_metrics.step_counts(), expected)


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
  if c.expected:
    text += (f' · {100 * c.source_rows_done // c.expected}% of '
             f'{c.expected:,} source rows')
    eta = c.eta_s
    if eta is not None:
      text += f' · ETA {_duration(eta)}'
  if len(c.steps) > 1:  # which step the rows are at
    text += ' | ' + ', '.join(f'{step} {n["in"]:,}→{n["out"]:,}'
                              for step, n in c.steps.items())
  return text


class ProgressDisplay:
  """``update()`` redraws; ``close()`` leaves the last line. A rich live
  line on a terminal, a line every ``every_s`` seconds otherwise."""

  def __init__(self, start: float, every_s: float = 5.0,
               expected: Optional[int] = None):
    self._start = start
    self._expected = expected
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
    counts = read_counts(self._start, self._expected)
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
