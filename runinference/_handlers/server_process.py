"""A model server run as a child process of the worker: started on a free
loopback port, waited for (bounded), restarted when it dies, stopped with
the worker."""
from __future__ import annotations

import atexit
import logging
import os
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from typing import Optional, Sequence

from ..exceptions import RunInferenceError
from ..exceptions import ServerStartError  # noqa: F401  (re-exported)

_LOGGER = logging.getLogger(__name__)


def free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


class ServerProcess:
  """Runs ``command`` (``{port}`` in it is replaced by a free port) and
  waits until ``GET ready_path`` answers 200."""
  def __init__(self, command: Sequence[str], *, ready_path: str = '/health',
               startup_timeout_secs: float = 300.0,
               max_restarts: int = 3,
               env: Optional[dict] = None):
    self.command = list(command)
    self.ready_path = ready_path
    self.startup_timeout_secs = startup_timeout_secs
    self.max_restarts = max_restarts
    self.env = env
    self.restarts = 0
    self.port = -1
    self._process: Optional[subprocess.Popen] = None
    self._log = None
    self._lock = threading.Lock()
    atexit.register(self.stop)

  @property
  def url(self) -> str:
    return f'http://127.0.0.1:{self.port}'

  @property
  def pid(self) -> Optional[int]:
    return None if self._process is None else self._process.pid

  def alive(self) -> bool:
    return self._process is not None and self._process.poll() is None

  def start(self) -> None:
    with self._lock:
      self._start_locked()

  def ensure_running(self) -> bool:
    """Restarts the server if it died; True if it had to."""
    with self._lock:
      if self.alive():
        return False
      if self.restarts >= self.max_restarts:
        raise ServerStartError(
            f'the model server died {self.restarts + 1} times; not restarting '
            f'it again (max_restarts={self.max_restarts}). Last output:\n'
            f'{self.log_tail()}')
      self.restarts += 1
      _LOGGER.warning('model server (pid %s) died; restarting it',
                      self._process and self._process.pid)
      self._start_locked()
      return True

  def _start_locked(self) -> None:
    self._stop_locked()
    if self.port < 0:  # a restart keeps the port, so clients stay valid
      self.port = free_port()
    cmd = [a.replace('{port}', str(self.port)) for a in self.command]
    self._log = tempfile.NamedTemporaryFile(
        prefix='runinference-server-', suffix='.log', delete=False)
    try:
      self._process = subprocess.Popen(
          cmd, stdout=self._log, stderr=subprocess.STDOUT,
          env={**os.environ, **(self.env or {})}, start_new_session=True)
    except OSError as e:
      raise ServerStartError(
          f'could not start the model server {cmd[0]!r}: {e}') from e
    deadline = time.monotonic() + self.startup_timeout_secs
    while time.monotonic() < deadline:
      if self._process.poll() is not None:
        raise ServerStartError(
            f'the model server exited with code {self._process.returncode} '
            f'while starting: {" ".join(cmd)}\n{self.log_tail()}')
      if self._ready():
        return
      time.sleep(0.25)
    self._stop_locked()
    raise ServerStartError(
        f'the model server was not ready after {self.startup_timeout_secs}s: '
        f'{" ".join(cmd)}\n{self.log_tail()}')

  def _ready(self) -> bool:
    try:
      with urllib.request.urlopen(self.url + self.ready_path, timeout=2) as r:
        return r.status == 200
    except (urllib.error.URLError, OSError, ValueError):
      return False

  def log_tail(self, chars: int = 2000) -> str:
    if self._log is None:
      return ''
    try:
      with open(self._log.name, 'rb') as f:
        return f.read()[-chars:].decode('utf-8', 'replace')
    except OSError:
      return ''

  def stop(self) -> None:
    with self._lock:
      self._stop_locked()

  def _stop_locked(self) -> None:
    process, self._process = self._process, None
    if process is None or process.poll() is not None:
      return
    process.terminate()
    try:
      process.wait(timeout=10)
    except subprocess.TimeoutExpired:
      process.kill()
      process.wait(timeout=10)
