"""RemoteModelHandler's policy with a plain in-process service: concurrency
and order, retries with backoff, one retry sequence per failing batch
(issue 13 defect 4), metrics, options. The real servers are in
test_real_servers.py."""
import threading
import time

import apache_beam as beam
import pytest
from apache_beam.testing.util import assert_that, equal_to

from runinference.base import RemoteModelHandler, RunInference
from runinference.exceptions import (BatchFailedError, ConfigurationError,
                                     RateLimitExceeded)
from runinference.remote import (RemoteRequestError, RemoteServerError,
                                 is_transient)
from tests.helpers import metric, run_pipeline


class Service:
  """A pretend service: adds one, fails as told, records what it saw."""
  lock = threading.Lock()
  calls: list = []
  in_flight = 0
  max_in_flight = 0

  @classmethod
  def reset(cls):
    cls.calls, cls.in_flight, cls.max_in_flight = [], 0, 0

  def __init__(self, fail, sleep):
    self.fail, self.sleep = fail, sleep

  def __call__(self, rows):
    cls = Service
    with cls.lock:
      cls.calls.append(list(rows))
      n = len(cls.calls)
      cls.in_flight += 1
      cls.max_in_flight = max(cls.max_in_flight, cls.in_flight)
    try:
      time.sleep(self.sleep)
      error = self.fail(n, rows)
      if error == 'hang':
        time.sleep(6)
      elif error is not None:
        raise error
      return [r + 1 for r in rows]
    finally:
      with cls.lock:
        cls.in_flight -= 1


class AddOne(RemoteModelHandler):
  def __init__(self, fail=lambda n, rows: None, sleep=0.0, **kwargs):
    self.fail, self.sleep = fail, sleep
    kwargs.setdefault('initial_retry_delay_secs', 0.05)
    kwargs.setdefault('throttle_delay_secs', 0.1)
    super().__init__(**kwargs)

  def create_client(self):
    return Service(self.fail, self.sleep)

  def request(self, batch, model, inference_args=None):
    return model(batch)


@pytest.fixture(autouse=True)
def _reset():
  Service.reset()


def test_concurrent_sub_requests_keep_input_order():
  h = AddOne(sleep=0.2, max_concurrent_requests=4, request_batch_size=3)
  rows = list(range(12))
  assert h.run_inference(rows, h.load_model()) == [r + 1 for r in rows]
  assert sorted(map(tuple, Service.calls)) == [
      (0, 1, 2), (3, 4, 5), (6, 7, 8), (9, 10, 11)]
  assert Service.max_in_flight == 4


def test_without_request_batch_size_a_batch_is_split_evenly():
  h = AddOne(max_concurrent_requests=3)
  assert h.run_inference(list(range(7)), h.load_model()) == list(range(1, 8))
  assert sorted(len(c) for c in Service.calls) == [1, 3, 3]


def test_transient_errors_are_retried_then_succeed():
  fail = lambda n, rows: RemoteServerError('503', status=503) if n <= 2 else None
  h = AddOne(fail=fail, num_retries=3)
  assert h.run_inference([1, 2], h.load_model()) == [2, 3]
  assert len(Service.calls) == 3


def test_only_failed_sub_requests_are_resent():
  fail = lambda n, rows: RemoteServerError('500') if rows[0] == 4 and n < 5 else None
  h = AddOne(fail=fail, max_concurrent_requests=2, request_batch_size=4)
  assert h.run_inference(list(range(8)), h.load_model()) == list(range(1, 9))
  assert [c for c in Service.calls if c[0] == 0] == [[0, 1, 2, 3]]


def test_spent_retries_raise_batch_failed_error_with_the_cause():
  h = AddOne(fail=lambda n, rows: ConnectionResetError('reset'), num_retries=2)
  with pytest.raises(BatchFailedError) as info:
    h.run_inference([1, 2, 3], h.load_model())
  assert isinstance(info.value.__cause__, ConnectionResetError)
  assert 'after 3 attempt(s)' in str(info.value)
  assert len(Service.calls) == 3


def test_payload_errors_are_not_retried_and_stay_ordinary():
  h = AddOne(fail=lambda n, rows: RemoteRequestError('400 bad row', status=400))
  with pytest.raises(RemoteRequestError):
    h.run_inference([1], h.load_model())
  assert len(Service.calls) == 1
  assert not is_transient(RemoteRequestError('x'))


def test_retry_filter_decides():
  h = AddOne(fail=lambda n, rows: KeyError('k'), retry_filter=lambda e: False)
  with pytest.raises(KeyError):
    h.run_inference([1], h.load_model())
  assert len(Service.calls) == 1


def test_request_timeout_bounds_a_hung_request():
  h = AddOne(sleep=5, request_timeout_secs=0.2, num_retries=1)
  start = time.monotonic()
  with pytest.raises(BatchFailedError, match='request_timeout_secs'):
    h.run_inference([1], h.load_model())
  assert time.monotonic() - start < 4


