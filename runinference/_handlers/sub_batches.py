"""Length-aware execution of one batch: order the examples by length, cut
sub-batches whose padded size (rows x longest) stays under a token budget,
run each, and put the results back in input order. Knows nothing of models."""
from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

from ..exceptions import ConfigurationError, ResultCountError

#: Padded tokens per sub-batch when the handler is not told otherwise. On the
#: CPU a small encoder (all-MiniLM-L6-v2, 2 threads) ran fastest at 512-768
#: padded tokens per call (1,000 ragged sentences: 181 sentences/s at 512,
#: 137 at 2048, 125 at 4096); larger calls lose more to padding and cache.
DEFAULT_TOKENS_PER_BATCH = {'CPU': 512, 'GPU': 65536}


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
                run: Callable[[list], Sequence[Any]]) -> list:
  """``run(sub_batch)`` for each group; its outputs, back in the order of
  ``batch``."""
  out: list = [None] * len(batch)
  for group in groups:
    results = list(run([batch[i] for i in group]))
    if len(results) != len(group):
      raise ResultCountError(
          f'The model returned {len(results)} results for a sub-batch of '
          f'{len(group)} examples; it must return one per example.')
    for i, result in zip(group, results):
      out[i] = result
  return out
