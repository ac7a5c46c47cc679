"""Handlers for models behind a remote endpoint.

Design: the engine calls ``run_inference`` once per batch, synchronously. To
keep several requests in flight, ``run_inference`` splits a batch into
sub-requests (``request_batch_size`` rows each, or ``max_concurrent_requests``
equal parts) and sends them together from a small thread pool; results are
joined in input order. Retries run in rounds on the calling thread: each round
admits the pending sub-requests (shared rate limit, adaptive client-side
throttling), sends them concurrently, and backs off (exponential, jittered,
at least the server's Retry-After) before resending only the failed ones. So a
failing batch makes one retry sequence, and Beam metrics (thread-local) are
recorded on the calling thread.

Once retries are spent, an error that is not about the rows (server error,
throttling, timeout, lost connection) is raised as ``BatchFailedError``, which
the engine does not bisect; an answer that breaks the protocol (wrong shape,
count or type, an unfollowed redirect) and a 4xx the protocol does not tie to
a row are ``BatchFailedError`` subclasses too. Only a row error is raised for
the engine to bisect, and the requests of that bisection are capped
(``max_bisect_requests``, see ``remote_budget``). A request that runs past its
timeout is abandoned on a daemon thread and its connections discarded
(``discard_connections``), so it holds neither a pool slot nor the process.
"""
from __future__ import annotations

import abc
import concurrent.futures as cf
import dataclasses
import logging
import math
import random
import threading
import time
from typing import Any, Callable, Iterable, Optional, Sequence

from apache_beam.utils import shared

from ..exceptions import (BatchFailedError, ConfigurationError,
                          ConfigurationTypeError, RateLimitExceeded)
from .._core.contract import ExampleT, ModelHandler, ModelT, PredictionT
from .._core.failures import not_bisected
from .remote_budget import BisectionBudget
from .remote_errors import (RemoteResultCountError, RemoteTimeoutError,
                            is_transient, retry_on_transient)
from .remote_options import RemoteMetrics, check_positive
from .remote_pool import DaemonPool
from .throttling import AdaptiveThrottler
from ..exceptions import RateLimitedBatchError  # noqa: F401  (re-exported)

try:
  from apache_beam.io.components.rate_limiter import RateLimiter
except ImportError:  # older Beam
  RateLimiter = Any  # type: ignore

__all__ = ['RemoteModelHandler', 'RateLimiter', 'RateLimitExceeded',
           'RateLimitedBatchError']


@dataclasses.dataclass
class _Part:
  """One sub-request of a batch: its slice and what happened to it."""
  start: int
  stop: int
  result: Optional[list] = None
  error: Optional[BaseException] = None


