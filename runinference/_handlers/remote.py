"""Handlers for models behind a remote endpoint: retries with backoff,
client-side adaptive throttling and an optional shared rate limit."""
from __future__ import annotations

import abc
import logging
import time
from typing import Any, Callable, Iterable, Optional, Sequence

from apache_beam.io.components.adaptive_throttler import ReactiveThrottler
from apache_beam.utils import retry, shared

from ..exceptions import RateLimitExceeded
from .._core.contract import ExampleT, ModelHandler, ModelT, PredictionT

try:
  from apache_beam.io.components.rate_limiter import RateLimiter
except ImportError:  # older Beam
  RateLimiter = Any  # type: ignore


class RemoteModelHandler(abc.ABC, ModelHandler[ExampleT, PredictionT, ModelT]):
  """Calls a model behind a service. Implement ``create_client`` (the
  connection, made once per process) and ``request`` (one call for a batch);
  failed requests are retried with exponential backoff while ``retry_filter``
  says so, and calls are throttled client-side when the service is overloaded.
  """
  def __init__(
      self,
      namespace: str = '',
      num_retries: int = 5,
      throttle_delay_secs: int = 5,
      retry_filter: Callable[[Exception], bool] = lambda e: True,
      *,
      window_ms: int = 1000,
      bucket_ms: int = 1000,
      overload_ratio: float = 2,
      rate_limiter: Optional['RateLimiter'] = None,
      **kwargs):
    super().__init__(**kwargs)
    self.throttler = ReactiveThrottler(
        window_ms=window_ms,
        bucket_ms=bucket_ms,
        overload_ratio=overload_ratio,
        namespace=namespace,
        throttle_delay_secs=throttle_delay_secs)
    self.logger = logging.getLogger(namespace or __name__)
    self.num_retries = num_retries
    self.retry_filter = retry_filter
    self._rate_limiter = rate_limiter
    self._shared_limiter = None
    self._shared_handle = shared.Shared()

  def __init_subclass__(cls, **kwargs):
    super().__init_subclass__(**kwargs)
    for name, instead in (('load_model', 'create_client'),
                          ('run_inference', 'request')):
      if getattr(cls, name) is not getattr(RemoteModelHandler, name):
        raise TypeError(
            f'{cls.__name__} overrides RemoteModelHandler.{name}; implement '
            f'{instead} instead.')

  @abc.abstractmethod
  def create_client(self) -> Any:
    """Creates the client ``request`` uses."""

  @abc.abstractmethod
  def request(
      self,
      batch: Sequence[Any],
      model: Any,
      inference_args: Optional[dict[str, Any]] = None) -> Iterable[Any]:
    """Sends one batch; returns one prediction per example (not a
    generator: errors must surface here to be retried)."""

  def load_model(self) -> Any:
    return self.create_client()

  def _call_once(self, batch, model, inference_args):
    if self._rate_limiter is not None:
      if self._shared_limiter is None:
        self._shared_limiter = self._shared_handle.acquire(
            lambda: self._rate_limiter)
      if not self._shared_limiter.allow(hits_added=len(batch)):
        raise RateLimitExceeded(
            f'Rate limit exceeded: could not send a batch of {len(batch)}.')
    self.throttler.throttle()
    start_ms = time.time() * 1000
    try:
      predictions = self.request(batch, model, inference_args)
    except Exception as e:
      self.logger.error('request to the remote model failed: %s', e)
      raise
    self.throttler.successful_request(start_ms)
    return predictions

  def run_inference(self, batch, model, inference_args=None):
    call = retry.with_exponential_backoff(
        num_retries=self.num_retries,
        retry_filter=self.retry_filter)(self._call_once)
    return call(batch, model, inference_args)
