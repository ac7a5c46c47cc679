"""The Beam shell of the columnar path: chunks in, scored chunks (and dead
letters) out, each with its own timestamp and window."""
from __future__ import annotations

import time
from typing import Union

import apache_beam as beam
from apache_beam.pvalue import TaggedOutput
from apache_beam.utils.windowed_value import WindowedValue

from .._core.failures import FAILED_INFERENCES
from .._core.overlap import CallThread
from .frames import chunk_ops
from .scorer import ColumnarScorer
from .._core.call_sizing import CallSizer
from .._core.runner_fix import install_all as _install_runner_fixes

AUTO = 'auto'

# The same local-runner fixes as RunInference's DoFns (runner_fix.py).
_install_runner_fixes()


class ColumnarDoFn(beam.DoFn):
  """Beam shell around ``ColumnarScorer``: one output chunk per input chunk,
  with the input's timestamp and window. With ``rows_per_call`` chunks are
  held (as windowed values) and scored together ('auto': as many rows as
  ``CallSizer`` learns from call times). With ``overlap`` scoring runs on a
  call thread: a call is submitted, the one before it collected."""
  def __init__(self, scorer: ColumnarScorer,
               rows_per_call: Union[int, str, None], overlap: bool = False):
    self._scorer = scorer
    self._rows_per_call = rows_per_call
    self._overlap = overlap
    self._pending: list = []
    self._rows = 0

  def setup(self):
    self._sizer = CallSizer() if self._rows_per_call == AUTO else None
    self._calls = CallThread() if self._overlap else None
    self._flight = None  # (windowed values, future of their scores)
    if self._calls is not None:
      self._calls.call(self._scorer.setup)  # loaded on the thread calling it
    else:
      self._scorer.setup()

  def start_bundle(self):
    self._pending, self._rows = [], 0
    self._flight = None

  def process(self, chunk, timestamp=beam.DoFn.TimestampParam,
              window=beam.DoFn.WindowParam, pane=beam.DoFn.PaneInfoParam):
    if self._rows_per_call is None and self._calls is None:
      scored, dead = self._scorer.score(chunk)
      out = [] if scored is None else [scored]
      out.extend(TaggedOutput(FAILED_INFERENCES, rec) for rec in dead)
      return out
    self._rows += chunk_ops(chunk).num_rows(chunk)
    self._pending.append(WindowedValue(chunk, timestamp, [window], pane))
    if self._rows >= self._target():
      return self._flush()
    return []

  def _target(self) -> int:
    if self._sizer is not None:
      return self._sizer.rows
    return self._rows_per_call or 1

  def _score(self, chunks: list, rows: int) -> tuple:
    start = time.perf_counter()
    scores = self._scorer.score_many(chunks)
    return scores, rows, time.perf_counter() - start

  def _flush(self) -> list:
    pending, rows = self._pending, self._rows
    self._pending, self._rows = [], 0
    chunks = [wv.value for wv in pending]
    if self._calls is None:
      return self._outputs(pending, self._scored(self._score(chunks, rows)))
    previous = self._flight
    self._flight = (pending, self._calls.submit(
        lambda: self._score(chunks, rows)))
    return [] if previous is None else self._collect(previous)

  def _collect(self, flight) -> list:
    pending, future = flight
    return self._outputs(pending, self._scored(future.result()))

  def _scored(self, timed: tuple) -> list:
    scores, rows, seconds = timed
    if self._sizer is not None:
      self._sizer.observe(rows, seconds)
    return scores

  @staticmethod
  def _outputs(pending: list, scores: list) -> list:
    out = []
    for wv, (scored, dead) in zip(pending, scores):
      if scored is not None:
        out.append(wv.with_value(scored))
      out.extend(TaggedOutput(FAILED_INFERENCES, wv.with_value(rec))
                 for rec in dead)
    return out

  def finish_bundle(self):
    out = self._flush() if self._pending else []
    if self._flight is not None:
      flight, self._flight = self._flight, None
      out.extend(self._collect(flight))
    self._scorer.check_threshold()
    return out

  def teardown(self):
    if self._calls is not None:
      self._calls.close()
