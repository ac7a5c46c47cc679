"""A pooled JSON-over-HTTP client (httpx) for the remote handlers: one
connection pool per worker, sized to the handler's concurrency, and the
service's answers mapped onto the retry policy's error types.

Only a 2xx is a success. ``timeout_secs`` bounds a whole request (a server
trickling a never-ending answer is cut off, and its connection closed, not
returned to the pool). Redirects are followed only when asked, to the same
host unless others are named, keeping the method and body."""
from __future__ import annotations

import dataclasses
import email.utils
import json
import threading
import time
import urllib.parse
from typing import Any, Callable, Mapping, Optional, Sequence

from ..exceptions import ConfigurationError, MissingDependencyError
from .remote_errors import (TRANSIENT_STATUSES, RemoteConnectionError,
                            RemoteProtocolError, RemoteRedirectError,
                            RemoteRequestError, RemoteRequestRejected,
                            RemoteServerError, RemoteTimeoutError)

__all__ = ['Answer', 'HttpClient', 'HttpSettings']

_BODY_EXCERPT = 300
_MAX_REDIRECTS = 5


@dataclasses.dataclass(frozen=True)
class HttpSettings:
  """How a handler reaches its service."""
  base_url: str
  timeout_secs: float = 30.0
  max_connections: int = 8
  headers: Mapping[str, str] = dataclasses.field(default_factory=dict)
  follow_redirects: bool = False
  redirect_hosts: Sequence[str] = ()

  def __post_init__(self):
    if not isinstance(self.base_url, str) or not self.base_url.startswith(
        ('http://', 'https://')):
      raise ConfigurationError(
          f'The service address must be an http:// or https:// URL, got '
          f'{self.base_url!r}.')


def _import_httpx():
  try:
    import httpx  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise MissingDependencyError(
        'The remote model handlers need httpx: pip install '
        '"runinference[remote]" (or pip install httpx).') from e
  return httpx


@dataclasses.dataclass(frozen=True)
class Answer:
  """A decoded 2xx answer and where it came from."""
  status: int
  url: str
  body: Any


