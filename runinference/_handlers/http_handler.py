"""The common layer of the JSON-over-HTTP handlers: a base URL, a pooled
client per worker, and ``encode``/``decode`` for the protocol."""
from __future__ import annotations

import abc
from typing import Any, Mapping, Optional, Sequence

from ..exceptions import ConfigurationError
from .http_client import HttpClient, HttpSettings
from .remote import RemoteModelHandler
from .remote_errors import RemoteServerError


class HttpModelHandler(RemoteModelHandler):
  """A ``RemoteModelHandler`` that POSTs each request to ``path`` as JSON.

  Subclasses give ``path(inference_args)``, ``encode(rows, inference_args)``
  (the request body) and ``decode(answer, rows)`` (one prediction per row).
  """
  def __init__(
      self,
      base_url: str,
      *,
      headers: Optional[Mapping[str, str]] = None,
      request_timeout_secs: float = 30.0,
      max_concurrent_requests: int = 4,
      namespace: str = '',
      **kwargs):
    """
    Args:
      base_url: the service's address, e.g. ``http://127.0.0.1:5000``.
      headers: extra HTTP headers (e.g. ``Authorization``).
      request_timeout_secs: bound on each request.
      max_concurrent_requests: requests in flight at once per worker.
      **kwargs: ``RemoteModelHandler`` options (retries, throttling,
        ``request_batch_size``...) and batching options (``max_batch_size``).
    """
    super().__init__(
        namespace=namespace,
        max_concurrent_requests=max_concurrent_requests,
        request_timeout_secs=request_timeout_secs,
        **kwargs)
    self._settings = HttpSettings(
        base_url=base_url,
        timeout_secs=request_timeout_secs,
        max_connections=max_concurrent_requests,
        headers=dict(headers or {}))

  @property
  def base_url(self) -> str:
    return self._settings.base_url

  def create_client(self) -> HttpClient:
    return HttpClient(self._settings)

  def request(self, batch: Sequence[Any], model: HttpClient,
              inference_args: Optional[dict[str, Any]] = None) -> list:
    inference_args = dict(inference_args or {})
    answer = model.post_json(
        self.path(inference_args), self.encode(batch, inference_args),
        headers=self.request_headers())
    try:
      return self.decode(answer, batch)
    except (KeyError, IndexError, TypeError) as e:
      # The service answered 2xx with something this protocol does not
      # describe: a fault of the service, not of the rows.
      raise RemoteServerError(
          f'{self.base_url}{self.path(inference_args)} answered with an '
          f'unexpected body ({type(e).__name__}: {e}): '
          f'{str(answer)[:300]}') from e

  def request_headers(self) -> Optional[Mapping[str, str]]:
    """Per-request headers (e.g. a fresh access token); None for none."""
    return None

  @abc.abstractmethod
  def path(self, inference_args: dict) -> str:
    """The URL path requests go to."""

  @abc.abstractmethod
  def encode(self, batch: Sequence[Any], inference_args: dict) -> Any:
    """The JSON body for ``batch``."""

  @abc.abstractmethod
  def decode(self, answer: Any, batch: Sequence[Any]) -> list:
    """One prediction per row of ``batch`` from the decoded answer."""

  def __repr__(self):
    return f'{type(self).__name__}(base_url={self.base_url!r})'


def check_choice(name: str, value: Any, choices: Sequence[Any]) -> None:
  if value not in choices:
    raise ConfigurationError(
        f'{name} must be one of {list(choices)}, got {value!r}.')



def to_json(value: Any) -> Any:
  """``value`` with numpy arrays and scalars turned into JSON types."""
  if hasattr(value, 'tolist') and callable(value.tolist):
    return value.tolist()
  if isinstance(value, Mapping):
    return {str(k): to_json(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [to_json(v) for v in value]
  return value
