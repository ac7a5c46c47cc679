"""The worker threads that send a remote handler's concurrent requests.

``ThreadPoolExecutor`` joins its workers when the interpreter exits, so one
request hung past its timeout (a never-ending answer) would keep the process
alive after the pipeline is done. These workers are daemon threads: a request
the handler has given up on can never hold the process."""
from __future__ import annotations

import concurrent.futures as cf
import queue
import threading
from typing import Any, Callable

__all__ = ['DaemonPool']


class DaemonPool:
  """At most ``size`` daemon threads running submitted calls in order."""
  def __init__(self, size: int, name: str):
    self._size, self._name = size, name
    self._queue: queue.SimpleQueue = queue.SimpleQueue()
    self._threads: list[threading.Thread] = []
    self._lock = threading.Lock()
    self._closed = False

  def submit(self, fn: Callable[..., Any], *args) -> cf.Future:
    future: cf.Future = cf.Future()
    with self._lock:
      if self._closed:  # abandoned meanwhile: the caller resends it
        future.cancel()
        return future
      self._queue.put((future, fn, args))
      if len(self._threads) < self._size:
        thread = threading.Thread(
            target=self._work, daemon=True,
            name=f'{self._name}-{len(self._threads)}')
        self._threads.append(thread)
        thread.start()
    return future

  def _work(self) -> None:
    while True:
      item = self._queue.get()
      if item is None:
        return
      future, fn, args = item
      if not future.set_running_or_notify_cancel():
        continue
      try:
        future.set_result(fn(*args))
      except BaseException as e:  # pylint: disable=broad-except
        future.set_exception(e)

  def shutdown(self) -> None:
    """Cancels the calls not started yet and lets the threads end once
    their current call returns (a hung one is left behind, as a daemon)."""
    with self._lock:
      self._closed = True
      while True:
        try:
          item = self._queue.get_nowait()
        except queue.Empty:
          break
        if item is not None:
          item[0].cancel()
      for _ in self._threads:
        self._queue.put(None)
