"""Errors of remote model calls and how the retry policy reads them.

An error is *transient* when it says nothing about the rows sent (a server
error, throttling, a timeout, a lost connection): it is retried and, once the
retries are spent, the batch fails as a whole (``BatchFailedError``) instead
of being bisected. A *payload* error (an HTTP 4xx about the request body) is
about the rows: it is not retried and stays an ordinary error, so the engine
can bisect the batch down to the bad rows.
"""
from __future__ import annotations

import sys
from typing import Optional

from ..exceptions import (BatchFailedError, RateLimitExceeded,
                          ResultCountError, RunInferenceError)

__all__ = [
    'RemoteRequestError',
    'RemoteServerError',
    'RemoteConnectionError',
    'RemoteTimeoutError',
    'is_transient',
    'retry_on_transient',
    'BatchFailedError',
]

# HTTP statuses that are about the service, not the payload.
TRANSIENT_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


class RemoteRequestError(RunInferenceError, ValueError):
  """The service rejected the request itself (an HTTP 4xx such as 400 or
  422): something in the rows sent is wrong. Not retried."""
  def __init__(self, message: str, status: Optional[int] = None,
               body: str = ''):
    super().__init__(message)
    self.status = status
    self.body = body


class RemoteServerError(RunInferenceError, RuntimeError):
  """The service failed or throttled (HTTP 5xx, 429, 408): retried with
  backoff; ``retry_after`` holds the server's Retry-After, in seconds."""
  def __init__(self, message: str, status: Optional[int] = None,
               body: str = '', retry_after: Optional[float] = None):
    super().__init__(message)
    self.status = status
    self.body = body
    self.retry_after = retry_after


class RemoteConnectionError(RunInferenceError, ConnectionError):
  """The connection to the service failed or was dropped."""


class RemoteTimeoutError(RunInferenceError, TimeoutError):
  """A request ran past ``request_timeout_secs``."""


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
  return not isinstance(exc, (RemoteRequestError, ResultCountError))
