"""What a remote handler does with answers that are not plain successes, on a
scripted HTTP server (tests/servers.FakeServer) on 127.0.0.1 (issue 18,
items 1-5): never-ending answers, a hung connection with one pool slot,
2xx answers of the wrong shape, count or type, redirects, 4xx answers for
every request. Every row ends in the output or the dead-letter output, once,
after a bounded number of requests."""
import subprocess
import sys
import textwrap
import time

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.testing.util import assert_that, equal_to

from runinference import live_metrics
from runinference.base import RunInference
from runinference.exceptions import BatchFailedError
from runinference.remote import (KServeV1ModelHandler, KServeV2ModelHandler,
                                 MLflowModelHandler,
                                 OpenAIEmbeddingsModelHandler,
                                 RemoteProtocolError, RemoteRedirectError,
                                 RemoteRequestError, RemoteRequestRejected,
                                 RemoteResultCountError)
from tests.helpers import metric, run_pipeline
from tests.servers import FakeServer, Reply, ROOT


@pytest.fixture
def serve():
  made = []

  def make(answer):
    made.append(FakeServer(answer))
    return made[-1]
  yield make
  for server in made:
    server.close()


def v1(request):
  """A KServe V1 answer: each row's sum."""
  return Reply(body={'predictions': [sum(r) for r in request['instances']]})


def v1_handler(url, **kwargs):
  kwargs.setdefault('initial_retry_delay_secs', 0.01)
  kwargs.setdefault('max_retry_delay_secs', 0.05)
  kwargs.setdefault('request_timeout_secs', 2)
  kwargs.setdefault('max_concurrent_requests', 1)
  # the client throttles itself after failures: 5 s waits by default
  kwargs.setdefault('throttle_delay_secs', 0.1)
  return KServeV1ModelHandler(url, 'm', **kwargs)


_SEEN: dict = {}


def _keep(value, tag):
  _SEEN.setdefault(tag, []).append(value)


def _dead(record):
  (row,), (error_type, error, *_) = record
  return row, error_type.__name__, str(error)


def run_rows(handler, rows):
  """Runs ``rows`` with exception handling: (outputs, dead letters as
  (row, error class name, message))."""
  _SEEN.clear()

  def build(p):
    main, dlq = (p | beam.Create(rows)
                 | RunInference(handler).with_exception_handling())
    _ = main | beam.Map(_keep, 'out')
    _ = dlq.failed_inferences | beam.Map(_dead) | 'dead' >> beam.Map(
        _keep, 'dead')
  run_pipeline(build)
  return _SEEN.get('out', []), _SEEN.get('dead', [])


# -- 1, 2: a never-ending answer ---------------------------------------------

def test_process_exits_after_a_never_ending_answer_is_abandoned(serve):
  """Item 1: a chunked answer that never finishes, abandoned by
  request_timeout_secs, used to keep the process from exiting."""
  server = serve(lambda n, path, request: Reply(trickle=True))
  script = textwrap.dedent(f'''
      import apache_beam as beam
      from runinference.base import RunInference
      from runinference.remote import KServeV1ModelHandler
      h = KServeV1ModelHandler({server.url!r}, 'm', request_timeout_secs=0.5,
                               num_retries=0, max_concurrent_requests=1)
      with beam.Pipeline() as p:
        _, dlq = (p | beam.Create([[1.0], [2.0]])
                  | RunInference(h).with_exception_handling())
        _ = dlq.failed_inferences | beam.Map(
            lambda r: print('failed', type(r[1][0]).__name__ if
                            isinstance(r[1][0], BaseException) else
                            r[1][0].__name__, flush=True))
      print('pipeline done', flush=True)
  ''')
  start = time.monotonic()
  try:
    done = subprocess.run([sys.executable, '-c', script], cwd=ROOT,
                          capture_output=True, text=True, timeout=45)
  except subprocess.TimeoutExpired:
    pytest.fail('the process did not exit after the request was abandoned')
  assert done.returncode == 0, done.stderr[-2000:]
  assert done.stdout.count('failed BatchFailedError') == 2
  assert 'pipeline done' in done.stdout
  assert time.monotonic() - start < 45


