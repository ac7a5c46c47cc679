"""Fuzzing every remote protocol with a scripted fake server (issue 18):
random status codes, bodies (right, wrong count, wrong shape or type, not
JSON, empty), delays past the timeout, truncated and never-ending answers,
dropped connections and redirects.

For every script: each row ends exactly once in the output (with the right
prediction) or the dead-letter output; a batch makes a bounded number of
requests; it ends in bounded time; no thread that would keep the process
from exiting is left. Batches run as the engine runs them with exception
handling: one call, then ``bisect_failures`` on the rows of a failed call.
"""
import threading
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runinference._core.failures import bisect_failures
from runinference._handlers.http_client import _MAX_REDIRECTS
from runinference.remote import (HttpModelHandler, KServeV2ModelHandler,
                                 MLflowModelHandler,
                                 OpenAIEmbeddingsModelHandler)
from runinference.vertex_ai_inference import VertexAIModelHandlerJSON
from tests.servers import FakeServer, Reply

TIMEOUT = 0.3
RETRIES = 1
EXAMPLES = 20


class ScoresHandler(HttpModelHandler):
  """A generic JSON protocol: ``{"rows": [...]}`` → ``{"scores": [...]}``."""
  def path(self, inference_args):
    return '/score'

  def encode(self, batch, inference_args):
    return {'rows': list(batch)}

  def decode(self, answer, batch):
    return answer['scores']


def _score(row) -> float:
  return float(sum(row)) if not isinstance(row, str) else float(len(row))


# Each protocol: the handler, rows, the rows of a request, the right answer
# for them, a malformed answer for them, a 4xx it ties to the rows (if any),
# and a prediction as the test compares it.
PROTOCOLS = {
    'kserve_v2': dict(
        make=lambda url, **kw: KServeV2ModelHandler(url, 'm', **kw),
        rows=lambda n: [np.full(2, i, 'float32') for i in range(n)],
        sent=lambda r: np.asarray(r['inputs'][0]['data']).reshape(
            r['inputs'][0]['shape']).tolist(),
        answer=lambda rows, k: {'outputs': [{
            'name': 'y', 'datatype': 'FP32', 'shape': [len(rows) + k],
            'data': [_score(x) for x in rows] + [0.0] * max(k, 0)
            if k >= 0 else [_score(x) for x in rows][:k]}]},
        malformed=lambda rows: {'outputs': [{
            'name': 'y', 'datatype': 'FP32', 'shape': [len(rows)],
            'data': ['x'] * len(rows)}]},
        row_error=None, value=float),
    'openai_embeddings': dict(
        make=lambda url, **kw: OpenAIEmbeddingsModelHandler(url + '/v1', 'e',
                                                            **kw),
        rows=lambda n: ['w' * (i + 1) for i in range(n)],
        sent=lambda r: r['input'],
        answer=lambda rows, k: {'data': [
            {'index': i, 'embedding': [_score(x), 1.0]}
            for i, x in enumerate((rows + rows)[:len(rows) + k])]},
        malformed=lambda rows: {'data': [
            {'index': i, 'embedding': 'not numbers'}
            for i in range(len(rows))]},
        row_error=Reply(400, body={'error': {
            'message': 'input is longer than 512 tokens', 'param': 'input'}}),
        value=lambda v: float(v[0])),
    'mlflow': dict(
        make=MLflowModelHandler,
        rows=lambda n: [[float(i), 1.0] for i in range(n)],
        sent=lambda r: r['dataframe_split']['data'],
        answer=lambda rows, k: {'predictions': [
            _score(x) for x in (rows + rows)[:len(rows) + k]]},
        malformed=lambda rows: {'predictions': {
            'a': [1.0] * (len(rows) + 1)}},
        row_error=Reply(400, body={'error_code': 'BAD_REQUEST',
                                   'message': 'Failed to predict data'}),
        value=float),
    'vertex': dict(
        make=lambda url, **kw: VertexAIModelHandlerJSON(
            'e', 'p', 'l', endpoint_url=url + '/v1/endpoints/e:predict',
            access_token='t', **kw),
        rows=lambda n: [[float(i)] for i in range(n)],
        sent=lambda r: r['instances'],
        answer=lambda rows, k: {'deployedModelId': 'd', 'predictions': [
            _score(x) for x in (rows + rows)[:len(rows) + k]]},
        malformed=lambda rows: {'predictions': 7},
        row_error=None, value=lambda p: float(p.inference)),
    'generic_http': dict(
        make=ScoresHandler,
        rows=lambda n: [[i, i] for i in range(n)],
        sent=lambda r: r['rows'],
        answer=lambda rows, k: {'scores': [
            _score(x) for x in (rows + rows)[:len(rows) + k]]},
        malformed=lambda rows: {'scores': None},
        row_error=None, value=float),
}

# One answer of the script: (kind, status, delay).
STEPS = st.tuples(
    st.sampled_from(['ok', 'ok', 'ok', 'count', 'malformed', 'not_json',
                     'empty', 'missing', 'truncated', 'trickle', 'drop',
                     'slow', 'redirect', 'row_error']),
    st.sampled_from([200, 200, 201, 204, 301, 302, 307, 400, 401, 404, 408,
                     413, 422, 429, 500, 502, 503]),
    st.sampled_from([-1, 1]))


