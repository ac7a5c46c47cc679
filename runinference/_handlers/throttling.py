"""Client-side adaptive throttling (the SRE book's "handling overload"):
refuse a share of requests locally when the service has been failing, so a
struggling service is not flooded with retries.

Unlike Beam's ``AdaptiveThrottler`` the decision for a round of concurrent
requests is taken before any of them is counted: a round of N requests in
flight is not mistaken for N requests that all failed."""
from __future__ import annotations

import random
import threading
from collections import deque


class _MovingSum:
  """Sum of values added in the last ``window_ms``, in ``bucket_ms`` buckets."""
  def __init__(self, window_ms: int, bucket_ms: int):
    self.window_ms, self.bucket_ms = window_ms, max(1, bucket_ms)
    self._buckets: deque = deque()  # (bucket start ms, count)

  def _trim(self, now_ms: float) -> None:
    while self._buckets and self._buckets[0][0] <= now_ms - self.window_ms:
      self._buckets.popleft()

  def add(self, now_ms: float, n: int) -> None:
    start = int(now_ms // self.bucket_ms) * self.bucket_ms
    if self._buckets and self._buckets[-1][0] == start:
      self._buckets[-1] = (start, self._buckets[-1][1] + n)
    else:
      self._buckets.append((start, n))
    self._trim(now_ms)

  def sum(self, now_ms: float) -> int:
    self._trim(now_ms)
    return sum(n for _, n in self._buckets)


class AdaptiveThrottler:
  """``throttle_request(now_ms, n)`` says whether to hold back a round of
  ``n`` requests; ``successful_request(now_ms)`` records a success."""
  MIN_REQUESTS = 1

  def __init__(self, window_ms: int, bucket_ms: int, overload_ratio: float):
    self._all = _MovingSum(window_ms, bucket_ms)
    self._ok = _MovingSum(window_ms, bucket_ms)
    self.overload_ratio = float(overload_ratio)
    self._random = random.Random()
    self._lock = threading.Lock()

  def __getstate__(self):
    state = dict(self.__dict__)
    del state['_lock']  # a copy (pickled handler) gets its own lock
    return state

  def __setstate__(self, state):
    self.__dict__.update(state)
    self._lock = threading.Lock()

  def throttling_probability(self, now_ms: float) -> float:
    all_requests = self._all.sum(now_ms)
    ok = self._ok.sum(now_ms)
    return max(0.0, (all_requests - self.overload_ratio * ok) /
               (all_requests + self.MIN_REQUESTS))

  def throttle_request(self, now_ms: float, n: int = 1) -> bool:
    with self._lock:
      p = self.throttling_probability(now_ms)
      self._all.add(now_ms, n)
      return self._random.uniform(0, 1) < p

  def successful_request(self, now_ms: float, n: int = 1) -> None:
    with self._lock:
      self._ok.add(now_ms, n)