def test_a_timed_out_connection_is_discarded_and_retries_reach_the_server(
    serve):
  """Item 2: with one connection, a request hung on a never-ending answer
  used to keep the pool slot: every retry failed with PoolTimeout."""
  server = serve(lambda n, path, request:
                 Reply(trickle=True) if n == 0 else v1(request))
  h = v1_handler(server.url, max_concurrent_requests=1,
                 request_timeout_secs=0.5, num_retries=2)
  model = h.load_model()
  start = time.monotonic()
  assert h.run_inference([[1, 2], [3, 4]], model) == [3, 7]
  assert server.count == 2
  assert time.monotonic() - start < 10  # 0.6 s on an idle machine


# -- 3: a 2xx answer that breaks the protocol ----------------------------------

def test_v2_shape_not_matching_data_is_one_clear_failure(serve):
  def answer(n, path, request):
    rows = request['inputs'][0]['shape'][0]
    return Reply(body={'outputs': [{'name': 'y', 'datatype': 'FP32',
                                    'shape': [rows, 1],
                                    'data': [1.0] * (rows - 1)}]})
  server = serve(answer)
  h = KServeV2ModelHandler(server.url, 'm', min_batch_size=8, max_batch_size=8,
                           max_concurrent_requests=1)
  start = time.monotonic()
  outputs, dead = run_rows(h, [np.ones(3, 'float32')] * 8)
  assert outputs == [] and len(dead) == 8
  assert {d[1] for d in dead} == {'RemoteProtocolError'}
  message = dead[0][2]
  assert server.url in message and 'HTTP 200' in message
  assert '[8, 1] holds 8 values, "data" has 7' in message
  assert server.count == 1  # not retried, not bisected
  assert time.monotonic() - start < 30


def test_non_numeric_embedding_is_one_clear_failure(serve):
  server = serve(lambda n, path, request: Reply(body={'data': [
      {'index': 0, 'embedding': [0.1, 0.2]},
      {'index': 1, 'embedding': ['a', 'b']}]}))
  h = OpenAIEmbeddingsModelHandler(server.url + '/v1', 'e',
                                   max_concurrent_requests=1)
  with pytest.raises(RemoteProtocolError) as info:
    h.run_inference(['x', 'y'], h.load_model())
  assert 'data[1].embedding' in str(info.value)
  assert f'{server.url}/v1/embeddings answered HTTP 200' in str(info.value)
  assert info.value.status == 200
  assert server.count == 1


@pytest.mark.parametrize('extra', [-1, 1])
def test_a_wrong_prediction_count_fails_the_batch_once_unbisected(
    serve, extra):
  """Item 3: n-1 or n+1 predictions used to bisect each batch to single
  rows (28 requests for 8 rows)."""
  def answer(n, path, request):
    rows = len(request['instances'])
    return Reply(body={'predictions': [0] * (rows + extra)})
  server = serve(answer)
  h = v1_handler(server.url, min_batch_size=8, max_batch_size=8)
  outputs, dead = run_rows(h, [[i] for i in range(8)])
  assert outputs == [] and sorted(d[0] for d in dead) == [[i] for i in range(8)]
  assert {d[1] for d in dead} == {'RemoteResultCountError'}
  assert f'expected 8 predictions (one per row), got {8 + extra}' in dead[0][2]
  assert server.count == 1


def test_protocol_errors_are_retried_only_when_the_retry_policy_says(serve):
  server = serve(lambda n, path, request: Reply(body={'predictions': 'no'}))
  h = v1_handler(server.url, num_retries=2)
  with pytest.raises(RemoteProtocolError):
    h.run_inference([[1]], h.load_model())
  assert server.count == 1
  h = v1_handler(server.url, num_retries=2, retry_filter=lambda e: True)
  with pytest.raises(BatchFailedError) as info:
    h.run_inference([[1]], h.load_model())
  assert isinstance(info.value.__cause__, RemoteProtocolError)
  assert server.count == 1 + 3


