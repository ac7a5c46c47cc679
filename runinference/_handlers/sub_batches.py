"""Length-aware execution of one batch: order the examples by length, cut
sub-batches whose padded size (rows x longest) stays under a token budget,
run each, and put the results back in input order. Knows nothing of models."""
from __future__ import annotations

import time
from typing import Any, Callable, Optional, Sequence

from ..exceptions import ConfigurationError, ResultCountError
from .._core.call_sizing import CallSizer

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


class TokenBudget:
  """Padded tokens (rows x longest) per sub-batch. A number the user gave
  is kept; otherwise it is learned, per device, from the sub-batches' own
  call times: enough tokens that a call's fixed cost is ~5% of it
  (``CallSizer``), starting at ``start`` (default: the device default)."""
  def __init__(self, fixed: Optional[int] = None,
               start: Optional[dict] = None):
    self._fixed = check_budget(fixed)
    self._start = {**DEFAULT_TOKENS_PER_BATCH, **(start or {})}
    self._sizers: dict[str, CallSizer] = {}

  def _sizer(self, device: str) -> CallSizer:
    if device not in self._sizers:
      self._sizers[device] = CallSizer(
          start=self._start[device], min_rows=MIN_TOKENS_PER_BATCH,
          max_rows=MAX_TOKENS_PER_BATCH[device])
    return self._sizers[device]

  def tokens(self, on_gpu: bool) -> int:
    if self._fixed is not None:
      return self._fixed
    return self._sizer('GPU' if on_gpu else 'CPU').rows

  def groups(self, lengths: Sequence[int], on_gpu: bool) -> list[list[int]]:
    """Sub-batches (indices, shortest first) under the current budget."""
    return plan(lengths, self.tokens(on_gpu))

  def call(self, group: list[int], lengths: Sequence[int], on_gpu: bool,
           fn: Callable[[], Any]) -> Any:
    """``fn()``, the model call of ``group``; its time feeds the budget."""
    if self._fixed is not None:
      return fn()
    start = time.perf_counter()
    out = fn()
    padded = len(group) * max(max(lengths[i] for i in group), 1)
    self._sizer('GPU' if on_gpu else 'CPU').observe(
        padded, time.perf_counter() - start)
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


def plan(lengths: Sequence[int], max_tokens: int) -> list[list[int]]:
  """Indices of the examples, shortest first, cut into sub-batches whose
  ``len(sub) * longest`` is at most ``max_tokens`` (an example longer than
  the budget runs alone)."""
  order = sorted(range(len(lengths)), key=lengths.__getitem__)
  groups: list[list[int]] = []
  current: list[int] = []
  for i in order:
    longest = max(lengths[i], 1)  # sorted: the newcomer is the longest
    if current and (len(current) + 1) * longest > max_tokens:
      groups.append(current)
      current = []
    current.append(i)
  if current:
    groups.append(current)
  return groups


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
