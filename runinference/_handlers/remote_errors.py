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

from ..exceptions import (  # noqa: F401  (the Remote* errors re-exported)
    BatchFailedError, RateLimitExceeded, RemoteConnectionError,
    RemoteRequestError, RemoteServerError, RemoteTimeoutError,
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
