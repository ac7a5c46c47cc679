"""A cap on the requests a failing batch's bisection may make.

When a batch fails with a row error (an HTTP 4xx the protocol ties to the
rows), the engine bisects it: it calls the handler again on halves of the
batch, then on halves of the halves that fail, down to single rows. Against an
endpoint that refuses everything, that is about two requests per row. The
handler cannot see the bisection, but it can recognise it: every bisection
call is a contiguous run of the very objects of the failed batch (``is``,
not ``==``). ``BisectionBudget`` counts the requests of those calls and,
past the cap, fails a call without sending it (``BisectionBudgetSpent``, a
``BatchFailedError`` the engine does not bisect further). The budget ends
once the failed batch's rows are all settled (or a call for other rows
comes)."""
from __future__ import annotations

import math
import threading
from typing import Optional, Sequence

from .remote_errors import BisectionBudgetSpent

__all__ = ['BisectionBudget', 'default_bisect_requests']


def default_bisect_requests(rows: int) -> int:
  """Enough to isolate a bad row or two: 4 per halving of the batch."""
  return max(4, 4 * math.ceil(math.log2(max(rows, 2))))


class _Failed:
  """A batch that failed with a row error, while it is being bisected."""
  def __init__(self, rows: Sequence, cap: int):
    self.rows = list(rows)  # kept: the ids below stay theirs
    self.cap = cap
    self.spent = 0
    self.settled = 0
    self.last_error: Optional[BaseException] = None
    self.positions: dict[int, list[int]] = {}
    for i, row in enumerate(self.rows):
      self.positions.setdefault(id(row), []).append(i)

  def covers(self, batch: Sequence) -> bool:
    """Whether ``batch`` is a shorter contiguous run of these objects."""
    n = len(batch)
    if not 0 < n < len(self.rows):
      return False
    for start in self.positions.get(id(batch[0]), ()):
      if start + n <= len(self.rows) and all(
          batch[j] is self.rows[start + j] for j in range(n)):
        return True
    return False


class BisectionBudget:
  """``begin(batch)`` before a call; ``spend(n)`` for each request sent;
  ``end(batch, error, row_error)`` after it."""
  def __init__(self, max_requests: Optional[int]):
    self.max_requests = max_requests
    self._failed: Optional[_Failed] = None
    self._lock = threading.Lock()

  def __getstate__(self):
    return {'max_requests': self.max_requests}

  def __setstate__(self, state):
    self.__init__(state['max_requests'])

  def begin(self, batch: Sequence) -> Optional[_Failed]:
    """The failed batch ``batch`` is a bisection call of (None when it is a
    batch of its own); raises ``BisectionBudgetSpent`` when its budget is
    spent."""
    with self._lock:
      failed = self._failed
      if failed is None or not failed.covers(batch):
        self._failed = None
        return None
      if failed.spent >= failed.cap:
        failed.settled += len(batch)
        self._forget_if_settled(failed)
        error = BisectionBudgetSpent(
            f'{len(batch)} row(s) not isolated: this batch of '
            f'{len(failed.rows)} rows failed with a row error and its '
            f'bisection already made {failed.spent} request(s) '
            f'(max_bisect_requests={failed.cap}).')
        raise error from failed.last_error
      return failed

  def spend(self, failed: Optional[_Failed], requests: int) -> None:
    if failed is not None:
      with self._lock:
        failed.spent += requests

  def end(self, batch: Sequence, failed: Optional[_Failed],
          row_error: Optional[BaseException]) -> None:
    """Records how a call ended: ``row_error`` is the error it raised when
    the engine will bisect the call's rows further (else None)."""
    with self._lock:
      if failed is None:
        if row_error is not None and len(batch) > 1:
          cap = self.max_requests or default_bisect_requests(len(batch))
          self._failed = _Failed(batch, cap)
          self._failed.last_error = row_error
        return
      if row_error is not None:
        failed.last_error = row_error
      if row_error is None or len(batch) == 1:
        failed.settled += len(batch)
        self._forget_if_settled(failed)

  def _forget_if_settled(self, failed: _Failed) -> None:
    if failed.settled >= len(failed.rows) and self._failed is failed:
      self._failed = None
