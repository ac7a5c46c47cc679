"""A run report: what every RunInference step did, read from the pipeline's
metrics after it finishes.

    result = pipeline.run()
    result.wait_until_finish()
    print(RunReport.from_result(result))
    RunReport.from_result(result).write_html('report.html')
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Iterable, Optional, Sequence

from runinference.exceptions import ConfigurationTypeError

from .names import public_step_name

_COUNTERS = ('num_inferences', 'failed_batches_counter', 'failed_inferences',
             'model_load_failures', 'model_swaps')
_DISTRIBUTIONS = ('inference_request_batch_size',
                  'inference_request_batch_byte_size',
                  'inference_batch_latency_micro_secs', 'model_byte_size',
                  'load_model_latency_milli_secs')
# Longest first, so 'failed_inferences' is not read as '<x>num_inferences'.
_NAMES = sorted(_COUNTERS + _DISTRIBUTIONS, key=len, reverse=True)


@dataclasses.dataclass
class StepReport:
  """One RunInference step (or one model of it: a refreshed model's name, or
  a key cohort of a multi-model KeyedModelHandler, is its ``model``)."""
  step: str
  namespace: str
  model: str = ''
  # True for a key cohort of a multi-model KeyedModelHandler, whose rows the
  # step's own (unprefixed) row already counts.
  cohort: bool = False
  inferences: int = 0
  failed_inferences: int = 0
  failed_batches: int = 0
  batches: int = 0
  mean_batch_size: float = 0.0
  max_batch_size: int = 0
  mean_batch_latency_ms: float = 0.0
  max_batch_latency_ms: float = 0.0
  bytes_in: int = 0
  model_loads: int = 0
  mean_load_ms: float = 0.0
  model_swaps: int = 0
  model_load_failures: int = 0
  min_batch_size: int = 0
  min_batch_latency_ms: float = 0.0

  @property
  def rows_per_second_in_model(self) -> Optional[float]:
    """Rows per second of model time (batch latency), not wall time."""
    total_ms = self.mean_batch_latency_ms * self.batches
    return self.inferences / total_ms * 1000 if total_ms else None


def _value(metric_result):
  value = metric_result.committed
  return value if value is not None else metric_result.attempted


def _split(name: str) -> Optional[tuple[str, str, bool]]:
  for known in _NAMES:
    if name.endswith(known):
      prefix = name[:-len(known)].rstrip('_')
      return prefix.rstrip('-'), known, prefix.endswith('-')
  return None




@dataclasses.dataclass(frozen=True)
class RunContext:
  """What the report says about the run itself: which pipeline, on which
  runner, how it ended, and its wall-clock time (for rows per wall-clock
  second, not per second of model time)."""
  pipeline: str = ''
  runner: str = ''
  status: str = ''
  started: str = ''  # e.g. '2026-12-03 17:30:05 UTC'
  wall_seconds: Optional[float] = None


@dataclasses.dataclass(frozen=True)
class TimelinePoint:
  """Running totals over every RunInference step at one moment of a run
  (``seconds`` since it started); a list of them is the report's timeline."""
  seconds: float
  inferences: int
  failed: int = 0
  batches: int = 0
  batch_rows: int = 0  # sum of the batch sizes
  batch_latency_us: int = 0  # sum of the batches' model latency

  @classmethod
  def from_snapshot(cls, seconds: float, snapshot) -> 'TimelinePoint':
    """From a ``runinference.live_metrics`` snapshot taken during the run."""
    sizes = snapshot.distribution('inference_request_batch_size')
    latency = snapshot.distribution('inference_batch_latency_micro_secs')
    return cls(seconds, snapshot.counter('num_inferences'),
               snapshot.counter('failed_inferences'), sizes.count, sizes.sum,
               latency.sum)


@dataclasses.dataclass(frozen=True)
class ErrorSample:
  """One dead letter to show in the report."""
  step: str
  error: str  # e.g. "ValueError('cannot score 3')"
  example: str = ''

  @classmethod
  def from_dead_letter(cls, step: str, record) -> 'ErrorSample':
    """From a dead-letter record ``(input, (exception type, repr,
    traceback lines))`` of ``RunInference(...).with_exception_handling()``."""
    example, (_, text, _) = record
    return cls(step, str(text), repr(example)[:200])


