"""Scoring rows on a model server from a Beam pipeline.

Trains a small scikit-learn model, saves it as an MLflow model, starts
``mlflow models serve`` on 127.0.0.1, and runs a pipeline that sends the rows
in concurrent requests with retries, keeping failed rows in a dead-letter
output. Needs ``pip install "runinference[remote,sklearn]" mlflow``.

    python examples/remote_model_server.py
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import apache_beam as beam
import numpy as np
import pandas as pd

from runinference.base import KeyedModelHandler, RunInference
from runinference.remote import MLflowModelHandler

COLUMNS = ['a', 'b', 'c', 'd']


def save_model(path: str) -> None:
  import mlflow.sklearn
  from mlflow.models import infer_signature
  from sklearn.linear_model import LogisticRegression
  rng = np.random.default_rng(0)
  X = pd.DataFrame(rng.normal(size=(200, 4)), columns=COLUMNS)
  y = (X.a + X.b > 0).astype(int)
  model = LogisticRegression().fit(X, y)
  mlflow.sklearn.save_model(model, path, pip_requirements=['scikit-learn'],
                            signature=infer_signature(X, model.predict(X)))


def start_server(model_path: str) -> tuple[subprocess.Popen, str]:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
  bin_dir = os.path.dirname(sys.executable)
  env = {**os.environ, 'PATH': bin_dir + os.pathsep + os.environ['PATH']}
  process = subprocess.Popen(
      [os.path.join(bin_dir, 'mlflow'), 'models', 'serve', '-m', model_path,
       '--env-manager', 'local', '-h', '127.0.0.1', '-p', str(port)],
      env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  url = f'http://127.0.0.1:{port}'
  deadline = time.monotonic() + 180
  while time.monotonic() < deadline:
    try:
      with urllib.request.urlopen(url + '/ping', timeout=2):
        return process, url
    except OSError:
      time.sleep(0.5)
  process.kill()
  raise RuntimeError('the MLflow server did not start within 180 s')


def main() -> None:
  with tempfile.TemporaryDirectory() as tmp:
    save_model(os.path.join(tmp, 'model'))
    server, url = start_server(os.path.join(tmp, 'model'))
    try:
      handler = KeyedModelHandler(MLflowModelHandler(
          url,
          max_batch_size=128,           # one engine batch...
          request_batch_size=32,        # ...sent as 4 requests of 32 rows
          max_concurrent_requests=4,    # all in flight together
          request_timeout_secs=10,
          num_retries=3))
      rows = [(i, {'a': i / 50 - 1, 'b': (i % 7) / 3 - 1, 'c': 0.0, 'd': 1.0})
              for i in range(500)]
      rows[7] = (7, {'a': 'not a number', 'b': 0.0, 'c': 0.0, 'd': 1.0})
      with beam.Pipeline() as p:
        main_out, failed = (p | beam.Create(rows)
                            | RunInference(handler).with_exception_handling())
        _ = (main_out
             | beam.combiners.Count.Globally()
             | beam.Map(lambda n: print(f'{n} rows scored')))
        _ = (failed.failed_inferences
             | beam.Map(lambda r: print(
                 f'dead letter: {r[0]} -> {r[1][0].__name__}')))
    finally:
      server.terminate()
      server.wait(timeout=30)


if __name__ == '__main__':
  main()