def test_a_hung_sub_request_is_abandoned_and_resent_on_a_fresh_pool():
  h = AddOne(fail=lambda n, rows: 'hang' if n == 1 else None,
             max_concurrent_requests=2, request_batch_size=2,
             request_timeout_secs=0.3)
  start = time.monotonic()
  assert h.run_inference(list(range(8)), h.load_model()) == list(range(1, 9))
  assert time.monotonic() - start < 5.5
  assert len(Service.calls) >= 5


def test_rate_limit_refusal_is_a_batch_failure_and_a_rate_limit_error():
  from runinference.base import RateLimiter

  class Never(RateLimiter):
    def allow(self, hits_added=1):
      return False

  h = AddOne(rate_limiter=Never(namespace='t'), num_retries=1)
  with pytest.raises(RateLimitExceeded) as info:
    h.run_inference([1], h.load_model())
  assert isinstance(info.value, BatchFailedError)
  assert Service.calls == []


@pytest.mark.parametrize('options, match', [
    (dict(max_concurrent_requests=0), 'max_concurrent_requests'),
    (dict(request_batch_size=-1), 'request_batch_size'),
    (dict(num_retries=1.5), 'num_retries'),
    (dict(request_timeout_secs=0), 'request_timeout_secs'),
    (dict(retry_filter='yes'), 'retry_filter'),
])
def test_bad_options_are_named(options, match):
  with pytest.raises(ConfigurationError, match=match):
    AddOne(**options)


def test_unknown_option_is_an_error():
  # the same check and error as every ModelHandler (core/test_option_validation)
  with pytest.raises(TypeError, match="'max_batchsize'.*'max_batch_size'"):
    AddOne(max_batchsize=2)


def test_default_namespace_works_in_a_pipeline_and_counts_requests():
  """Issue 13 defect 9: the default namespace used to fail with 'Metric
  namespace must be non-empty'."""
  fail = lambda n, rows: RemoteServerError('503') if n == 1 else None
  h = AddOne(fail=fail, max_batch_size=4, min_batch_size=4)

  def build(p):
    out = p | beam.Create(list(range(8))) | RunInference(h)
    assert_that(out, equal_to(list(range(1, 9))))

  result = run_pipeline(build)
  requests = metric(result, 'AddOne', 'remote_requests')
  assert requests == len(Service.calls) >= 3
  assert metric(result, 'AddOne', 'remote_retries') == 1
  assert metric(result, 'AddOne', 'remote_request_failures') == 1
  assert metric(result, 'AddOne', 'remote_request_latency_ms').count == requests


def test_failing_batch_makes_one_retry_sequence_not_one_per_bisection():
  """Issue 13 defect 4: a batch failing for a reason that is not about a
  row goes to the dead-letter output once, after one retry sequence."""
  h = AddOne(fail=lambda n, rows: RemoteServerError('503 down', status=503),
             num_retries=2, min_batch_size=8, max_batch_size=8)

  def build(p):
    main, dlq = (p | beam.Create(list(range(8)))
                 | RunInference(h).with_exception_handling())
    assert_that(main, equal_to([]), label='none out')
    assert_that(
        dlq.failed_inferences | beam.Map(lambda r: (tuple(r[0]), r[1][0])),
        equal_to([((i,), BatchFailedError) for i in range(8)]),
        label='each row once')

  result = run_pipeline(build)
  assert len(Service.calls) == 3
  assert metric(result, 'AddOne', 'remote_failed_batches') == 1


def test_adaptive_throttling_engages_on_failures_not_on_concurrency():
  h = AddOne(max_concurrent_requests=4)
  now = time.time() * 1000
  # A round of 4 requests in flight with no history is not throttled...
  assert h.throttler.throttling_probability(now) == 0
  h.throttler.throttle_request(now, 4)
  h.throttler.successful_request(now, 4)
  assert h.throttler.throttling_probability(now) == 0
  # ...while a run of failures (no successes) raises the refusal odds.
  for _ in range(20):
    h.throttler.throttle_request(now, 1)
  assert h.throttler.throttling_probability(now) > 0.5


def test_a_used_handler_can_be_deep_copied_and_pickled():
  import copy
  import pickle
  from runinference.remote import MLflowModelHandler
  h = AddOne(max_concurrent_requests=2, request_timeout_secs=1)
  assert h.run_inference([1, 2, 3], h.load_model()) == [2, 3, 4]
  twin = copy.deepcopy(h)
  assert twin.run_inference([5], twin.load_model()) == [6]
  m = MLflowModelHandler('http://127.0.0.1:9', max_concurrent_requests=2)
  m.throttler.throttle_request(0, 2)
  again = pickle.loads(pickle.dumps(m))
  assert again.base_url == m.base_url
  assert again.throttler.throttling_probability(0) == pytest.approx(2 / 3)
  again.throttler.successful_request(0, 2)  # its own, working lock
