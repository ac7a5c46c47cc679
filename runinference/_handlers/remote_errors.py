"""Errors of remote model calls and how the retry policy reads them.

An error is *transient* when it says nothing about the rows sent (a server
error, throttling, a timeout, a lost connection): it is retried and, once the
retries are spent, the batch fails as a whole (``BatchFailedError``) instead
of being bisected. A *row* error (an HTTP 4xx that the protocol ties to the
rows sent, e.g. MLflow's BAD_REQUEST) is not retried and stays an ordinary
``RemoteRequestError``, so the engine can bisect the batch down to the bad
rows. Everything else that is wrong with an answer fails the batch once,
unbisected and (by default) not retried: a 4xx the protocol does not tie to a
row (``RemoteRequestRejected``), a 2xx answer of the wrong shape or count
(``RemoteProtocolError``), a redirect that is not followed
(``RemoteRedirectError``).
"""
from __future__ import annotations

import sys
from typing import Optional

from ..exceptions import (  # noqa: F401  (the Remote* errors re-exported)
    BatchFailedError, RateLimitExceeded, RemoteConnectionError,
    RemoteRequestError, RemoteServerError, RemoteTimeoutError,
    ResultCountError, RunInferenceError)

__all__ = [
    'RemoteRequestError',
    'RemoteRequestRejected',
    'RemoteProtocolError',
    'RemoteRedirectError',
    'RemoteResultCountError',
    'BisectionBudgetSpent',
    'AnswerFormatError',
    'RemoteServerError',
    'RemoteConnectionError',
    'RemoteTimeoutError',
    'is_transient',
    'retry_on_transient',
    'BatchFailedError',
]

# HTTP statuses that are about the service, not the payload.
TRANSIENT_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


class RemoteRequestRejected(RemoteRequestError, BatchFailedError):
  """The service refused the request (an HTTP 4xx) and its protocol does not
  say the refusal is about a row (an unknown model, a bad token, a payload
  the endpoint does not take): every part of the batch would be refused the
  same way, so the batch fails once, as a whole, and is not bisected."""


class RemoteProtocolError(BatchFailedError):
  """The service's answer breaks its protocol: a success whose body is not
  JSON, lacks a field, has a tensor whose shape does not match its data, a
  non-numeric value where numbers are due, or the wrong number of
  predictions. It is about the service, not a row: the batch fails once, is
  not bisected and, by default, not retried (``retry_filter`` may allow
  it). ``url`` and ``status`` say who answered what."""
  def __init__(self, message: str, status: Optional[int] = None,
               url: str = ''):
    super().__init__(message)
    self.status = status
    self.url = url


class AnswerFormatError(RunInferenceError, ValueError):
  """Raised by a protocol's ``decode`` for an answer it cannot read (what
  was expected, what came); ``HttpModelHandler`` turns it into a
  ``RemoteProtocolError`` naming the URL and the status."""


class RemoteRedirectError(RemoteProtocolError):
  """The service answered with a redirect (3xx) that was not followed: not
  asked to (``follow_redirects``), to another host, or too many hops."""


class RemoteResultCountError(RemoteProtocolError, ResultCountError):
  """The service answered a different number of predictions than rows."""


class BisectionBudgetSpent(BatchFailedError):
  """A batch failing with a row error was bisected until its request budget
  (``max_bisect_requests``) was spent: the rows not yet isolated fail
  together, with the last row error as the cause."""


def _is_httpx_transport_error(exc: BaseException) -> bool:
  httpx = sys.modules.get('httpx')
  return httpx is not None and isinstance(exc, httpx.TransportError)


def is_transient(exc: BaseException) -> bool:
  """True when ``exc`` is about the service rather than the rows sent."""
  if isinstance(exc, RemoteRequestError):
    return False
  if isinstance(exc, (RemoteServerError, RateLimitExceeded, TimeoutError,
                      ConnectionError, BatchFailedError)):
    return True
  return _is_httpx_transport_error(exc)


def retry_on_transient(exc: Exception) -> bool:
  """The default ``retry_filter``: retry everything (as the reference does)
  except errors about the payload, which would fail again."""
  return not isinstance(
      exc, (RemoteRequestError, ResultCountError, RemoteProtocolError))
