"""The columnar engine of MLTransform's column transforms.

``ToBlocks`` gathers rows (or takes Arrow / pandas batches as they are) into
blocks and reads the columns the first stage needs; ``ApplyStage`` applies a
stage's transforms to whole columns and either hands the block to the next
stage or emits the rows. A row that cannot be read or transformed goes to
the ``bad`` output as ``beam.Row(element, msg, stack, transform_name)`` with
its own timestamp and windows; when a vectorized transform fails on a block,
the block is bisected to find the rows it fails on.
"""
from __future__ import annotations

import gc
import traceback
from dataclasses import dataclass
from typing import Any, Optional

import apache_beam as beam
import numpy as np
from apache_beam import typehints
from apache_beam.utils.windowed_value import WindowedValue

from .._core import bundle_based_fix
from .._core.batched_dofns import runner_hands_over_batches
from .._core.gc_pause import GcPause
from . import _block_coder
from ._blocks import ARROW_BATCH, ARROW_TABLE, PANDAS, Block, Failure
from ._errors import ColumnTypeError

BAD = 'bad'
_block_coder.register()
# ToBlocks takes batches on the bundle-based DirectRunner too (TestStream).
bundle_based_fix.install()
BLOCK_ROWS = 4096
# With the GC paused for a bundle, a young collection runs after a block once
# this many tracked objects have been allocated and not freed since the last
# one: cyclic garbage made upstream is then freed during the bundle, and a
# bundle whose rows are freed as they go pays for no collection at all.
YOUNG_GARBAGE_LIMIT = 200_000


@dataclass(frozen=True)
class StagePlan:
  """One stage: its transforms (index in the MLTransform, transform) and the
  raw columns it reads before any of its transforms rewrote them."""
  ops: tuple

  def reads(self) -> list:
    """(column, reader, transform name) of each first read of a column not
    yet rewritten in this stage."""
    written, out = set(), []
    for _, op in self.ops:
      for col in op.columns:
        if col not in written:
          out.append((col, op._reader, type(op).__name__))
      for col in op.columns:
        written.update(op._outputs(col))
    return out


def _to_dict(element) -> dict:
  if isinstance(element, dict):
    return element
  if hasattr(element, '_asdict'):
    return dict(element._asdict())
  raise ColumnTypeError(
      'MLTransform needs dicts, beam.Row or NamedTuples as elements (or '
      'pyarrow RecordBatches/Tables or pandas DataFrames), got '
      f'{type(element).__name__}: {element!r:.80}.')


def _columnar_form(element) -> Optional[str]:
  module = type(element).__module__
  if module.startswith('pyarrow'):
    import pyarrow as pa
    if isinstance(element, pa.RecordBatch):
      return ARROW_BATCH
    if isinstance(element, pa.Table):
      return ARROW_TABLE
  elif module.startswith('pandas'):
    import pandas as pd
    if isinstance(element, pd.DataFrame):
      return PANDAS
  return None


def _columnar_block(element, form: str, timestamp, windows) -> Block:
  import pyarrow as pa
  if form == ARROW_BATCH:
    table = pa.Table.from_batches([element])
  elif form == PANDAS:
    # Without pandas' metadata: it would turn rewritten columns back into
    # their old dtypes in to_pandas().
    table = pa.Table.from_pandas(
        element, preserve_index=False).replace_schema_metadata(None)
  else:
    table = element
  return Block(table.num_rows, None, table, form, timestamp, windows)


def dead_letter(f: Failure) -> WindowedValue:
  row = beam.Row(
      element=f.element, msg=f'{type(f.error).__name__}: {f.error}',
      stack=''.join(traceback.format_exception(f.error)),
      transform_name=f.transform)
  return beam.pvalue.TaggedOutput(BAD, WindowedValue(row, f.timestamp, f.windows))


class _Failures:
  """Where rows that fail go: the dead-letter output, or an error."""
  def __init__(self, catch):
    self._catch = catch

  def route(self, failures: list[Failure]):
    for f in failures:
      if self._catch is None or not isinstance(f.error, self._catch):
        raise f.error
      yield dead_letter(f)


def read_stage_inputs(block: Block, plan: Optional[StagePlan]) -> list[Failure]:
  """Reads the raw columns of a stage; rows that fail are taken out."""
  failures = []
  if plan is None:
    return failures
  for column, reader, name in plan.reads():
    failures.extend(block.read(column, reader, name))
  return failures


def as_element(block: Block) -> WindowedValue:
  """A block as an element, in its first row's window and at its timestamp.

  Nothing reads a block's own window or timestamp (each row keeps its own),
  but a runner samples and encodes it with its PCollection's window coder,
  which is the input's (an interval-window coder refuses a global window);
  one window only, as Beam would otherwise repeat each output row's windows
  once per window of the block."""
  stamps, wins = block.timestamps, block.windows
  stamp = stamps[0] if isinstance(stamps, list) else stamps
  windows = wins[0] if isinstance(wins, list) else wins
  return WindowedValue(block, stamp, windows[:1])


