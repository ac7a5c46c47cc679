"""A pooled JSON-over-HTTP client (httpx) for the remote handlers: one
connection pool per worker, sized to the handler's concurrency, and the
service's answers mapped onto the retry policy's error types."""
from __future__ import annotations

import dataclasses
import email.utils
import time
from typing import Any, Mapping, Optional

from ..exceptions import MissingDependencyError
from .remote_errors import (TRANSIENT_STATUSES, RemoteConnectionError,
                            RemoteRequestError, RemoteServerError,
                            RemoteTimeoutError)

__all__ = ['HttpClient', 'HttpSettings']

_BODY_EXCERPT = 300


@dataclasses.dataclass(frozen=True)
class HttpSettings:
  """How a handler reaches its service."""
  base_url: str
  timeout_secs: float = 30.0
  max_connections: int = 8
  headers: Mapping[str, str] = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    if not isinstance(self.base_url, str) or not self.base_url.startswith(
        ('http://', 'https://')):
      raise ValueError(
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


class HttpClient:
  """POSTs JSON to one service and returns the decoded JSON answer."""
  def __init__(self, settings: HttpSettings):
    httpx = _import_httpx()
    self.settings = settings
    self._httpx = httpx
    self._client = httpx.Client(
        base_url=settings.base_url.rstrip('/'),
        timeout=httpx.Timeout(settings.timeout_secs),
        limits=httpx.Limits(
            max_connections=settings.max_connections,
            max_keepalive_connections=settings.max_connections),
        headers=dict(settings.headers))

  def post_json(self, path: str, payload: Any,
                headers: Optional[Mapping[str, str]] = None) -> Any:
    response = self._send('POST', path, json=payload, headers=headers)
    return self._decode(response, path)

  def get(self, path: str) -> Any:
    return self._send('GET', path)

  def _send(self, method: str, path: str, **kwargs):
    httpx = self._httpx
    url = f'{self.settings.base_url.rstrip("/")}{path}'
    try:
      response = self._client.request(method, path, **kwargs)
    except httpx.TimeoutException as e:
      raise RemoteTimeoutError(
          f'{method} {url} timed out after {self.settings.timeout_secs}s '
          f'({type(e).__name__}).') from e
    except httpx.TransportError as e:
      raise RemoteConnectionError(
          f'{method} {url} failed: {type(e).__name__}: {e}') from e
    if response.status_code >= 400:
      _raise_for_status(method, url, response)
    return response

  @staticmethod
  def _decode(response, path: str) -> Any:
    try:
      return response.json()
    except ValueError as e:
      raise RemoteServerError(
          f'{path} answered {response.status_code} with a body that is not '
          f'JSON: {response.text[:_BODY_EXCERPT]!r}',
          status=response.status_code) from e

  def close(self) -> None:
    self._client.close()

  def __del__(self):
    client = getattr(self, '_client', None)
    if client is not None:
      try:
        client.close()
      except Exception:  # pylint: disable=broad-except
        pass


def _raise_for_status(method: str, url: str, response) -> None:
  status = response.status_code
  body = response.text[:_BODY_EXCERPT]
  message = f'{method} {url} answered HTTP {status}: {body}'
  if status in TRANSIENT_STATUSES or status >= 500:
    raise RemoteServerError(
        message, status=status, body=body,
        retry_after=_retry_after(response.headers.get('retry-after')))
  raise RemoteRequestError(message, status=status, body=body)


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