def _reply(protocol, step, path, request) -> Reply:
  kind, status, k = step
  rows = protocol['sent'](request) if request else []
  right = protocol['answer'](rows, 0)
  if kind == 'ok':
    return Reply(body=right)
  if kind == 'count':
    return Reply(body=protocol['answer'](rows, k))
  if kind == 'malformed':
    return Reply(status if status < 300 else 200,
                 body=protocol['malformed'](rows))
  if kind == 'not_json':
    return Reply(status, body=b'<html>\x00not json')
  if kind == 'empty':
    return Reply(status, body=b'')
  if kind == 'missing':
    return Reply(status, body={'unexpected': True})
  if kind == 'truncated':
    return Reply(body=right, truncate=5)
  if kind == 'trickle':
    return Reply(trickle=True)
  if kind == 'drop':
    return Reply(drop=True)
  if kind == 'slow':
    return Reply(body=right, delay=TIMEOUT * 3)
  if kind == 'redirect':
    return Reply(307 if k > 0 else 302, body=right,
                 headers={'location': path})
  return protocol['row_error'] or Reply(status, body={'error': 'refused'})


def _run_like_the_engine(handler, rows):
  """(outputs by row index, failed row indices), as the engine with
  exception handling: the batch, then its bisection if it failed."""
  model = handler.load_model()
  call = lambda lo, hi: handler.run_inference(rows[lo:hi], model)
  try:
    return dict(enumerate(call(0, len(rows)))), []
  except Exception as first:  # pylint: disable=broad-except
    outcome = bisect_failures(len(rows), call, first,
                              catches=lambda e: isinstance(e, Exception))
  outputs = {}
  for ok in outcome.results:
    assert len(ok.value) == ok.stop - ok.start
    outputs.update(zip(range(ok.start, ok.stop), ok.value))
  failed = [i for f in outcome.failures for i in f.indices()]
  return outputs, failed


def _non_daemon_threads() -> set:
  return {t for t in threading.enumerate() if not t.daemon and t.is_alive()}


@pytest.fixture(scope='module')
def server():
  fake = FakeServer(lambda n, path, request: Reply(500))
  yield fake
  fake.close()


@pytest.mark.parametrize('name', sorted(PROTOCOLS))
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                 HealthCheck.too_slow])
@given(script=st.lists(STEPS, min_size=1, max_size=6),
       n=st.integers(1, 5), concurrency=st.sampled_from([1, 2]),
       follow=st.booleans())
def test_every_row_once_bounded_requests_and_time(server, name, script, n,
                                                  concurrency, follow):
  protocol = PROTOCOLS[name]
  server.reset(lambda i, path, request: _reply(
      protocol, script[i % len(script)], path, request))
  handler = protocol['make'](
      server.url, request_timeout_secs=TIMEOUT, num_retries=RETRIES,
      max_concurrent_requests=concurrency, initial_retry_delay_secs=0.01,
      max_retry_delay_secs=0.02, throttle_delay_secs=0.01,
      follow_redirects=follow)
  rows = protocol['rows'](n)
  threads = _non_daemon_threads()
  start = time.monotonic()

  outputs, failed = _run_like_the_engine(handler, rows)

  took = time.monotonic() - start
  # Each row exactly once, and an output only with the right prediction.
  assert sorted([*outputs, *failed]) == list(range(n))
  for i, y in outputs.items():
    assert protocol['value'](y) == _score(rows[i]), (i, y)
  # Bounded requests: the first call's rounds, the bisection's budget and
  # the last bisection call's rounds; each request may be redirected.
  parts = min(n, concurrency)
  rounds = (RETRIES + 1) * parts
  budget = max(4, 4 * int(np.ceil(np.log2(max(n, 2)))))
  hops = _MAX_REDIRECTS + 1 if follow else 1
  assert server.count <= (2 * rounds + budget) * hops
  # Bounded time: no request outlives its timeout by much.
  per_request = 2 * TIMEOUT + 1
  assert took < (2 * rounds + budget) * per_request
  # Nothing left that would keep the process from exiting.
  assert _non_daemon_threads() <= threads


def test_a_fixed_script_through_every_failure_kind(server):
  """A deterministic run of the invariants: a never-ending answer, a dropped
  connection, a wrong count, a row error, a slow answer."""
  protocol = PROTOCOLS['mlflow']
  kinds = ['trickle', 'drop', 'count', 'row_error', 'ok', 'slow', 'ok']
  server.reset(lambda i, path, request: _reply(
      protocol, (kinds[i % len(kinds)], 200, 1), path, request))
  handler = protocol['make'](server.url, request_timeout_secs=TIMEOUT,
                             num_retries=RETRIES, max_concurrent_requests=1,
                             initial_retry_delay_secs=0.01)
  rows = protocol['rows'](4)
  threads = _non_daemon_threads()
  outputs, failed = _run_like_the_engine(handler, rows)
  assert sorted([*outputs, *failed]) == [0, 1, 2, 3]
  assert all(y == _score(rows[i]) for i, y in outputs.items())
  assert server.count <= 2 * (RETRIES + 1) + 8
  assert _non_daemon_threads() <= threads
