"""Overlap: model calls run on a thread of their own, one after another, while
the step's thread goes on building the next batch (running the steps fused
before and after inference, batching, turning Arrow into numpy). Model code
that releases the GIL (numpy, torch, onnxruntime, tree ensembles) then runs
at the same time as the pipeline's Python work.

At most one call runs and one waits; the step collects results in the order
it submitted them, so outputs keep their order and every batch submitted in
a bundle is collected before the bundle finishes."""
from __future__ import annotations

import queue
import threading
from concurrent.futures import Future
from typing import Any, Callable, Optional

from .metrics import carry_step_metrics


class CallThread:
  """A daemon thread running submitted calls in order.

  The thread that loads a model is the one that calls it (some models, e.g.
  an SQLite-backed one, only work on their own thread): submit the load too.
  A call's Beam metrics go to the step that submitted it.
  """
  def __init__(self, name: str = 'runinference-model-calls') -> None:
    self._name = name
    self._tasks: queue.SimpleQueue = queue.SimpleQueue()
    self._thread: Optional[threading.Thread] = None
    self._last: Optional[Future] = None

  def submit(self, fn: Callable[[], Any]) -> Future:
    """Runs ``fn()`` after the calls submitted before it; its result (or
    exception) is the returned future's."""
    if self._thread is None or not self._thread.is_alive():
      self._thread = threading.Thread(
          target=self._loop, name=self._name, daemon=True)
      self._thread.start()
    future: Future = Future()
    self._tasks.put((carry_step_metrics(fn), future))
    self._last = future
    return future

  def call(self, fn: Callable[[], Any]) -> Any:
    """``fn()`` on the thread, waited for."""
    return self.submit(fn).result()

  def wait_idle(self) -> None:
    """Returns once every call submitted so far has finished (failed ones
    included: their futures hold the error)."""
    last = self._last
    if last is not None:
      try:
        last.exception()
      except BaseException:  # pylint: disable=broad-except  # cancelled
        pass

  def _loop(self) -> None:
    while True:
      task = self._tasks.get()
      if task is None:
        return
      fn, future = task
      if not future.set_running_or_notify_cancel():
        continue
      try:
        future.set_result(fn())
      except BaseException as exc:  # pylint: disable=broad-except
        future.set_exception(exc)

  def close(self) -> None:
    """Stops the thread once the calls already submitted have run."""
    if self._thread is not None:
      self._tasks.put(None)
      self._thread = None
