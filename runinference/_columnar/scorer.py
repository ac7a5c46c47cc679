"""Scoring whole chunks of rows as a plain object (the DoFn in ``columnar`` is
a thin shell): model holding, one model call per chunk, failure isolation by
bisecting rows, metrics."""
from __future__ import annotations

import time
from typing import Any, Optional, Sequence, Union

import numpy

from .frames import Chunk, chunk_ops
from .predict import MatrixPredictor, output_columns
from .._core.failures import (ErrorPolicy, RangeFailure, RangeResult,
                              bisect_failures, describe)
from .._core.model_holder import ModelHolder
from .._core.step import InferenceStep
from ..exceptions import ConfigurationError


class ColumnarScorer(InferenceStep):
  """Appends a model's predictions to chunks of rows.

  ``score(chunk)`` returns ``(scored, dead)``: the chunk (same type) with the
  prediction column(s) appended -- None if no row of it survived -- and the
  dead-letter records ``(rows, (exc_type, repr, traceback_lines))`` of rows
  that failed (only with exception handling on; otherwise errors raise).
  """
  def __init__(
      self,
      handler,
      feature_columns: Sequence[str],
      output_column: Union[str, Sequence[str]],
      *,
      predictor: MatrixPredictor,
      inference_args: Optional[dict],
      namespace: Optional[str],
      policy: ErrorPolicy,
      tag: str,
      dtype=None,
      clock=time):
    self.feature_columns = list(feature_columns)
    self.output_column = output_column
    self.predictor = predictor
    self.inference_args = dict(inference_args or {})
    self.namespace = namespace or handler.get_metrics_namespace()
    self.policy = policy
    self.dtype = dtype
    self.clock = clock
    self.max_rows = handler.batch_elements_kwargs().get('max_batch_size')
    self.holder = ModelHolder(handler, tag, clock)
    self._init_runtime()

  _STEP_NAME = 'RunInferenceColumnar'
  _UNIT = 'rows'
  _RUNTIME = ('metrics', 'counts', 'empty_outputs')

  def _init_runtime(self):
    super()._init_runtime()
    # Zero-row arrays shaped like the outputs, once a chunk has been scored:
    # what an empty chunk gets appended.
    self.empty_outputs: Optional[list] = None

  def setup(self, load: bool = True) -> None:
    self.setup_model(load)

  def _model(self):
    return self.loaded_model().model

  # -- per chunk ---------------------------------------------------------------
  def score(self, chunk) -> tuple[Any, list]:
    ops = chunk_ops(chunk)
    if self.metrics is not None:
      self.metrics.flush_cached()
    n = ops.num_rows(chunk)
    if n == 0:
      # No rows to score: with the output layout known, the chunk passes with
      # empty prediction columns; before that it is dropped (it has no rows
      # to lose, and a guessed column type could clash with later chunks).
      if self.empty_outputs is None:
        return None, []
      return ops.with_columns(chunk, self.empty_outputs), []
    self.counts[0] += n
    try:
      self._check(ops, chunk)
    except Exception as exc:  # pylint: disable=broad-except
      # Every row fails alike: the whole chunk is one dead letter.
      return None, self._chunk_failed(chunk, 0, n, exc)
    matrix = None
    if self.predictor.takes == 'numpy':
      try:
        matrix = ops.matrix(chunk, self.feature_columns, self.dtype)
      except Exception as exc:  # pylint: disable=broad-except
        if not self.policy.catches(exc):
          raise
        # Some value does not convert: each part is converted on its own
        # while the rows are bisected.
    step = self.max_rows or n
    parts: list = []  # RangeResult(lo, hi, outputs)
    failed: list = []  # RangeFailure(lo, hi, exception)
    for lo in range(0, n, step):
      hi = min(n, lo + step)
      self._run(ops, chunk, matrix, lo, hi, parts, failed)
    dead = []
    if failed:
      if self.metrics is not None:
        self.metrics.failed_elements.inc(sum(f.stop - f.start for f in failed))
      for f in failed:
        dead.extend(self._dead(ops, chunk, f.start, f.stop, f.error))
      if not parts:
        return None, dead
      parts.sort(key=lambda p: p.start)
      chunk = ops.take(chunk, numpy.concatenate(
          [numpy.arange(p.start, p.stop) for p in parts]))
    try:
      outputs = _concat_outputs(parts)
      self._check_names(ops, chunk, [name for name, _ in outputs])
      if self.empty_outputs is None:
        self.empty_outputs = [(name, values[:0]) for name, values in outputs]
      return ops.with_columns(chunk, outputs), dead
    except Exception as exc:  # pylint: disable=broad-except
      return None, dead + self._chunk_failed(chunk, 0, ops.num_rows(chunk), exc)

  def score_many(self, chunks: list) -> list:
    """``score`` for each of ``chunks``, with ONE model call over the rows of
    all that can join it: a model's per-call cost (input validation, a tree
    ensemble's thread start per tree) is paid once. A chunk that cannot join
    (no rows, failing checks, values that do not convert) and every chunk of
    a merged call that fails are scored on their own, bisected as usual."""
    if len(chunks) < 2 or self.predictor.takes != 'numpy' or self.max_rows:
      return [self.score(c) for c in chunks]
    joined = []  # (index, ops, matrix)
    for i, chunk in enumerate(chunks):
      ops = chunk_ops(chunk)
      try:
        if ops.num_rows(chunk):
          self._check(ops, chunk)
          joined.append(
              (i, ops, ops.matrix(chunk, self.feature_columns, self.dtype)))
      except Exception:  # pylint: disable=broad-except
        pass  # scored alone below, where its error is handled
    results = {}
    if len(joined) > 1 and len({m.dtype for _, _, m in joined}) == 1:
      if self.metrics is not None:
        self.metrics.flush_cached()
      results = self._score_merged(chunks, joined)
    return [results[i] if i in results else self.score(c)
            for i, c in enumerate(chunks)]

  def _score_merged(self, chunks: list, joined: list) -> dict:
    merged = numpy.concatenate([m for _, _, m in joined])
    try:
      start = self.clock.time_ns()
      outputs = output_columns(
          self.predictor(self._model(), merged, self.inference_args),
          len(merged), self.output_column)
      micros = (self.clock.time_ns() - start) // 1000
    except Exception:  # pylint: disable=broad-except
      return {}  # each chunk alone, so failing rows are isolated
    if self.metrics is not None:
      self.metrics.update(len(merged), merged.nbytes, micros)
    results, lo = {}, 0
    for i, ops, matrix in joined:
      hi = lo + len(matrix)
      part = [(name, values[lo:hi]) for name, values in outputs]
      self.counts[0] += hi - lo
      try:
        self._check_names(ops, chunks[i], [name for name, _ in part])
        if self.empty_outputs is None:
          self.empty_outputs = [(name, values[:0]) for name, values in part]
        results[i] = (ops.with_columns(chunks[i], part), [])
      except Exception as exc:  # pylint: disable=broad-except
        results[i] = (None, self._chunk_failed(chunks[i], 0, hi - lo, exc))
      lo = hi
    return results

  def _check(self, ops: Chunk, chunk) -> None:
    ops.check_features(chunk, self.feature_columns)
    names = ([self.output_column] if isinstance(self.output_column, str) else
             list(self.output_column))
    self._check_names(ops, chunk, names)

  def _check_names(self, ops: Chunk, chunk, names) -> None:
    present = set(ops.column_names(chunk))
    clash = [c for c in names if c in present]
    if clash:
      raise ConfigurationError(
          f'The {ops.kind} chunk already has column(s) {clash}, which '
          'RunInferenceColumnar would write its predictions to; choose '
          'another output_column.')

  def _chunk_failed(self, chunk, lo, hi, exc) -> list:
    if self.metrics is not None:
      self.metrics.failed_batches_counter.inc()
    if not self.policy.catches(exc):
      raise exc
    if self.metrics is not None:
      self.metrics.failed_elements.inc(hi - lo)
    self.counts[1] += hi - lo
    return [(chunk, describe(exc))]

  def _dead(self, ops: Chunk, chunk, lo, hi, exc) -> list:
    self.counts[1] += hi - lo
    return [(ops.slice(chunk, lo, hi), describe(exc))]

  # -- model calls ---------------------------------------------------------------
  def _call(self, ops: Chunk, chunk, matrix, lo: int, hi: int) -> list:
    """Predicts rows ``lo:hi``; returns their output columns or raises."""
    if matrix is not None:
      features = matrix[lo:hi]
      nbytes = features.nbytes
    else:
      part = chunk if (lo, hi) == (0, ops.num_rows(chunk)) else ops.slice(
          chunk, lo, hi)
      if self.predictor.takes == 'pandas':
        features = ops.frame(part, self.feature_columns)
        nbytes = int(features.memory_usage(index=False).sum())
      else:
        features = ops.matrix(part, self.feature_columns, self.dtype)
        nbytes = features.nbytes
    model = self._model()
    start = self.clock.time_ns()
    predictions = self.predictor(model, features, self.inference_args)
    outputs = output_columns(predictions, hi - lo, self.output_column)
    micros = (self.clock.time_ns() - start) // 1000
    if self.metrics is not None:
      self.metrics.update(hi - lo, nbytes, micros)
    return outputs

  def _run(self, ops, chunk, matrix, lo, hi, parts, failed) -> None:
    """Predicts rows ``lo:hi`` into ``parts`` (RangeResult); a failing call
    is bisected (``bisect_failures``) so only failing rows reach ``failed``
    (RangeFailure)."""
    def call(a: int, b: int) -> list:
      return self._call(ops, chunk, matrix, lo + a, lo + b)
    try:
      parts.append(RangeResult(lo, hi, call(0, hi - lo)))
      return
    except Exception as exc:  # pylint: disable=broad-except
      if self.metrics is not None:
        self.metrics.failed_batches_counter.inc()
      first = exc
    outcome = bisect_failures(
        hi - lo, call, first, catches=self.policy.catches,
        enabled=self.policy.bisect)
    parts.extend(RangeResult(lo + r.start, lo + r.stop, r.value)
                 for r in outcome.results)
    failed.extend(RangeFailure(lo + f.start, lo + f.stop, f.error)
                  for f in outcome.failures)


def _concat_outputs(parts: list) -> list:
  """One ``[(name, array)]`` for parts (RangeResult) in row order."""
  if len(parts) == 1:
    return parts[0].value
  names = [name for name, _ in parts[0].value]
  for part in parts[1:]:
    if [name for name, _ in part.value] != names:
      raise ConfigurationError(
          'The model returned different outputs for different parts of one '
          f'chunk: {names} and {[name for name, _ in part.value]}.')
  return [(name, numpy.concatenate([p.value[j][1] for p in parts]))
          for j, name in enumerate(names)]
