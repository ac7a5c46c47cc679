"""Isolating failures: bisecting a failed batch down to its bad rows, the
dead-letter tags and records, and the error policy. Knows nothing of which
step it runs (the per-element engine and the columnar scorer both use it)."""
from __future__ import annotations

import dataclasses
import pickle
import reprlib
import traceback
from typing import Any, Callable, Generic, Optional, TypeVar

from ..exceptions import BatchFailedError, ConfigurationTypeError

FAILED_INFERENCES = 'failed_inferences'

R = TypeVar('R')


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


def is_pickling_error(exc: BaseException) -> bool:
  """Whether ``exc`` most likely came from pickling a value: a
  ``pickle.PickleError``, or the ``TypeError``/``AttributeError`` that
  unpicklable objects (locks, C objects, local functions) raise."""
  if isinstance(exc, pickle.PickleError):
    return True
  return (isinstance(exc, (TypeError, AttributeError)) and
          'pickle' in str(exc).lower())


@dataclasses.dataclass(frozen=True)
class UnpicklableElement:
  """Stands in a dead-letter record for an element that cannot be pickled
  (a generator, a lambda, an open file...): Beam must encode every record it
  outputs, and such an element would crash the pipeline instead of becoming
  a dead letter. Keeps the element's type and (shortened) repr."""
  type_name: str
  text: str


_SAFE = frozenset((str, bytes, int, float, bool, type(None)))
_short = reprlib.Repr()
_short.maxstring = _short.maxother = 200


def picklable_record(record: Any) -> Any:
  """``record`` itself if it pickles, else a copy in which each part that does
  not pickle is an ``UnpicklableElement`` (tuples, lists and dicts are looked
  into, so a key or the error description survives). Dead letters only: one
  extra pickle per record."""
  if type(record) in _SAFE:
    return record
  try:
    pickle.dumps(record, pickle.HIGHEST_PROTOCOL)
    return record
  except Exception:  # pylint: disable=broad-except  (any reason it fails)
    pass
  if type(record) in (tuple, list):
    return type(record)(picklable_record(v) for v in record)
  if type(record) is dict:
    return {picklable_record(k): picklable_record(v)
            for k, v in record.items()}
  kind = type(record)
  return UnpicklableElement(f'{kind.__module__}.{kind.__qualname__}',
                            _short.repr(record))


def _is_exception_class(value: Any) -> bool:
  return isinstance(value, type) and issubclass(value, BaseException)


def check_exc_class(exc_class: Any) -> None:
  """Raises unless ``exc_class`` is an exception class or a tuple of them
  (what ``isinstance`` takes), so a typo fails at construction."""
  ok = _is_exception_class(exc_class) or (
      isinstance(exc_class, tuple) and exc_class and
      all(_is_exception_class(c) for c in exc_class))
  if not ok:
    hint = (f' (the class itself, e.g. exc_class={exc_class}, not a string)'
            if isinstance(exc_class, str) else '')
    raise ConfigurationTypeError(
        'with_exception_handling(exc_class=...) must be an exception class or '
        f'a tuple of exception classes, got {exc_class!r}{hint}.')


@dataclasses.dataclass(frozen=True)
class ErrorPolicy:
  """How RunInference treats failures (set by ``with_exception_handling``)."""
  enabled: bool = False
  exc_class: Any = Exception
  threshold: float = 1.0
  timeout: Optional[float] = None
  bisect: bool = True

  def catches(self, exc: BaseException) -> bool:
    return self.enabled and isinstance(exc, self.exc_class)


@dataclasses.dataclass(frozen=True)
class DeadLetter:
  """One record for a dead-letter output: ``item`` is what the caller
  carries (it gives the record its timestamp and window), ``tag`` the output
  and ``record`` the value written there."""
  item: Any
  tag: str
  record: Any


@dataclasses.dataclass(frozen=True)
class RangeResult(Generic[R]):
  """What ``call(start, stop)`` returned for rows ``start:stop``."""
  start: int
  stop: int
  value: R


@dataclasses.dataclass(frozen=True)
class RangeFailure:
  """Rows ``start:stop`` failed with ``error`` (a single row, unless the
  error is one that is not bisected)."""
  start: int
  stop: int
  error: BaseException

  def indices(self) -> range:
    return range(self.start, self.stop)


@dataclasses.dataclass
class BisectOutcome(Generic[R]):
  """Results and failures of a bisected batch, both in row order; together
  they cover every row exactly once."""
  results: list[RangeResult[R]] = dataclasses.field(default_factory=list)
  failures: list[RangeFailure] = dataclasses.field(default_factory=list)

  def failed_rows(self) -> int:
    return sum(f.stop - f.start for f in self.failures)


def is_out_of_memory(exc: BaseException) -> bool:
  """A model call that ran out of (host or device) memory: a MemoryError,
  torch's ``OutOfMemoryError``, or a framework error saying so."""
  if isinstance(exc, MemoryError) or type(exc).__name__ == 'OutOfMemoryError':
    return True
  return isinstance(exc, RuntimeError) and 'out of memory' in str(exc).lower()


def not_bisected(exc: BaseException) -> bool:
  """Errors that are about the batch, not a row: a timeout or a
  ``BatchFailedError`` (server error, throttling, lost connection...). Their
  rows fail once, together; calling halves again would only repeat them."""
  return isinstance(exc, (TimeoutError, BatchFailedError))


def bisect_failures(
    n: int,
    call: Callable[[int, int], R],
    first_error: BaseException,
    *,
    catches: Callable[[BaseException], bool],
    on_timeout: Optional[Callable[[BaseException], None]] = None,
    enabled: bool = True) -> BisectOutcome[R]:
  """Finds the rows of a failed batch of ``n`` rows that fail on their own.

  ``call(start, stop)`` runs rows ``start:stop`` and returns their result (or
  raises); the whole batch already failed with ``first_error``. An error
  ``catches`` rejects is raised. Errors for which ``not_bisected`` holds fail
  their whole range at once (``on_timeout`` is called for a timeout, e.g. to
  drop a model that may be hung); so does every error when ``enabled`` is
  false. Other failing ranges are halved until single rows remain.
  """
  outcome: BisectOutcome[R] = BisectOutcome()
  _settle(0, n, first_error, call, catches, on_timeout, enabled, outcome)
  return outcome


def _settle(start, stop, exc, call, catches, on_timeout, enabled,
            outcome: BisectOutcome) -> None:
  if not catches(exc):
    raise exc
  if isinstance(exc, TimeoutError) and on_timeout is not None:
    on_timeout(exc)
  if stop - start == 1 or not enabled or not_bisected(exc):
    outcome.failures.append(RangeFailure(start, stop, exc))
    return
  mid = (start + stop) // 2
  for lo, hi in ((start, mid), (mid, stop)):
    try:
      value = call(lo, hi)
    except BaseException as e:  # pylint: disable=broad-except
      _settle(lo, hi, e, call, catches, on_timeout, enabled, outcome)
    else:
      outcome.results.append(RangeResult(lo, hi, value))
