"""Running a step so that failures are isolated, timed out and described.
Knows nothing of which step it runs."""
from __future__ import annotations

import concurrent.futures
import dataclasses
import threading
import traceback
from typing import Any, Callable

from ..exceptions import InferenceTimeoutError

FAILED_INFERENCES = 'failed_inferences'


def preprocess_tag(i: int) -> str:
  return f'failed_preprocessing_{i}'


def postprocess_tag(i: int) -> str:
  return f'failed_postprocessing_{i}'


def describe(exc: BaseException) -> tuple:
  """The error part of a dead-letter record, as Beam's exception handling
  writes it: ``(exception type, repr, formatted traceback lines)``."""
  return (
      type(exc),
      repr(exc),
      traceback.format_exception(type(exc), exc, exc.__traceback__))


@dataclasses.dataclass(frozen=True)
class ErrorPolicy:
  """How RunInference treats failures (set by ``with_exception_handling``)."""
  enabled: bool = False
  exc_class: Any = Exception
  threshold: float = 1.0
  timeout: float | None = None
  bisect: bool = True

  def catches(self, exc: BaseException) -> bool:
    return self.enabled and isinstance(exc, self.exc_class)


class TimeoutRunner:
  """Runs calls on a worker thread and gives up after ``timeout`` seconds.

  A hung call cannot be killed in Python: its thread is abandoned (daemon)
  and the next call gets a fresh worker."""
  def __init__(self, timeout: float | None):
    self.timeout = timeout
    self._pool = None
    self._lock = threading.Lock()

  def __call__(self, fn: Callable, *args):
    if self.timeout is None:
      return fn(*args)
    with self._lock:
      if self._pool is None:
        self._pool = concurrent.futures.ThreadPoolExecutor(
            1, thread_name_prefix='runinference-timeout')
      pool = self._pool
    future = pool.submit(fn, *args)
    try:
      return future.result(timeout=self.timeout)
    except concurrent.futures.TimeoutError:
      with self._lock:
        if self._pool is pool:
          self._pool = None
      pool.shutdown(wait=False, cancel_futures=True)
      raise InferenceTimeoutError(
          f'RunInference gave up after {self.timeout}s (the timeout set in '
          'with_exception_handling(timeout=...)); the model was dropped and '
          'will be reloaded for the next batch.') from None
