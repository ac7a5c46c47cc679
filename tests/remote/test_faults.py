"""Faults between a pipeline and a real model server, on loopback and bounded:
5xx and 429 answers, slow answers past the timeout, dropped connections (a
fault-injecting proxy), a server killed and restarted mid-run, a bad row.
Every element ends in the output or the dead-letter output, once."""
import threading

import apache_beam as beam
import pytest
from apache_beam.testing.util import assert_that, equal_to

from runinference.base import KeyedModelHandler, RunInference
from runinference.remote import (KServeV1ModelHandler, MLflowModelHandler,
                                 RemoteRequestError)
from tests import servers
from tests.helpers import metric, run_pipeline

NS = 'MLflowModelHandler'


@pytest.fixture
def mlflow(request, tmp_path_factory):
  return servers.shared_server(request, 'mlflow', lambda: servers.mlflow_server(
      tmp_path_factory.mktemp('mlflow')))


@pytest.fixture
def kserve(request, tmp_path_factory):
  return servers.shared_server(request, 'kserve', lambda: servers.kserve_server(
      tmp_path_factory.mktemp('kserve')))


@pytest.fixture
def proxy_to(request):
  made = []

  def make(upstream, plan, slow_secs=3.0):
    made.append(servers.FaultProxy(upstream, plan, slow_secs))
    return made[-1]
  yield make
  for p in made:
    p.close()


def _keyed_rows(n):
  frame, model = servers.frame_model()
  rows = frame.iloc[:n].to_dict('records')
  want = [(i, int(y)) for i, y in enumerate(model.predict(frame.iloc[:n]))]
  return list(enumerate(rows)), want


def _handler(url, **kwargs):
  kwargs.setdefault('initial_retry_delay_secs', 0.1)
  kwargs.setdefault('max_retry_delay_secs', 1.0)
  # the client throttles itself after failures: 5 s waits by default
  kwargs.setdefault('throttle_delay_secs', 0.1)
  return KeyedModelHandler(MLflowModelHandler(
      url, min_batch_size=4, max_batch_size=4, max_concurrent_requests=1,
      **kwargs))


def _run(handler, rows, want, dead):
  def build(p):
    main, dlq = (p | beam.Create(rows)
                 | RunInference(handler).with_exception_handling())
    assert_that(main | beam.MapTuple(lambda k, y: (k, int(y))),
                equal_to(want), label='outputs')
    assert_that(dlq.failed_inferences
                | beam.Map(lambda r: (r[0][0][0], r[1][0].__name__)),
                equal_to(dead), label='dead letters')
  return run_pipeline(build)


def test_5xx_429_drop_and_slow_answers_are_retried(mlflow, proxy_to):
  faults = {0: 500, 1: 429, 2: 'drop', 3: 'slow'}
  proxy = proxy_to(mlflow.url, lambda n: faults.get(n, 'ok'), slow_secs=3)
  rows, want = _keyed_rows(16)
  result = _run(_handler(proxy.url, request_timeout_secs=1.0), rows, want, [])
  assert proxy.count == 8  # 4 batches + one retry per injected fault
  assert metric(result, NS, 'remote_requests') == 8
  assert metric(result, NS, 'remote_retries') == 4
  assert metric(result, NS, 'remote_request_failures') == 4
  assert metric(result, NS, 'remote_request_latency_ms').count == 8
  assert metric(result, NS, 'remote_request_latency_ms').max >= 900
  assert metric(result, NS, 'remote_throttled_ms') > 0  # the 429 wait
  assert not metric(result, NS, 'remote_failed_batches')


def test_persistent_server_errors_dead_letter_each_row_once(mlflow, proxy_to):
  proxy = proxy_to(mlflow.url, lambda n: 503)
  rows, _ = _keyed_rows(8)
  result = _run(_handler(proxy.url, num_retries=2), rows, [],
                [(i, 'BatchFailedError') for i in range(8)])
  assert proxy.count == 6  # 2 batches x 3 attempts, no bisection
  assert metric(result, NS, 'remote_failed_batches') == 2
  assert metric(result, NS, 'remote_retries') == 4


def test_a_bad_row_is_bisected_to_the_dead_letter_output(mlflow):
  rows, want = _keyed_rows(8)
  rows[5] = (5, {**rows[5][1], 'b': 'not a number'})
  del want[5]
  _run(_handler(mlflow.url), rows, want, [(5, RemoteRequestError.__name__)])


def test_server_killed_and_restarted_mid_run(kserve, proxy_to):
  restarted = threading.Event()

  def crash():
    kserve.kill()
    threading.Thread(
        target=lambda: (kserve.start(), restarted.set()), daemon=True).start()
    return 'ok'  # forwarded to the dead server: the connection drops

  proxy = proxy_to(kserve.url, lambda n: crash if n == 2 else 'ok')
  X, model = servers.iris_like()
  X = X[:24]
  want = [(i, round(float(p), 6))
          for i, p in enumerate(model.predict_proba(X)[:, 1])]
  handler = KeyedModelHandler(KServeV1ModelHandler(
      proxy.url, 'iris', min_batch_size=4, max_batch_size=4,
      num_retries=10, initial_retry_delay_secs=1, max_retry_delay_secs=8))

  def build(p):
    main, dlq = (p | beam.Create([(i, x.tolist()) for i, x in enumerate(X)])
                 | RunInference(handler).with_exception_handling())
    assert_that(main | beam.MapTuple(lambda k, y: (k, round(y, 6))),
                equal_to(want), label='outputs')
    assert_that(dlq.failed_inferences, equal_to([]), label='no dead letters')
  result = run_pipeline(build)
  assert restarted.wait(120)
  assert metric(result, 'KServeV1ModelHandler', 'remote_retries') >= 1
  assert proxy.count > 6