def test_a_body_that_is_not_json_is_a_protocol_error(serve):
  server = serve(lambda n, path, request: Reply(body=b'<html>ok</html>'))
  h = v1_handler(server.url)
  with pytest.raises(RemoteProtocolError, match='not JSON'):
    h.run_inference([[1]], h.load_model())
  assert server.count == 1


# -- 4: redirects ------------------------------------------------------------

def test_a_redirect_with_a_json_body_is_not_taken_as_predictions(serve):
  server = serve(lambda n, path, request: Reply(
      302, body={'predictions': [42]}, headers={'location': '/elsewhere'}))
  h = v1_handler(server.url)
  with pytest.raises(RemoteRedirectError, match='HTTP 302') as info:
    h.run_inference([[1]], h.load_model())
  assert 'follow_redirects=True' in str(info.value)
  assert server.count == 1


def test_a_bodiless_307_is_a_clear_error_and_not_retried(serve):
  server = serve(lambda n, path, request: Reply(
      307, headers={'location': '/v1/models/m2:predict'}))
  h = v1_handler(server.url, num_retries=3)
  with pytest.raises(RemoteRedirectError, match='307'):
    h.run_inference([[1]], h.load_model())
  assert server.count == 1


def test_redirects_are_followed_when_asked_to_the_same_host(serve):
  def answer(n, path, request):
    if path == '/v1/models/m:predict':
      return Reply(307, headers={'location': '/v1/models/m2:predict'})
    return v1(request)
  server = serve(answer)
  h = v1_handler(server.url, follow_redirects=True)
  assert h.run_inference([[1, 2]], h.load_model()) == [3]
  assert server.paths == ['/v1/models/m:predict', '/v1/models/m2:predict']
  assert server.bodies[1] == server.bodies[0]  # method and body kept


def test_a_redirect_to_another_host_is_followed_only_if_named(serve):
  target = serve(lambda n, path, request: v1(request))
  other = target.url.replace('127.0.0.1', 'localhost')
  server = serve(lambda n, path, request: Reply(
      308, headers={'location': other + path}))
  h = v1_handler(server.url, follow_redirects=True)
  with pytest.raises(RemoteRedirectError, match='redirect_hosts'):
    h.run_inference([[1]], h.load_model())
  assert target.count == 0
  netloc = other.split('://')[1]
  h = v1_handler(server.url, follow_redirects=True, redirect_hosts=[netloc])
  assert h.run_inference([[1, 1]], h.load_model()) == [2]


def test_a_redirect_loop_ends(serve):
  server = serve(lambda n, path, request: Reply(
      307, headers={'location': path}))
  h = v1_handler(server.url, follow_redirects=True)
  with pytest.raises(RemoteRedirectError, match='more than 5 redirects'):
    h.run_inference([[1]], h.load_model())
  assert server.count == 6


# -- 5: 4xx answers ----------------------------------------------------------

def test_a_4xx_for_every_request_is_not_multiplied_by_bisection(serve):
  """Item 5: a 4-row batch used to make 9 requests against an endpoint
  answering 400 to everything."""
  server = serve(lambda n, path, request: Reply(400, body={'error': 'no'}))
  h = v1_handler(server.url, min_batch_size=4, max_batch_size=4)
  outputs, dead = run_rows(h, [[i] for i in range(4)])
  assert outputs == [] and sorted(d[0] for d in dead) == [[i] for i in range(4)]
  assert {d[1] for d in dead} == {RemoteRequestRejected.__name__}
  assert server.count == 1


MLFLOW_ROW_ERROR = Reply(400, body={
    'error_code': 'BAD_REQUEST',
    'message': "Failed to predict data 'x'. Error: could not convert"})