@dataclasses.dataclass
class RunReport:
  steps: list[StepReport]

  @classmethod
  def from_result(cls, result) -> 'RunReport':
    """Builds the report from a finished ``PipelineResult``."""
    found = result.metrics().query()
    steps: dict[tuple, StepReport] = {}

    def step_of(metric_result):
      key = metric_result.key
      parsed = _split(key.metric.name)
      if parsed is None:
        return None, None
      model, name, cohort = parsed
      ident = (key.step, key.metric.namespace, model)
      if ident not in steps:
        steps[ident] = StepReport(key.step, key.metric.namespace, model, cohort)
      return steps[ident], name

    for counter in found['counters']:
      report, name = step_of(counter)
      if report is None:
        continue
      value = _value(counter) or 0
      if name == 'num_inferences':
        report.inferences += value
      elif name == 'failed_inferences':
        report.failed_inferences += value
      elif name == 'failed_batches_counter':
        report.failed_batches += value
      elif name == 'model_swaps':
        report.model_swaps += value
      elif name == 'model_load_failures':
        report.model_load_failures += value
    for dist in found['distributions']:
      report, name = step_of(dist)
      value = _value(dist) if report is not None else None
      if value is None or not value.count:
        continue
      if name == 'inference_request_batch_size':
        report.batches = value.count
        report.mean_batch_size = value.mean
        report.max_batch_size = value.max
        report.min_batch_size = value.min
      elif name == 'inference_batch_latency_micro_secs':
        report.mean_batch_latency_ms = value.mean / 1000
        report.max_batch_latency_ms = value.max / 1000
        report.min_batch_latency_ms = value.min / 1000
      elif name == 'inference_request_batch_byte_size':
        report.bytes_in = value.sum
      elif name == 'load_model_latency_milli_secs':
        report.model_loads = value.count
        report.mean_load_ms = value.mean
    ordered = sorted(steps.values(), key=lambda s: (s.step, s.model))
    # Steps that only loaded a model (no batch yet) still show.
    return cls([s for s in ordered if s.inferences or s.model_loads or
                s.failed_inferences or s.model_load_failures])

  @property
  def total_inferences(self) -> int:
    return sum(s.inferences for s in self.steps if not s.cohort)

  @property
  def total_failed(self) -> int:
    return sum(s.failed_inferences for s in self.steps if not s.cohort)

  def to_dict(self) -> dict[str, Any]:
    return {'steps': [dataclasses.asdict(s) for s in self.steps]}

  def to_json(self, path: Optional[str] = None) -> str:
    text = json.dumps(self.to_dict(), indent=2, default=str)
    if path:
      with open(path, 'w') as f:
        f.write(text)
    return text

  def to_html(self, *, title: str = 'RunInference report',
              timeline: Iterable[TimelinePoint] = (),
              errors: Iterable[ErrorSample] = (),
              context: Optional[RunContext] = None) -> str:
    """A self-contained HTML page (inline SVG plots, no network) of the
    report; ``timeline`` adds throughput over time and interval histograms,
    ``errors`` sample dead letters, ``context`` the pipeline, runner, status
    and wall-clock throughput. Each plot says what it is made from."""
    if context is not None and not isinstance(context, RunContext):
      raise ConfigurationTypeError(
          f'to_html: context takes a RunContext, got {type(context).__name__}')
    from . import html as _report_html
    points = sorted(_checked(timeline, TimelinePoint, 'timeline'),
                    key=lambda p: p.seconds)
    return _report_html.render(
        title, self.steps, self.rows(), [h for h, _ in self._COLUMNS],
        points, _checked(errors, ErrorSample, 'errors'), context)

  def write_html(self, path: str, **kwargs) -> str:
    """Writes ``to_html(**kwargs)`` to ``path``; returns the path."""
    page = self.to_html(**kwargs)
    with open(path, 'w', encoding='utf-8') as f:
      f.write(page)
    return os.fspath(path)

  _COLUMNS = (('step', 'step'), ('model', 'model'), ('rows', 'inferences'),
              ('failed', 'failed_inferences'), ('batches', 'batches'),
              ('mean batch', 'mean_batch_size'), ('max batch', 'max_batch_size'),
              ('mean ms/batch', 'mean_batch_latency_ms'),
              ('loads', 'model_loads'), ('load ms', 'mean_load_ms'),
              ('swaps', 'model_swaps'))

  def rows(self) -> list[list[str]]:
    out = []
    for s in self.steps:
      row = []
      for _, attr in self._COLUMNS:
        v = getattr(s, attr)
        row.append(f'{v:.1f}' if isinstance(v, float) else str(v or ''))
      row[0] = public_step_name(s.step)
      out.append(row)
    return out

  def __str__(self) -> str:
    header = [h for h, _ in self._COLUMNS]
    rows = self.rows()
    widths = [max(len(x) for x in col) for col in zip(header, *rows)]
    lines = ['  '.join(x.ljust(w) for x, w in zip(r, widths))
             for r in [header] + rows]
    lines.insert(1, '  '.join('-' * w for w in widths))
    return 'RunInference report\n' + '\n'.join(lines)

  def print(self) -> None:
    """Prints the report, as a rich table when rich is installed."""
    try:
      from rich.console import Console
      from rich.table import Table
    except ImportError:
      print(self)
      return
    table = Table(title='RunInference report')
    for header, _ in self._COLUMNS:
      table.add_column(header, justify='left' if header in ('step', 'model')
                       else 'right')
    for row in self.rows():
      table.add_row(*row)
    Console().print(table)


def _checked(items: Iterable, cls: type, name: str) -> Sequence:
  items = list(items)
  for item in items:
    if not isinstance(item, cls):
      raise ConfigurationTypeError(f'to_html: {name} takes {cls.__name__} objects, got '
                      f'{type(item).__name__}: {item!r:.80}')
  return items
