"""Length-aware execution of one batch: order the examples by length, cut
sub-batches whose padded size (rows x longest) stays under a token budget,
run each, and put the results back in input order. Knows nothing of models."""
from __future__ import annotations

import collections
import time
from typing import Any, Callable, Optional, Sequence

from ..exceptions import ConfigurationError, ResultCountError
from .._core.batching import fit_line

#: Padded tokens of the first sub-batches when the handler is not told a
#: number; the budget is then learned from the calls' times (TokenBudget). On
#: the CPU a small encoder (all-MiniLM-L6-v2, 2 threads) ran fastest at
#: 512-768 padded tokens per call on 1,000 ragged sentences (181 sentences/s
#: at 512, 137 at 2048, 125 at 4096).
DEFAULT_TOKENS_PER_BATCH = {'CPU': 512, 'GPU': 65536}
#: Bounds of a learned budget.
MIN_TOKENS_PER_BATCH = 128
MAX_TOKENS_PER_BATCH = {'CPU': 16384, 'GPU': 1 << 20}


def check_budget(max_tokens_per_batch: Optional[int]) -> Optional[int]:
  """Validates a ``max_tokens_per_batch`` option (None: the device default)."""
  if max_tokens_per_batch is None:
    return None
  if (isinstance(max_tokens_per_batch, bool) or
      not isinstance(max_tokens_per_batch, int) or max_tokens_per_batch < 1):
    raise ConfigurationError(
        'max_tokens_per_batch must be a positive int (the most padded tokens, '
        'rows x longest, in one model call) or None for the device default '
        f'{DEFAULT_TOKENS_PER_BATCH}; got {max_tokens_per_batch!r}.')
  return max_tokens_per_batch


def budget_for(max_tokens_per_batch: Optional[int], on_gpu: bool) -> int:
  if max_tokens_per_batch is not None:
    return max_tokens_per_batch
  return DEFAULT_TOKENS_PER_BATCH['GPU' if on_gpu else 'CPU']


class CallCosts:
  """``seconds = fixed + per_token * padded`` of one device's model calls,
  fitted over calls of every size seen: the latest few per power-of-two
  size bucket, so small calls keep pinning the fixed part after the calls
  have grown (a history of the recent calls alone, all of similar size,
  leaves the fixed part to noise). The first call (warm-up) is not used."""
  _PER_BUCKET = 4

  def __init__(self):
    self._calls = 0
    self._buckets: dict[int, collections.deque] = {}
    self.largest = 0

  def observe(self, padded: int, seconds: float) -> None:
    self._calls += 1
    if self._calls == 1 or padded <= 0:
      return
    self.largest = max(self.largest, padded)
    self._buckets.setdefault(padded.bit_length(), collections.deque(
        maxlen=self._PER_BUCKET)).append((padded, max(seconds, 0.0)))

  def line(self) -> Optional[tuple[float, float]]:
    """``(fixed, per_token)``, the fixed part at least 0; None until calls
    of two sizes are known and larger calls take longer."""
    line = fit_line([p for calls in self._buckets.values() for p in calls])
    if line is None or line[1] <= 0:
      return None
    return max(line[0], 0.0), line[1]


