"""Running a call with a time limit (``with_exception_handling(timeout=)``).

A hung call cannot be killed in Python. It runs on a daemon thread, so an
abandoned call never keeps the process alive, and at most ``max_hung``
abandoned calls (each holding its thread and the model it was given) may be
outstanding: past that, calls fail at once instead of starting another
thread and loading another model copy."""
from __future__ import annotations

import logging
import queue
import threading
from typing import Any, Callable, Optional

from ..exceptions import InferenceTimeoutError, TooManyHungCalls
from .metrics import carry_step_metrics

_LOGGER = logging.getLogger(__name__)

DEFAULT_MAX_HUNG = 2


class _Worker:
  """One daemon thread running calls handed to it, one at a time."""
  def __init__(self) -> None:
    self.tasks: queue.SimpleQueue = queue.SimpleQueue()
    self.thread = threading.Thread(
        target=self._loop, name='runinference-timeout', daemon=True)
    self.thread.start()

  def _loop(self) -> None:
    while True:
      task = self.tasks.get()
      if task is None:
        return
      fn, box, done = task
      try:
        box.append((True, fn()))
      except BaseException as exc:  # pylint: disable=broad-except
        box.append((False, exc))
      done.set()

  def stop(self) -> None:
    self.tasks.put(None)


class TimeoutRunner:
  """Calls ``fn()`` and gives up after ``timeout`` seconds (never when the
  timeout is None) with ``InferenceTimeoutError``."""
  def __init__(self, timeout: Optional[float], max_hung: int = DEFAULT_MAX_HUNG):
    self.timeout = timeout
    self.max_hung = max_hung
    self._worker: Optional[_Worker] = None
    self._hung: list[threading.Thread] = []
    self._lock = threading.Lock()

  def hung_calls(self) -> int:
    """Abandoned calls still running."""
    with self._lock:
      self._hung = [t for t in self._hung if t.is_alive()]
      return len(self._hung)

  def __call__(self, fn: Callable[[], Any]) -> Any:
    if self.timeout is None:
      return fn()
    if self.hung_calls() >= self.max_hung:
      raise TooManyHungCalls(
          f'{self.max_hung} earlier model calls timed out and are still '
          'running; RunInference does not start another (each would hold a '
          'thread and a model copy). Fix the model call that hangs, or raise '
          'with_exception_handling(timeout=...).')
    with self._lock:
      worker = self._worker
      if worker is None or not worker.thread.is_alive():
        worker = self._worker = _Worker()
    box: list = []
    done = threading.Event()
    worker.tasks.put((carry_step_metrics(fn), box, done))
    if not done.wait(self.timeout):
      with self._lock:
        if self._worker is worker:
          self._worker = None
        self._hung.append(worker.thread)
      worker.stop()  # it exits once the hung call returns, if ever
      _LOGGER.error(
          'A model call ran past the %ss timeout and was abandoned (its '
          'daemon thread does not keep the process alive).', self.timeout)
      raise InferenceTimeoutError(
          f'RunInference gave up after {self.timeout}s (the timeout set in '
          'with_exception_handling(timeout=...)); the model was dropped and '
          'will be reloaded for the next batch.')
    ok, value = box[0]
    if ok:
      return value
    raise value

  def close(self) -> None:
    with self._lock:
      worker, self._worker = self._worker, None
    if worker is not None:
      worker.stop()