class RemoteModelHandler(abc.ABC, ModelHandler[ExampleT, PredictionT, ModelT]):
  """Calls a model behind a service. Implement ``create_client`` (made once
  per worker) and ``request`` (one call for some rows; must return a list,
  not a generator, so its errors surface where they can be retried).
  """
  def overlap_by_default(self) -> bool:
    return True  # the model call waits on the server outside the GIL

  def __init__(
      self,
      namespace: str = '',
      num_retries: int = 5,
      throttle_delay_secs: int = 5,
      retry_filter: Callable[[Exception], bool] = retry_on_transient,
      *,
      window_ms: int = 1000,
      bucket_ms: int = 1000,
      overload_ratio: float = 2,
      rate_limiter: Optional['RateLimiter'] = None,
      max_concurrent_requests: int = 1,
      request_batch_size: Optional[int] = None,
      request_timeout_secs: Optional[float] = None,
      initial_retry_delay_secs: float = 1.0,
      max_retry_delay_secs: float = 30.0,
      max_bisect_requests: Optional[int] = None,
      **kwargs):
    """
    Args:
      namespace: metrics and logging namespace (default: the class name).
      num_retries: how many times a failed request is resent.
      throttle_delay_secs: wait when the client throttles itself.
      retry_filter: whether an exception is worth a retry (default: all but
        errors about the payload, such as an HTTP 400).
      window_ms, bucket_ms, overload_ratio: adaptive throttling (see
        https://sre.google/sre-book/handling-overload/).
      rate_limiter: a RateLimiter shared by the process's workers.
      max_concurrent_requests: requests in flight at once per worker.
      request_batch_size: most rows per request; a larger batch is split
        (default: a batch is split into ``max_concurrent_requests`` parts).
      request_timeout_secs: bound on one request (None: none).
      initial_retry_delay_secs, max_retry_delay_secs: exponential backoff
        range; each wait is jittered.
      max_bisect_requests: most requests the bisection of a batch failing
        with a row error may make (default: 4 per halving of the batch).
      **kwargs: batching options of ``ModelHandler`` (``max_batch_size``...).
    """
    super().__init__(**kwargs)  # rejects unknown options, naming the likely one
    check_positive('num_retries', num_retries, allow_zero=True)
    check_positive('max_concurrent_requests', max_concurrent_requests)
    if request_batch_size is not None:
      check_positive('request_batch_size', request_batch_size)
    if max_bisect_requests is not None:
      check_positive('max_bisect_requests', max_bisect_requests)
    if request_timeout_secs is not None and not request_timeout_secs > 0:
      raise ConfigurationError(
          f'request_timeout_secs must be > 0 or None, got '
          f'{request_timeout_secs!r}.')
    if not callable(retry_filter):
      raise ConfigurationError(
          f'retry_filter must be a callable taking an exception, got '
          f'{retry_filter!r}.')
    self._namespace = namespace or type(self).__name__
    self.throttler = AdaptiveThrottler(window_ms, bucket_ms, overload_ratio)
    self.throttle_delay_secs = throttle_delay_secs
    self.logger = logging.getLogger(self._namespace)
    self.num_retries = num_retries
    self.retry_filter = retry_filter
    self.max_concurrent_requests = max_concurrent_requests
    self.request_batch_size = request_batch_size
    self.request_timeout_secs = request_timeout_secs
    self.initial_retry_delay_secs = initial_retry_delay_secs
    self.max_retry_delay_secs = max_retry_delay_secs
    self._rate_limiter = rate_limiter
    self._shared_handle = shared.Shared()
    self._budget = BisectionBudget(max_bisect_requests)
    self._reset_runtime()

  def __init_subclass__(cls, **kwargs):
    super().__init_subclass__(**kwargs)
    for name, instead in (('load_model', 'create_client'),
                          ('run_inference', 'request')):
      if getattr(cls, name) is not getattr(RemoteModelHandler, name):
        raise ConfigurationTypeError(
            f'{cls.__name__} overrides RemoteModelHandler.{name}; implement '
            f'{instead} instead.')

  # Runtime state, rebuilt lazily on each worker (never pickled).
  _RUNTIME = ('_pool', '_pool_lock', '_metrics', '_shared_limiter')

  def _reset_runtime(self) -> None:
    self._pool: Optional[DaemonPool] = None
    self._pool_lock = threading.Lock()
    self._metrics: Optional[RemoteMetrics] = None
    self._shared_limiter = None

  def __getstate__(self):
    state = dict(self.__dict__)
    for name in self._RUNTIME:
      state.pop(name, None)
    return state

  def __setstate__(self, state):
    self.__dict__.update(state)
    self._reset_runtime()

  @abc.abstractmethod
  def create_client(self) -> Any:
    """Creates the client ``request`` uses (once per worker)."""

  @abc.abstractmethod
  def request(
      self,
      batch: Sequence[Any],
      model: Any,
      inference_args: Optional[dict[str, Any]] = None) -> Iterable[Any]:
    """Sends some rows; returns one prediction per row."""

  def load_model(self) -> Any:
    return self.create_client()

  def is_batch_error(self, exc: BaseException) -> bool:
    """Whether ``exc`` (after retries) fails the batch as a whole instead of
    pointing at some row. Override for a service's own error types."""
    return is_transient(exc)

  def discard_connections(self, model: Any) -> None:
    """Called when a request to ``model`` was abandoned past its timeout:
    drop whatever it may still hold (a connection, a pool slot) so later
    requests get fresh ones. The default does nothing."""

  # -- the retry loop -------------------------------------------------------

  def run_inference(self, batch, model, inference_args=None):
    batch = list(batch)
    if not batch:
      return []
    probe = self._budget.begin(batch)  # a bisection call of a failed batch?
    try:
      out = self._run_rounds(batch, model, inference_args, probe)
    except Exception as e:
      self._budget.end(batch, probe, None if not_bisected(e) else e)
      raise
    self._budget.end(batch, probe, None)
    return out

  def _run_rounds(self, batch, model, inference_args, probe) -> list:
    parts = self._partition(len(batch))
    pending = parts
    metrics = self._remote_metrics()
    for attempt in range(self.num_retries + 1):
      if attempt:
        metrics.retries.inc(len(pending))
      self._budget.spend(probe, len(pending))
      self._send_round(batch, model, inference_args, pending, metrics)
      failed = [p for p in pending if p.error is not None]
      if not failed:
        break
      final = self._final_error(failed, attempt)
      if final is not None:
        metrics.failed_batches.inc()
        raise final
      self._back_off(attempt, failed, metrics)
      pending = failed
    out: list = []
    for p in parts:
      out.extend(p.result)
    return out

  def _partition(self, n: int) -> list[_Part]:
    size = self.request_batch_size or math.ceil(n / self.max_concurrent_requests)
    return [_Part(i, min(i + size, n)) for i in range(0, n, size)]

  def _final_error(self, failed: list[_Part], attempt: int):
    """The error to raise now, or None to retry the failed parts."""
    for p in failed:
      if not self.retry_filter(p.error):
        return p.error
    if attempt < self.num_retries:
      return None
    last = failed[0].error
    if not self.is_batch_error(last):
      return last
    kind = (RateLimitedBatchError if isinstance(last, RateLimitExceeded)
            else BatchFailedError)
    error = kind(
        f'{type(self).__name__}: request failed after {attempt + 1} '
        f'attempt(s) ({len(failed)} sub-request(s) failing); last error: '
        f'{type(last).__name__}: {last}')
    error.__cause__ = last
    return error

  def _back_off(self, attempt: int, failed: list[_Part], metrics) -> None:
    ceiling = min(self.max_retry_delay_secs,
                  self.initial_retry_delay_secs * (2**attempt))
    delay = ceiling / 2 + random.uniform(0, ceiling / 2)
    hinted = [getattr(p.error, 'retry_after', None) for p in failed]
    hinted = [h for h in hinted if h]
    if hinted:
      delay = max(delay, min(max(hinted), self.max_retry_delay_secs))
    self.logger.warning(
        'remote request failed (%s: %s); retry %d of %d in %.2fs',
        type(failed[0].error).__name__, failed[0].error, attempt + 1,
        self.num_retries, delay)
    metrics.backoff_ms.inc(int(delay * 1000))
    if any(_is_throttling(p.error) for p in failed):
      metrics.throttled(delay)  # time lost to the service's quota
    time.sleep(delay)

  # -- one round ------------------------------------------------------------

  def _send_round(self, batch, model, inference_args, parts, metrics) -> None:
    admitted = []
    for p in parts:
      p.error = None
      try:
        self._rate_limit(p.stop - p.start)
      except RateLimitExceeded as e:
        p.error = e
        metrics.request_failures.inc()
      else:
        admitted.append(p)
    self._throttle(len(admitted), metrics)
    if not admitted:
      return
    metrics.requests.inc(len(admitted))
    if len(admitted) == 1 and self.request_timeout_secs is None:
      outcomes = [self._timed_request(batch, admitted[0], model,
                                      inference_args)]
    else:
      outcomes = self._concurrent(batch, admitted, model, inference_args)
    for p, (result, error, started, latency) in zip(admitted, outcomes):
      metrics.latency_ms.update(int(latency * 1000))
      if error is None and len(result) != p.stop - p.start:
        error = RemoteResultCountError(
            f'{type(self).__name__}.request returned {len(result)} '
            f'predictions for {p.stop - p.start} rows; expected one per row.')
      if error is not None:
        p.error = error
        metrics.request_failures.inc()
        continue
      p.result = result
      self.throttler.successful_request(started * 1000)

  def _rate_limit(self, rows: int) -> None:
    """Applies the rate limit shared by the process's workers."""
    if self._rate_limiter is None:
      return
    if self._shared_limiter is None:
      limiter = self._rate_limiter
      self._shared_limiter = self._shared_handle.acquire(lambda: limiter)
    if not self._shared_limiter.allow(hits_added=rows):
      raise RateLimitExceeded(
          f'Rate limit exceeded: could not send a request of {rows} rows.')

  def _throttle(self, n: int, metrics) -> None:
    """Client-side adaptive throttling: holds a round of ``n`` requests back
    while the service has recently been failing."""
    if not n:
      return
    waited = 0.0
    while self.throttler.throttle_request(time.time() * 1000, n):
      time.sleep(self.throttle_delay_secs)
      waited += self.throttle_delay_secs
    if waited:
      self.logger.info('throttled for %.1fs client-side', waited)
      metrics.throttled(waited)

  def _timed_request(self, batch, part, model, inference_args):
    started = time.time()
    t0 = time.perf_counter()
    try:
      result = self.request(batch[part.start:part.stop], model, inference_args)
      result = result if isinstance(result, list) else list(result)
      return result, None, started, time.perf_counter() - t0
    except Exception as e:  # pylint: disable=broad-except
      return None, e, started, time.perf_counter() - t0

  def _concurrent(self, batch, parts, model, inference_args):
    pool = self._executor()
    futures = [pool.submit(self._timed_request, batch, p, model, inference_args)
               for p in parts]
    # A request that ignores request_timeout_secs is abandoned after it (plus
    # a grace for the client's own timeout to fire first).
    waves = math.ceil(len(parts) / self.max_concurrent_requests)
    bound = (None if self.request_timeout_secs is None else
             (self.request_timeout_secs * 2 + 1) * waves)
    deadline = None if bound is None else time.monotonic() + bound
    outcomes = []
    for f in futures:
      left = None if deadline is None else max(0.0, deadline - time.monotonic())
      try:
        outcomes.append(f.result(timeout=left))
      except (cf.TimeoutError, cf.CancelledError):
        if self._abandon_pool(pool):  # cancels the queued: resent next round
          self.discard_connections(model)
        outcomes.append((None, RemoteTimeoutError(
            f'request took longer than request_timeout_secs='
            f'{self.request_timeout_secs}'), time.time(), bound))
    return outcomes

  def _executor(self) -> DaemonPool:
    with self._pool_lock:
      if self._pool is None:
        self._pool = DaemonPool(self.max_concurrent_requests,
                                f'{self._namespace}-request')
      return self._pool

  def _abandon_pool(self, pool: DaemonPool) -> bool:
    """Leaves a hung request's (daemon) thread behind: later requests get a
    fresh pool instead of queueing behind it. False if already done."""
    with self._pool_lock:
      if self._pool is not pool:
        return False
      self._pool = None
    pool.shutdown()
    return True

  def _remote_metrics(self) -> RemoteMetrics:
    if self._metrics is None:
      self._metrics = RemoteMetrics(self.metrics_namespace)
    return self._metrics

  @property
  def metrics_namespace(self) -> str:
    """The namespace of this handler's request metrics."""
    return self._namespace


def _is_throttling(exc: BaseException) -> bool:
  return (isinstance(exc, RateLimitExceeded) or
          getattr(exc, 'status', None) == 429)