class HttpClient:
  """POSTs JSON to one service and returns the decoded JSON answer.

  ``row_error(status, answer)`` says whether a 4xx (``answer``: its body as
  JSON, or its text) is about the rows sent: ``RemoteRequestError``, which
  the engine bisects. Otherwise a 4xx is ``RemoteRequestRejected``, which
  fails the batch once. Without ``row_error`` every 4xx is a row error."""
  def __init__(self, settings: HttpSettings,
               row_error: Optional[Callable[[int, Any], bool]] = None):
    self._httpx = _import_httpx()
    self.settings = settings
    self._row_error = row_error
    self._base = settings.base_url.rstrip('/')
    self._lock = threading.Lock()
    self._client = self._new_client()

  def _new_client(self):
    httpx = self._httpx
    limits = self.settings.max_connections
    return httpx.Client(
        timeout=httpx.Timeout(self.settings.timeout_secs),
        limits=httpx.Limits(max_connections=limits,
                            max_keepalive_connections=limits),
        headers=dict(self.settings.headers))

  def post(self, path: str, payload: Any,
           headers: Optional[Mapping[str, str]] = None) -> Answer:
    status, url, content = self._send('POST', path, json=payload,
                                      headers=headers)
    return Answer(status, url, _decode(status, url, content))

  def post_json(self, path: str, payload: Any,
                headers: Optional[Mapping[str, str]] = None) -> Any:
    return self.post(path, payload, headers).body

  def _send(self, method: str, path: str, **kwargs) -> tuple[int, str, bytes]:
    """(status, url, body) of a 2xx answer, redirects followed if asked."""
    url = f'{self._base}{path}'
    deadline = time.monotonic() + self.settings.timeout_secs
    for _ in range(_MAX_REDIRECTS + 1):
      status, headers, content = self._exchange(method, url, deadline,
                                                **kwargs)
      if 200 <= status < 300:
        return status, url, content
      if status >= 400:
        self._raise_for_status(method, url, status, headers, content)
      if not 300 <= status < 400:
        raise RemoteProtocolError(
            f'{method} {url} answered HTTP {status}, which is not a success.',
            status=status, url=url)
      url = self._redirect(method, url, status, headers.get('location'))
    raise RemoteRedirectError(
        f'{method} {self._base}{path}: more than {_MAX_REDIRECTS} redirects '
        f'(last to {url}).', status=status, url=url)

  def _redirect(self, method: str, url: str, status: int,
                location: Optional[str]) -> str:
    """The URL a redirect leads to, if it may be followed."""
    said = f'{method} {url} answered HTTP {status} (a redirect'
    if not location:
      raise RemoteRedirectError(f'{said} without a Location).',
                                status=status, url=url)
    target = urllib.parse.urljoin(url, location)
    if not self.settings.follow_redirects:
      raise RemoteRedirectError(
          f'{said} to {target}): redirects are not followed; use that '
          'address, or pass follow_redirects=True.', status=status, url=url)
    here, there = _origin(self._base), _origin(target)
    if there != here and there[1] not in self.settings.redirect_hosts:
      raise RemoteRedirectError(
          f'{said} to {target}): another host than {here[1]}; name it in '
          'redirect_hosts to follow it.', status=status, url=url)
    return target

  def _exchange(self, method: str, url: str, deadline: float, **kwargs):
    """(status, headers, body): one request, bounded by ``deadline``."""
    httpx = self._httpx
    left = deadline - time.monotonic()
    try:
      if left <= 0:
        raise httpx.TimeoutException('no time left')
      with self._client.stream(method, url, timeout=left, **kwargs) as r:
        chunks = []
        for chunk in r.iter_bytes():
          chunks.append(chunk)
          if time.monotonic() > deadline:  # a trickling, endless answer
            raise httpx.TimeoutException('answer still coming')
        return r.status_code, r.headers, b''.join(chunks)
    except httpx.TimeoutException as e:
      raise RemoteTimeoutError(
          f'{method} {url} timed out after {self.settings.timeout_secs}s '
          f'({type(e).__name__}: {e}).') from e
    except httpx.TransportError as e:
      raise RemoteConnectionError(
          f'{method} {url} failed: {type(e).__name__}: {e}') from e
    except RuntimeError as e:  # the client was discarded meanwhile
      raise RemoteConnectionError(f'{method} {url} failed: {e}') from e

  def _raise_for_status(self, method: str, url: str, status: int, headers,
                        content: bytes) -> None:
    body = _excerpt(content)
    message = f'{method} {url} answered HTTP {status}: {body}'
    if status in TRANSIENT_STATUSES or status >= 500:
      raise RemoteServerError(
          message, status=status, body=body,
          retry_after=_retry_after(headers.get('retry-after')))
    if self._row_error is None or self._row_error(status, _json_or_text(
        content)):
      raise RemoteRequestError(message, status=status, body=body)
    raise RemoteRequestRejected(
        f'{message} (not about a row: the batch fails as a whole)',
        status=status, body=body)

  def discard(self) -> None:
    """Drops every connection (a hung one too): later requests use a fresh
    pool. The old client is closed in the background."""
    with self._lock:
      old, self._client = self._client, self._new_client()
    threading.Thread(target=_close_quietly, args=(old,), daemon=True).start()

  def close(self) -> None:
    self._client.close()

  def __del__(self):
    client = getattr(self, '_client', None)  # __init__ may have failed
    if client is not None:
      _close_quietly(client)


def _close_quietly(client) -> None:
  try:
    client.close()
  except Exception:  # pylint: disable=broad-except
    pass


def _origin(url: str) -> tuple[str, str]:
  parts = urllib.parse.urlsplit(url)
  return parts.scheme, parts.netloc


def _json_or_text(content: bytes) -> Any:
  try:
    return json.loads(content)
  except ValueError:
    return content.decode('utf-8', 'replace')


def _decode(status: int, url: str, content: bytes) -> Any:
  try:
    return json.loads(content)
  except ValueError as e:
    raise RemoteProtocolError(
        f'POST {url} answered HTTP {status} with a body that is not JSON '
        f'({len(content)} bytes): {_excerpt(content)!r}', status=status,
        url=url) from e


def _excerpt(content: bytes) -> str:
  return content[:_BODY_EXCERPT].decode('utf-8', 'replace')


def _retry_after(value: Optional[str]) -> Optional[float]:
  """Retry-After as seconds (it may be a number or an HTTP date)."""
  if not value:
    return None
  try:
    return max(0.0, float(value))
  except ValueError:
    pass
  try:
    when = email.utils.parsedate_to_datetime(value)
  except (TypeError, ValueError):
    return None
  return max(0.0, when.timestamp() - time.time())
