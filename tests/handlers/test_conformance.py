"""Every handler of ours through the public conformance kit
(``runinference.testing``): the framework cases of tests/handlers/cases, the
TensorRT handler (GPU: skipped without one) and a RemoteModelHandler against
a loopback HTTP server."""
import importlib
import json
import pkgutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from runinference.base import PredictionResult, RemoteModelHandler
from runinference.testing import HandlerCase, parametrize_with_checks
from tests.handlers import cases as handler_cases


def _framework_cases():
  """Kit cases of tests/handlers/cases, and (module, reason) of those whose
  framework is missing here."""
  cases, missing = [], []
  for info in sorted(pkgutil.iter_modules(handler_cases.__path__),
                     key=lambda m: m.name):
    try:
      module = importlib.import_module(f'tests.handlers.cases.{info.name}')
    except pytest.skip.Exception as e:  # importorskip: framework not installed
      missing.append(pytest.param(str(e), id=info.name))
      continue
    for c in module.CASES:
      cases.append(HandlerCase(
          name=c.name, make_handler=c.make_handler,
          make_examples=c.make_examples, bad_example=c.bad_example,
          expected_namespace=c.expected_namespace, check=c.check,
          compare=c.compare))
  return cases, missing


# -- TensorRT (needs tensorrt and a CUDA GPU) -----------------------------------
def _tensorrt_handler(tmp_path, **options):
  skl2onnx = pytest.importorskip('skl2onnx')
  from sklearn.linear_model import LinearRegression

  from runinference.tensorrt_inference import TensorRTEngineHandlerNumPy
  x = np.arange(10, dtype=np.float32).reshape(-1, 1)
  path = tmp_path / 'five.onnx'
  path.write_bytes(skl2onnx.to_onnx(
      LinearRegression().fit(x, 5 * x.ravel()), x[:1]).SerializeToString())
  return TensorRTEngineHandlerNumPy(1, 4, onnx_path=str(path), **options)


def _have(module):
  return importlib.util.find_spec(module) is not None


TENSORRT = pytest.param(
    HandlerCase(
        name='tensorrt-numpy', make_handler=_tensorrt_handler,
        make_examples=lambda: [np.array([float(i)], np.float32)
                               for i in range(3)],
        bad_example='not an array', expected_namespace='BeamML_TensorRT',
        gpu=True),
    marks=pytest.mark.skipif(not _have('tensorrt'),
                             reason='needs TensorRT (pip install tensorrt) '
                             'and a CUDA GPU'))


# -- RemoteModelHandler against a loopback server --------------------------------
class _TimesFive(BaseHTTPRequestHandler):
  """POST {"instances": [numbers]} -> {"predictions": [5x]}; 400 naming the
  first instance that is not a number."""
  def do_POST(self):
    body = json.loads(self.rfile.read(int(self.headers['Content-Length'])))
    rows = body['instances']
    bad = [i for i, x in enumerate(rows) if not isinstance(x, (int, float))]
    if bad:
      status, reply = 400, {
          'error': f'instance {bad[0]} ({rows[bad[0]]!r}) is not a number'}
    else:
      status, reply = 200, {'predictions': [5 * x for x in rows]}
    data = json.dumps(reply).encode()
    self.send_response(status)
    self.send_header('Content-Type', 'application/json')
    self.send_header('Content-Length', str(len(data)))
    self.end_headers()
    self.wfile.write(data)

  def log_message(self, *args):
    pass


_SERVER = {}


def _server_url() -> str:
  if 'url' not in _SERVER:
    server = ThreadingHTTPServer(('127.0.0.1', 0), _TimesFive)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _SERVER['url'] = f'http://127.0.0.1:{server.server_address[1]}/predict'
  return _SERVER['url']


class _Client:
  """JSON over HTTP with the standard library."""
  def __init__(self, url):
    self.url = url

  def predict(self, rows: list) -> list:
    import urllib.error
    import urllib.request
    req = urllib.request.Request(
        self.url, data=json.dumps({'instances': rows}).encode(),
        headers={'Content-Type': 'application/json'})
    try:
      with urllib.request.urlopen(req, timeout=30) as reply:
        return json.loads(reply.read())['predictions']
    except urllib.error.HTTPError as e:
      raise ValueError(f'the service rejected the batch: '
                       f'{json.loads(e.read())["error"]}') from None


class TimesFiveHTTPHandler(RemoteModelHandler):
  """A handler for the loopback service."""
  def __init__(self, url, **kwargs):
    super().__init__(namespace='TimesFiveHTTP', num_retries=0, **kwargs)
    self.url = url

  def create_client(self):
    return _Client(self.url)

  def request(self, batch, model, inference_args=None):
    predictions = model.predict([_json_value(x) for x in batch])
    return [PredictionResult(x, y, self.url)
            for x, y in zip(batch, predictions)]


def _json_value(x):
  return x.item() if isinstance(x, np.generic) else x


REMOTE = HandlerCase(
    name='remote-http',
    make_handler=lambda tmp, **options: TimesFiveHTTPHandler(
        _server_url(), **options),
    make_examples=lambda: [1.0, 2.5, 4.0],
    bad_example='not a number',
    check=lambda x, y: np.testing.assert_allclose(y, 5 * x))

# -- MLflowModelHandler against MLflow's real scoring server (loopback) ------
_REQUEST: dict = {}


@pytest.fixture(autouse=True)
def _current_request(request):
  _REQUEST['request'] = request  # servers are shared per session through it
  yield
  _REQUEST.pop('request', None)


def _mlflow_handler(tmp_path, **options):
  from runinference.remote import MLflowModelHandler
  from tests import servers
  server = servers.shared_server(
      _REQUEST['request'], 'mlflow', lambda: servers.mlflow_server(tmp_path))
  return MLflowModelHandler(server.url, **options)


def _mlflow_rows():
  from tests import servers
  frame, _ = servers.frame_model()
  return frame.iloc[:4].to_dict('records')


MLFLOW = HandlerCase(
    name='mlflow', make_handler=_mlflow_handler, make_examples=_mlflow_rows,
    bad_example={'a': 'not a number'})

FRAMEWORK_CASES, MISSING = _framework_cases()

@parametrize_with_checks(FRAMEWORK_CASES + [TENSORRT, REMOTE, MLFLOW])
def test_handler(case, check, tmp_path):
  check(case, tmp_path)


def test_every_framework_of_the_test_venv_is_installed():
  """`make test` installs every framework extra: a case module that cannot
  import its framework there is a broken set-up, not a skip."""
  assert not MISSING, [p.values[0] for p in MISSING]


def test_every_handler_case_module_is_covered():
  names = {c.name for c in FRAMEWORK_CASES}
  assert {'sklearn-numpy', 'sklearn-pandas'} <= names
  assert len(names) == len(FRAMEWORK_CASES), 'case names must be unique'