class TokenBudget:
  """Padded tokens (rows x longest) per sub-batch. A number the user gave
  is kept. Otherwise, per device, calls start at ``start`` (default: the
  device default) and double while their times do not yet give a cost line;
  then each batch gets the budget whose plan the line predicts fastest
  (``cheapest_budget``), at most twice the largest call measured."""
  def __init__(self, fixed: Optional[int] = None,
               start: Optional[dict] = None,
               clock: Callable[[], float] = time.perf_counter):
    self._fixed = check_budget(fixed)
    self._clock = clock  # seconds; a test's deterministic clock
    self._start = {**DEFAULT_TOKENS_PER_BATCH, **(start or {})}
    self._costs: dict[str, CallCosts] = {}
    self._current: dict[str, int] = {}

  def _device(self, on_gpu: bool) -> str:
    device = 'GPU' if on_gpu else 'CPU'
    if device not in self._costs:
      self._costs[device] = CallCosts()
      self._current[device] = self._start[device]
    return device

  def tokens(self, on_gpu: bool) -> int:
    """The budget of the latest plan (or the next, before any)."""
    if self._fixed is not None:
      return self._fixed
    return self._current[self._device(on_gpu)]

  def groups(self, lengths: Sequence[int], on_gpu: bool) -> list[list[int]]:
    """Sub-batches (indices, shortest first) under this batch's budget:
    larger sub-batches pay a call's fixed cost fewer times but pad more, and
    which wins depends on the batch's lengths."""
    if self._fixed is not None:
      return plan(lengths, self._fixed)
    device = self._device(on_gpu)
    costs = self._costs[device]
    line = costs.line()
    if line is not None:
      largest = min(MAX_TOKENS_PER_BATCH[device],
                    max(2 * costs.largest, MIN_TOKENS_PER_BATCH))
      self._current[device] = cheapest_budget(lengths, line, largest)
    return plan(lengths, self._current[device])

  def call(self, group: list[int], lengths: Sequence[int], on_gpu: bool,
           fn: Callable[[], Any]) -> Any:
    """``fn()``, the model call of ``group``; its time feeds the budget."""
    if self._fixed is not None:
      return fn()
    start = self._clock()
    out = fn()
    seconds = self._clock() - start
    device = self._device(on_gpu)
    costs = self._costs[device]
    costs.observe(len(group) * max(max(lengths[i] for i in group), 1),
                  seconds)
    if costs.line() is None:  # still exploring: a larger call next
      self._current[device] = min(MAX_TOKENS_PER_BATCH[device],
                                  self._current[device] * 2)
    return out

  def run(self, batch: Sequence[Any], lengths: Sequence[int], on_gpu: bool,
          run: Callable[[list], Sequence[Any]]) -> list:
    """``run`` over length-aware sub-batches of ``batch``, outputs in input
    order."""
    return run_planned(
        batch, self.groups(lengths, on_gpu),
        lambda sub, group: self.call(group, lengths, on_gpu,
                                     lambda: run(sub)),
        with_group=True)


def _group_ends(ordered: Sequence[int], max_tokens: int) -> list[int]:
  """Where sub-batches end over lengths sorted shortest first: each holds
  as many as keep ``rows * longest`` within ``max_tokens`` (an example longer
  than the budget runs alone)."""
  ends: list[int] = []
  start = 0
  for i, n in enumerate(ordered):
    if i > start and (i - start + 1) * max(n, 1) > max_tokens:
      ends.append(i)
      start = i
  if ordered:
    ends.append(len(ordered))
  return ends


def plan(lengths: Sequence[int], max_tokens: int) -> list[list[int]]:
  """Indices of the examples, shortest first, cut into sub-batches whose
  ``len(sub) * longest`` is at most ``max_tokens`` (an example longer than
  the budget runs alone)."""
  order = sorted(range(len(lengths)), key=lengths.__getitem__)
  ends = _group_ends([lengths[i] for i in order], max_tokens)
  return [order[a:b] for a, b in zip([0] + ends[:-1], ends)]


#: Step between the budgets ``cheapest_budget`` compares.
_BUDGET_STEP = 2 ** 0.25


def _planned_cost(ordered: Sequence[int], max_tokens: int,
                  fixed: float, per_token: float) -> float:
  """Predicted seconds of ``plan`` over lengths already sorted."""
  ends = _group_ends(ordered, max_tokens)
  padded = sum((b - a) * max(ordered[b - 1], 1)
               for a, b in zip([0] + ends[:-1], ends))
  return len(ends) * fixed + padded * per_token


def cheapest_budget(lengths: Sequence[int], line: tuple[float, float],
                    largest: int) -> int:
  """The budget in ``[MIN_TOKENS_PER_BATCH, largest]`` (a geometric grid,
  ``largest`` included) whose plan of ``lengths`` costs least under
  ``line`` = (fixed seconds per call, seconds per padded token); the
  largest of equal costs."""
  fixed, per_token = line
  ordered = sorted(lengths)
  budgets = [largest]
  while budgets[-1] / _BUDGET_STEP >= MIN_TOKENS_PER_BATCH:
    budgets.append(int(budgets[-1] / _BUDGET_STEP))
  return min(budgets, key=lambda b: _planned_cost(ordered, b, fixed, per_token))


def run_planned(batch: Sequence[Any], groups: list[list[int]],
                run: Callable[..., Sequence[Any]],
                with_group: bool = False) -> list:
  """``run(sub_batch)`` (``run(sub_batch, group)`` with ``with_group``) for
  each group; its outputs, back in the order of ``batch``."""
  out: list = [None] * len(batch)
  for group in groups:
    sub = [batch[i] for i in group]
    results = list(run(sub, group) if with_group else run(sub))
    if len(results) != len(group):
      raise ResultCountError(
          f'The model returned {len(results)} results for a sub-batch of '
          f'{len(group)} examples; it must return one per example.')
    for i, result in zip(group, results):
      out[i] = result
  return out
