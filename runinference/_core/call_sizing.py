"""How much work one model call gets, from measured call times: enough that
the call's fixed cost (Python dispatch, thread hand-off, a tree ensemble's
set-up, an OpenMP fork/join, a transformer's layer launches) is a small
share of it. Rows per call for the columnar path (``rows_per_call='auto'``),
padded tokens per call for length-aware text. Knows nothing of Beam."""
from __future__ import annotations

import collections
from ..exceptions import ConfigurationError
from .batching import fit_line


class CallSizer:
  """Units (rows, tokens) per model call, learned from ``(units, seconds)``
  of past calls.

  Calls start at ``start`` units; until calls of two sizes are known each
  call doubles (to tell the fixed part of a call from the per-unit part),
  unless a call already takes ``explore_below_seconds`` (50 ms: a fixed
  cost of a few ms is then a few percent; merging large chunks would only
  copy them). With no fixed cost found, calls go back to the smallest.
  Then a least-squares line ``seconds = fixed + per_unit * units`` over the
  recent calls gives the size at which ``fixed`` is ``fixed_share`` of a
  call, approached by at most 8x a step and kept within ``[min_rows, max_rows]``.
  """
  _HISTORY = 16
  _MAX_GROWTH = 8.0

  def __init__(self, fixed_share: float = 0.05, max_rows: int = 1 << 18,
               start: int = 1, min_rows: int = 1,
               explore_below_seconds: float = 0.05):
    if not 0 < fixed_share < 1:
      raise ConfigurationError(
          f'fixed_share must be in (0, 1), got {fixed_share}.')
    self._share = fixed_share
    self._max = max_rows
    self._min = min_rows
    self._explore_below = explore_below_seconds
    self.rows = start  # columnar: 1, i.e. whatever one chunk holds
    self._seen: collections.deque = collections.deque(maxlen=self._HISTORY)

  def observe(self, rows: int, seconds: float) -> None:
    """Records a call of ``rows`` rows that took ``seconds``."""
    if rows <= 0:
      return
    self._seen.append((rows, max(seconds, 0.0)))
    line = fit_line(self._seen)
    if line is None:  # one size so far: learn the slope with a larger call,
      if seconds < self._explore_below:  # unless calls are long already
        self.rows = min(self._max, max(self.rows, rows) * 2)
      return
    fixed, per_row = line
    want: float
    if per_row <= 0:  # the fit says nothing yet (noise): keep growing
      want = self.rows * 2
    elif fixed <= 0:  # no fixed cost to amortize: the smallest calls
      want = self._min
    else:
      want = fixed * (1 - self._share) / (self._share * per_row)
    want = min(want, max(self.rows, rows) * self._MAX_GROWTH)
    self.rows = int(min(self._max, max(self._min, want)))
