"""The common layer of the JSON-over-HTTP handlers: a base URL, a pooled
client per worker, and ``encode``/``decode`` for the protocol.

An answer ``decode`` cannot read (a missing field, a wrong type or shape, a
non-numeric value: ``decode`` raises KeyError, IndexError, TypeError,
ValueError - ``AnswerFormatError`` is one - or AttributeError) and an answer
with the wrong number of predictions are ``RemoteProtocolError``s naming the
URL, the status, what was expected and what came."""
from __future__ import annotations

import abc
from typing import Any, Mapping, Optional, Sequence

from ..exceptions import ConfigurationError
from .http_client import Answer, HttpClient, HttpSettings
from .remote import RemoteModelHandler
from .remote_errors import (AnswerFormatError, RemoteProtocolError,
                            RemoteResultCountError)

_EXCERPT = 300


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
      follow_redirects: bool = False,
      redirect_hosts: Sequence[str] = (),
      **kwargs):
    """
    Args:
      base_url: the service's address, e.g. ``http://127.0.0.1:5000``.
      headers: extra HTTP headers (e.g. ``Authorization``).
      request_timeout_secs: bound on each request.
      max_concurrent_requests: requests in flight at once per worker.
      follow_redirects: follow a 3xx answer (to the same host, method and
        body kept); otherwise it is a ``RemoteRedirectError``.
      redirect_hosts: other hosts (``host:port``) a redirect may lead to.
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
        headers=dict(headers or {}),
        follow_redirects=bool(follow_redirects),
        redirect_hosts=tuple(redirect_hosts))

  @property
  def base_url(self) -> str:
    return self._settings.base_url

  def create_client(self) -> HttpClient:
    return HttpClient(self._settings, row_error=self.row_error)

  def discard_connections(self, model: HttpClient) -> None:
    model.discard()

  def row_error(self, status: int, answer: Any) -> bool:
    """Whether a 4xx answer (its body as JSON, or text) says the request
    failed because of the rows sent: then the engine bisects the batch to
    the bad rows. Otherwise the batch fails once (``RemoteRequestRejected``).
    The default: no 4xx is about a row; protocols that say so override."""
    return False

  def request(self, batch: Sequence[Any], model: HttpClient,
              inference_args: Optional[dict[str, Any]] = None) -> list:
    inference_args = dict(inference_args or {})
    answer = model.post(
        self.path(inference_args), self.encode(batch, inference_args),
        headers=self.request_headers())
    try:
      predictions = list(self.decode(answer.body, batch))
    except (KeyError, IndexError, TypeError, ValueError,
            AttributeError) as e:
      # A 2xx with something this protocol does not describe: a fault of
      # the service, not of the rows.
      what = (f'no field {e}' if isinstance(e, KeyError) else
              f'{type(e).__name__}: {e}')
      raise RemoteProtocolError(
          f'{self._said(answer)} {type(self).__name__} cannot read ({what}); '
          f'body: {_excerpt(answer.body)}', status=answer.status,
          url=answer.url) from e
    if len(predictions) != len(batch):
      raise RemoteResultCountError(
          f'{self._said(answer)} expected {len(batch)} predictions (one per '
          f'row), got {len(predictions)}; body: {_excerpt(answer.body)}',
          status=answer.status, url=answer.url)
    return predictions

  @staticmethod
  def _said(answer: Answer) -> str:
    return f'POST {answer.url} answered HTTP {answer.status}:'

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


def _excerpt(body: Any) -> str:
  text = repr(body)
  return text if len(text) <= _EXCERPT else text[:_EXCERPT] + '...'


def expect_list(value: Any, what: str) -> list:
  """``value`` if it is a list, else an ``AnswerFormatError`` naming
  ``what``."""
  if not isinstance(value, list):
    raise AnswerFormatError(
        f'expected {what} to be a list, got {type(value).__name__} '
        f'{_excerpt(value)}')
  return value


def by_index(items: list, what: str) -> list:
  """``items`` (dicts with an optional ``index``) in index order; the
  indices must be 0..n-1, each once."""
  for i, item in enumerate(items):
    if not isinstance(item, dict):
      raise AnswerFormatError(f'expected {what}[{i}] to be an object, got '
                              f'{_excerpt(item)}')
  indices = [item.get('index', i) for i, item in enumerate(items)]
  if sorted(indices) != list(range(len(items))):
    raise AnswerFormatError(f'expected {what} indices 0..{len(items) - 1}, '
                            f'each once, got {_excerpt(indices)}')
  order = sorted(range(len(items)), key=indices.__getitem__)
  return [items[i] for i in order]


def to_json(value: Any) -> Any:
  """``value`` with numpy arrays and scalars turned into JSON types."""
  if hasattr(value, 'tolist') and callable(value.tolist):
    return value.tolist()
  if isinstance(value, Mapping):
    return {str(k): to_json(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [to_json(v) for v in value]
  return value
