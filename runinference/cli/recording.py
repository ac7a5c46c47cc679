"""What ``runinference run`` records while a pipeline runs, for the HTML
report: a timeline of the live metrics (the progress line's source), the
first dead letters, and the run's context (file, runner, status, wall-clock
time)."""
from __future__ import annotations

import datetime
import os
import time
from typing import Any, Optional


class RunRecorder:
  """Snapshots the live metrics at most every ``every_s`` seconds."""

  def __init__(self, every_s: float = 0.5):
    self.every_s = every_s
    self.start = time.monotonic()
    self.started = datetime.datetime.now(datetime.timezone.utc)
    self.points: list = []
    self._last = -every_s

  def sample(self, force: bool = False) -> None:
    from runinference.report import TimelinePoint
    from runinference.report import live
    now = time.monotonic() - self.start
    if force or now - self._last >= self.every_s:
      self._last = now
      self.points.append(TimelinePoint.from_snapshot(now, live.snapshot()))

  def errors(self) -> list:
    from runinference.report import ErrorSample
    from runinference.report import live
    return [ErrorSample(step, error, example)
            for step, error, example in live.error_samples()]

  def context(self, pipeline_path: str, runner: str, status: str,
              wall_seconds: Optional[float]):
    from runinference.report import RunContext
    return RunContext(os.path.abspath(pipeline_path), runner, status,
                      self.started.strftime('%Y-%m-%d %H:%M:%S UTC'),
                      wall_seconds)


def runner_name(pipeline: Any) -> str:
  """The runner as the options name it (or the CLI's in-process default)."""
  from apache_beam.options.pipeline_options import StandardOptions
  name = pipeline.options.view_as(StandardOptions).runner
  if name:
    return str(name)
  return 'DirectRunner (in-process FnApiRunner)'


def write_report(path: str, result: Any, recorder: RunRecorder,
                 context) -> None:
  """The HTML report: the runner's metrics when the run finished (an empty
  report when it failed), the timeline, sample errors and context."""
  from runinference.report import RunReport
  report = RunReport.from_result(result) if result is not None else \
      RunReport([])
  title = f'RunInference report: {os.path.basename(context.pipeline)}'
  report.write_html(path, title=title, timeline=recorder.points,
                    errors=recorder.errors(), context=context)