@dataclass
class _Part:
  """Rows (dicts) that came in one batch: they share a timestamp and a
  window."""
  rows: list
  timestamp: Any
  windows: tuple


def _stamps_and_windows(parts: list) -> tuple:
  """Timestamps and windows of buffered parts: one value each when all rows
  share it (the usual case, cheap to carry), else one per row."""
  first = parts[0]
  if all(p.timestamp == first.timestamp for p in parts):
    stamps = first.timestamp
  else:
    stamps = [p.timestamp for p in parts for _ in p.rows]
  wins = first.windows
  if not all(p.windows == wins for p in parts):
    wins = [p.windows for p in parts for _ in p.rows]
  return stamps, wins


class ToBlocks(beam.DoFn):
  """Rows -> blocks of up to ``BLOCK_ROWS`` rows with the first stage's
  columns read; columnar elements become one block each.

  A batched DoFn: Beam hands it lists of rows that share a timestamp and a
  window, so no Python call is made per row (a per-row ``process`` that
  needs each row's timestamp costs ~1.2 us a row in Beam's per-window
  invoker, a tenth of a write run)."""
  def __init__(self, plan: StagePlan, catch, later_reads: tuple = (),
               strip: frozenset = frozenset(), block_rows: int = BLOCK_ROWS):
    self._plan = plan
    self._later_reads = later_reads
    self._strip = strip
    self._failures = _Failures(catch)
    self._block_rows = block_rows
    self._first = type(plan.ops[0][1]).__name__

  def setup(self):
    # GC off for the bundle (see YOUNG_GARBAGE_LIMIT): buffered rows
    # otherwise get promoted and trigger full collections (on 200k
    # list-valued rows GC took 3 s of a 6.5 s run; 0.3 s paused). Beam
    # buffers the rows before a batch reaches this DoFn, so a pause cannot
    # start at the first row of a block.
    self._gc = GcPause()

  def get_input_batch_type(self, input_element_type):
    return typehints.List[input_element_type]

  def infer_output_type(self, input_type):
    return Block  # not inferred: Beam's bytecode inference took ~0.4 s here

  def start_bundle(self):
    self._parts: list = []
    self._buffered = 0
    self._gc.pause()

  @beam.DoFn.yields_elements
  def process_batch(self, batch, timestamp=beam.DoFn.TimestampParam,
                    window=beam.DoFn.WindowParam):
    return self._add(batch, timestamp, (window, ))

  def _add(self, batch: list, timestamp, windows: tuple):
    rows = batch
    if not all(type(r) is dict for r in batch):  # pylint: disable=unidiomatic-typecheck
      # Buffered rows are all dicts: columnar elements become blocks of
      # their own, and the rest is made dicts or dead-lettered here.
      rows, failures = [], []
      for element in batch:
        form = None if type(element) is dict else _columnar_form(element)  # pylint: disable=unidiomatic-typecheck
        if form is not None:
          yield from self._emit(_columnar_block(element, form, timestamp, windows))
          continue
        try:
          rows.append(_to_dict(element))
        except Exception as e:  # pylint: disable=broad-except
          failures.append(Failure(element, timestamp, windows, e, self._first))
      yield from self._failures.route(failures)
    if rows:
      last = self._parts[-1] if self._parts else None
      if last is not None and last.timestamp == timestamp and last.windows == windows:
        last.rows.extend(rows)
      else:
        self._parts.append(_Part(list(rows), timestamp, windows))
      self._buffered += len(rows)
      while self._buffered >= self._block_rows:
        yield from self._flush(self._block_rows)
        if gc.get_count()[0] > YOUNG_GARBAGE_LIMIT:
          gc.collect(0)

  def finish_bundle(self):
    try:
      while self._buffered:
        yield from self._flush(self._block_rows)
    finally:
      self._gc.resume()

  def teardown(self):
    self._gc.resume()

  def _take(self, n: int) -> list:
    """The first ``n`` buffered rows (or all), as parts."""
    taken, left = [], n
    while left and self._parts:
      part = self._parts[0]
      if len(part.rows) <= left:
        taken.append(self._parts.pop(0))
        left -= len(part.rows)
      else:
        taken.append(_Part(part.rows[:left], part.timestamp, part.windows))
        self._parts[0] = _Part(part.rows[left:], part.timestamp, part.windows)
        left = 0
    self._buffered -= n - left
    return taken

  def _flush(self, n: int):
    parts = self._take(n)
    rows = parts[0].rows if len(parts) == 1 else [r for p in parts for r in p.rows]
    yield from self._emit(Block.of_rows(rows, *_stamps_and_windows(parts)))

  def _emit(self, block: Block):
    failures = read_stage_inputs(block, self._plan)
    for column, reader, name in self._later_reads:
      failures.extend(block.read(column, reader, name))
    yield from self._failures.route(failures)
    block.strip(self._strip)
    if len(block):
      yield as_element(block)


