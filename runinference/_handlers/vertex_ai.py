"""Vertex AI online prediction over REST (``{"instances": [...]}`` →
``{"predictions": [...]}``), with the reference's constructor. No Google SDK
is needed to send requests; ``google-auth`` provides the access token when
none is given."""
from __future__ import annotations

import threading
import urllib.parse
from typing import Any, Callable, Optional

from ..exceptions import ConfigurationError, MissingDependencyError
from .._core.naming import publish
from .._core.types import PredictionResult
from .http_handler import HttpModelHandler, expect_list, to_json
from .remote_errors import retry_on_transient

__all__ = ['VertexAIModelHandlerJSON']

_SCOPE = 'https://www.googleapis.com/auth/cloud-platform'


class VertexAIModelHandlerJSON(HttpModelHandler):
  """Sends JSON instances to a Vertex AI endpoint; a prediction is
  ``PredictionResult(instance, prediction, model_id=deployedModelId)``.

  ``endpoint_url`` replaces the public Vertex address (a private endpoint's
  address, a proxy, or a local server speaking the same JSON, e.g. KServe
  V1's ``http://127.0.0.1:8080/v1/models/m:predict``).
  """
  def __init__(
      self,
      endpoint_id: str,
      project: str,
      location: str,
      experiment: Optional[str] = None,
      network: Optional[str] = None,
      private: bool = False,
      invoke_route: Optional[str] = None,
      *,
      endpoint_url: Optional[str] = None,
      access_token: Optional[str] = None,
      **kwargs):
    """
    Args:
      endpoint_id, project, location: the endpoint.
      experiment: accepted for compatibility (a label of the SDK session;
        not sent with requests).
      network: the VPC network of a private endpoint.
      private: the endpoint is private (give ``endpoint_url``).
      invoke_route: a custom route of the endpoint (``.../invoke/<route>``).
      endpoint_url: the predict URL to use instead of Vertex's public one.
      access_token: a bearer token; default: google-auth's credentials for
        Vertex's address, none for an ``endpoint_url``.
      **kwargs: ``HttpModelHandler`` options and batching options.
    """
    if private and network is None:
      raise ConfigurationError(
          'A VPC network must be provided to use a private endpoint.')
    if private and endpoint_url is None:
      raise ConfigurationError(
          'A private endpoint is reached at its own address: pass '
          'endpoint_url="https://<private address>/v1/projects/.../'
          'endpoints/<id>:predict".')
    public = endpoint_url is None
    if public:
      endpoint_url = (
          f'https://{location}-aiplatform.googleapis.com/v1/projects/'
          f'{project}/locations/{location}/endpoints/{endpoint_id}:predict')
    if invoke_route:
      base = endpoint_url.rsplit(':predict', 1)[0]
      endpoint_url = f'{base}/invoke/{invoke_route.lstrip("/")}'
    parts = urllib.parse.urlsplit(endpoint_url)
    kwargs.setdefault('namespace', 'VertexAIModelHandlerJSON')
    kwargs.setdefault('retry_filter', retry_on_transient)
    super().__init__(f'{parts.scheme}://{parts.netloc}', **kwargs)
    self.endpoint_name = endpoint_id
    self.project = project
    self.location = location
    self.experiment = experiment
    self.network = network
    self.is_private = private
    self._invoke_route = invoke_route
    self._path = parts.path + (f'?{parts.query}' if parts.query else '')
    self._access_token = access_token
    self._use_google_auth = public and access_token is None
    self._token_source: Optional[Callable[[], str]] = None

  def create_client(self):
    if self._use_google_auth:
      self._token_source = _google_token_source()
    return super().create_client()

  def request_headers(self):
    token = self._access_token
    if self._token_source is not None:
      token = self._token_source()
    return {'Authorization': f'Bearer {token}'} if token else None

  def path(self, inference_args):
    return self._path

  def encode(self, batch, inference_args):
    body: dict[str, Any] = {'instances': [to_json(x) for x in batch]}
    if inference_args:
      body['parameters'] = to_json(inference_args)
    return body

  def decode(self, answer, batch):
    model_id = answer.get('deployedModelId') or answer.get('model_name')
    predictions = expect_list(answer['predictions'], '"predictions"')
    if len(predictions) != len(batch):
      return predictions  # RemoteModelHandler reports the count mismatch
    return [PredictionResult(x, y, model_id)
            for x, y in zip(batch, predictions)]

  def __getstate__(self):
    state = super().__getstate__()
    state['_token_source'] = None
    return state

  def __repr__(self):
    return (f'VertexAIModelHandlerJSON(endpoint_id={self.endpoint_name!r}, '
            f'url={self.base_url + self._path!r})')


def _google_token_source() -> Callable[[], str]:
  try:
    import google.auth  # pylint: disable=import-outside-toplevel
    import google.auth.transport.requests  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise MissingDependencyError(
        'VertexAIModelHandlerJSON needs google-auth for Vertex AI\'s address: '
        'pip install google-auth, or pass access_token=..., or '
        'endpoint_url=... for another server.') from e
  credentials, _ = google.auth.default(scopes=[_SCOPE])
  lock = threading.Lock()

  def token() -> str:
    with lock:
      if not credentials.valid:
        credentials.refresh(google.auth.transport.requests.Request())
      return credentials.token
  return token


publish(globals(), 'runinference.vertex_ai_inference', alias=True)