def _mlflow_answer(bad):
  def answer(n, path, request):
    rows = request['dataframe_split']['data']
    if any(r[0] in bad for r in rows):
      return MLFLOW_ROW_ERROR
    return Reply(body={'predictions': [r[0] * 10 for r in rows]})
  return answer


def test_a_row_error_is_bisected_to_the_bad_row(serve):
  server = serve(_mlflow_answer(bad={5}))
  h = MLflowModelHandler(server.url, min_batch_size=8, max_batch_size=8,
                         max_concurrent_requests=1, throttle_delay_secs=0.1)
  outputs, dead = run_rows(h, [[i] for i in range(8)])
  assert sorted(outputs) == [i * 10 for i in range(8) if i != 5]
  assert [(d[0], d[1]) for d in dead] == [([5], 'RemoteRequestError')]
  assert server.count <= 1 + 2 * 3


def test_the_bisection_of_a_batch_makes_at_most_max_bisect_requests(serve):
  server = serve(_mlflow_answer(bad=set(range(16))))
  h = MLflowModelHandler(server.url, min_batch_size=16, max_batch_size=16,
                         max_concurrent_requests=1, max_bisect_requests=6,
                         throttle_delay_secs=0.1)
  outputs, dead = run_rows(h, [[i] for i in range(16)])
  assert outputs == []
  assert sorted(d[0] for d in dead) == [[i] for i in range(16)]
  assert {d[1] for d in dead} == {'RemoteRequestError', 'BisectionBudgetSpent'}
  assert server.count == 1 + 6  # without the cap: 31


def test_a_4xx_about_the_model_is_not_a_row_error_for_mlflow(serve):
  server = serve(lambda n, path, request: Reply(400, body={
      'error_code': 'BAD_REQUEST',
      'message': 'The input must be a JSON dictionary with exactly one of ...'
                 ' Received dictionary with input fields: []'}))
  h = MLflowModelHandler(server.url, min_batch_size=4, max_batch_size=4,
                         max_concurrent_requests=1)
  _, dead = run_rows(h, [[i] for i in range(4)])
  assert {d[1] for d in dead} == {RemoteRequestRejected.__name__}
  assert server.count == 1


def test_openai_blames_rows_only_for_errors_about_the_input():
  h = OpenAIEmbeddingsModelHandler('http://127.0.0.1:9/v1', 'e')
  assert h.row_error(400, {'error': {
      'message': 'This model\'s maximum context length is 512 tokens'}})
  assert h.row_error(413, 'Input validation error: inputs must have less '
                     'than 512 tokens')
  assert not h.row_error(404, {'error': {'message': 'model not found'}})
  assert not h.row_error(401, {'error': {'message': 'invalid api key'}})
  assert issubclass(RemoteRequestRejected, RemoteRequestError)
  assert issubclass(RemoteResultCountError, RemoteProtocolError)


# -- metrics reach the live registry (issue 20) --------------------------------

def test_remote_metrics_reach_the_live_registry(serve):
  """Remote handlers recorded Beam metrics directly: their counters never
  reached --metrics-port."""
  server = serve(lambda n, path, request:
                 Reply(503) if n == 0 else v1(request))
  h = v1_handler(server.url, min_batch_size=4, max_batch_size=4)
  live_metrics.reset()
  live_metrics.enable()
  try:
    def build(p):
      out = p | beam.Create([[i] for i in range(4)]) | RunInference(h)
      assert_that(out, equal_to(list(range(4))))
    result = run_pipeline(build)
    snap = live_metrics.snapshot()
  finally:
    live_metrics.disable()
    live_metrics.reset()
  ns = 'KServeV1ModelHandler'
  assert snap.counter('remote_requests', ns) == 2
  assert snap.counter('remote_retries', ns) == 1
  assert snap.distribution('remote_request_latency_ms', ns).count == 2
  assert metric(result, ns, 'remote_requests') == 2  # Beam's too
