"""The managed model server of the vLLM handlers (``ServerProcess``) with a
real child process: a small OpenAI-style completions server written here,
which starts in a fraction of a second (the real ``transformers serve`` run
is in test_real_servers.py). A killed server is restarted on the same port,
and every wait is bounded."""
import os
import signal
import sys
import textwrap
import time

import pytest

from runinference.exceptions import ServerStartError
from runinference.vllm_inference import VLLMCompletionsModelHandler

# Answers GET /v1/models (readiness) and POST /v1/completions with the
# prompt reversed and the server's pid; ``exit`` as the first argument makes
# it exit at once, ``never`` makes it listen without ever being ready.
STUB = textwrap.dedent('''
    import json, os, sys
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    mode, port = sys.argv[1], int(sys.argv[2])
    if mode == 'exit':
      print('stub: refusing to start', flush=True)
      sys.exit(3)

    class Handler(BaseHTTPRequestHandler):
      def log_message(self, *args):
        pass

      def _send(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(data)))
        self.end_headers()
        self.wfile.write(data)

      def do_GET(self):
        if mode == 'never':
          self._send(503, {'error': 'loading'})
        else:
          self._send(200, {'data': [{'id': 'stub'}]})

      def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers['Content-Length'])))
        self._send(200, {'choices': [{'text': body['prompt'][::-1]}],
                         'pid': os.getpid()})

    ThreadingHTTPServer(('127.0.0.1', port), Handler).serve_forever()
''')


@pytest.fixture
def stub(tmp_path):
  path = tmp_path / 'stub_server.py'
  path.write_text(STUB)
  return lambda mode='serve': [sys.executable, str(path), mode, '{port}']


def _handler(command, **kwargs):
  return VLLMCompletionsModelHandler('stub-model', server_command=command,
                                     **kwargs)


def test_a_killed_server_is_restarted_on_its_port_and_answers(stub):
  h = _handler(stub(), startup_timeout_secs=30)
  served = h.load_model()
  try:
    first = h.run_inference(['abc'], served, {})
    assert first[0].inference['choices'][0]['text'] == 'cba'
    port, pid = served.server.port, first[0].inference['pid']
    os.killpg(served.server.pid, signal.SIGKILL)
    again = h.run_inference(['xyz'], served, {})
    assert again[0].inference['choices'][0]['text'] == 'zyx'
    assert again[0].inference['pid'] != pid
    assert served.server.restarts == 1 and served.server.port == port
  finally:
    served.server.stop()


def _kill(server):
  os.killpg(server.pid, signal.SIGKILL)
  deadline = time.monotonic() + 10
  while server.alive() and time.monotonic() < deadline:
    time.sleep(0.02)
  assert not server.alive()


def test_restarts_stop_at_max_server_restarts(stub):
  h = _handler(stub(), startup_timeout_secs=30, max_server_restarts=1)
  served = h.load_model()
  try:
    _kill(served.server)
    assert served.server.ensure_running() is True
    assert served.server.ensure_running() is False  # alive: nothing to do
    _kill(served.server)
    with pytest.raises(ServerStartError, match='max_restarts=1'):
      served.server.ensure_running()
  finally:
    served.server.stop()


def test_a_server_that_exits_while_starting_is_a_clear_error(stub):
  with pytest.raises(ServerStartError, match='exited with code 3') as e:
    _handler(stub('exit'), startup_timeout_secs=30).load_model()
  assert 'stub: refusing to start' in str(e.value)


def test_a_server_never_ready_fails_within_the_startup_timeout(stub):
  start = time.monotonic()
  with pytest.raises(ServerStartError, match='not ready after 1'):
    _handler(stub('never'), startup_timeout_secs=1).load_model()
  assert time.monotonic() - start < 15