class ToBlocksPerRow(ToBlocks):
  """``ToBlocks`` for runners that call ``process`` per element (see
  ``_core.batched_dofns``): the same blocks, one Python call per row (and
  per window of a row in several)."""
  def process(self, element, timestamp=beam.DoFn.TimestampParam,
              window=beam.DoFn.WindowParam):
    return self._add([element], timestamp, (window, ))


def to_blocks(pipeline: beam.Pipeline, *args, **kwargs) -> ToBlocks:
  """The ``ToBlocks`` for ``pipeline``'s runner."""
  per_row = not runner_hands_over_batches(pipeline)
  return (ToBlocksPerRow if per_row else ToBlocks)(*args, **kwargs)


class ApplyStage(beam.DoFn):
  """Applies one stage to blocks: the next stage's block, or (last stage)
  the rows / batches."""
  def __init__(self, plan: StagePlan, next_plan: Optional[StagePlan],
               output, catch, stats_dir: Optional[str], stage: int):
    self._plan = plan
    self._next = next_plan
    self._output = output  # RowOutput of the last stage, else None
    self._catch = catch
    self._failures = _Failures(catch)
    self._stats_dir = stats_dir
    self._stage = stage
    self._ready = None
    self._stats_id = None

  def infer_output_type(self, input_type):
    # Not inferred: Beam's bytecode inference took ~0.4 s here.
    return Any if self._output is not None else Block

  def setup(self):
    if self._stats_dir is not None:  # read mode: statistics from the files
      from . import _artifacts
      needs = any(op._analyzers(i) for i, op in self._plan.ops)
      stats = _artifacts.read_stage(self._stats_dir, self._stage) if needs else {}
      self._ready = self._prepare(stats)

  def _prepare(self, stats):
    return {i: op._ready(stats, i) for i, op in self._plan.ops}

  def process(self, block, stats=None):  # no annotation: see infer_output_type
    if stats is not None and id(stats) != self._stats_id:
      self._ready, self._stats_id = self._prepare(stats), id(stats)
    elif self._ready is None:
      self._ready = self._prepare({})
    # A list, not a generator: Beam walks a list in C, and resumes a
    # generator once per output row.
    out: list = []
    for part, failures in self._apply(block):
      out.extend(self._failures.route(failures))
      if part is None or not len(part):
        continue
      if self._output is None:
        out.extend(self._failures.route(read_stage_inputs(part, self._next)))
        if len(part):
          out.append(as_element(part))
      else:
        out.extend(self._output.emit(part))
    return out

  def _apply(self, block: Block):
    """(block after the stage, failures) pairs: one, or several when a
    failing block was bisected."""
    work = block.copy()
    try:
      failures = apply_ops(work, self._plan, self._ready)
    except _OpFailed as failed:
      if self._catch is None or not isinstance(failed.error, self._catch):
        raise failed.error from None
      if len(block) == 1:
        yield None, [Failure(block.element(0), block.timestamp(0),
                             block.window(0), failed.error, failed.name)]
        return
      half = len(block) // 2
      for rows in (np.arange(half), np.arange(half, len(block))):
        yield from self._apply(block.select(rows))
      return
    yield work, failures


class _OpFailed(Exception):
  def __init__(self, error: BaseException, name: str):
    super().__init__(str(error))
    self.error, self.name = error, name


def apply_ops(block: Block, plan: StagePlan, ready: dict) -> list[Failure]:
  """Applies a stage's transforms to ``block`` in place; returns the rows
  taken out (unreadable, or refused by a transform)."""
  failures = []
  for i, op in plan.ops:
    name = type(op).__name__
    for column in op.columns:
      failures.extend(block.read(column, op._reader, name))
      if not len(block):
        return failures
      col = block.column(column, op._reader)
      bad = op._row_errors(col, column, ready[i])
      if bad:
        failures.extend(block.drop({j: (e, name) for j, e in bad.items()}))
        col = block.column(column, op._reader)
      if not len(block):  # every row refused: nothing left to transform
        return failures
      try:
        outs = op._apply_column(col, column, ready[i], i)
      except Exception as e:  # pylint: disable=broad-except
        raise _OpFailed(e, name) from e
      for out_name, out in outs.items():
        block.write(out_name, out)
  return failures
