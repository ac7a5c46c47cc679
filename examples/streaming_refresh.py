"""Automatic model refresh in a streaming pipeline, on your own machine.

The story of Beam's "WatchFilePattern to auto-update ML models": work items
stream in, RunInference scores them, and a training job drops a better model
file into the watched folder while the pipeline runs. RunInference notices the
file, loads it beside the model that is serving, and switches -- no restart,
no element lost. Each result's ``model_id`` says which model produced it.

Here the stream is ``PeriodicImpulse`` (a reading every 0.1 s), the models are
scikit-learn regressions (v1 learned y = 2x, v2 learned y = 3x), and the
"training job" is a thread that writes ``model_v2.pkl`` a few seconds in.
The pipeline stops by itself when the stream ends (about 10 s).

Run:  python examples/streaming_refresh.py [--workdir DIR] [--items N]
"""
import argparse
import hashlib
import json
import os
import pickle
import tempfile
import threading
import time

import apache_beam as beam
import numpy as np
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.transforms.periodicsequence import PeriodicImpulse
from sklearn.linear_model import LinearRegression

from runinference.base import PredictionResult, RunInference
from runinference.sklearn_inference import SklearnModelHandlerNumpy
from runinference.utils import WatchFilePattern

INTERVAL = 0.1  # seconds between work items


def train_and_save(path: str, slope: float) -> None:
  """A "training job": fit y = slope * x and publish the file atomically
  (write elsewhere, then rename), so a half-written file is never seen.
  A pickle runs code when loaded, so the watcher loads it only with its
  digest beside it: the job writes ``<file>.sha256`` first
  (docs/security.md)."""
  x = np.arange(20, dtype=float).reshape(-1, 1)
  model = LinearRegression().fit(x, slope * x.ravel())
  data = pickle.dumps(model)
  with open(path + '.sha256', 'w') as f:
    f.write(f'{hashlib.sha256(data).hexdigest()}  {os.path.basename(path)}\n')
  tmp = path + '.partial'
  with open(tmp, 'wb') as f:
    f.write(data)
  os.replace(tmp, path)


class PostProcessor(beam.DoFn):
  """Like the seed's PostProcessor: the prediction and the model that made it."""
  def process(self, element: PredictionResult, start):
    item = int(element.example[0])
    model = os.path.splitext(os.path.basename(element.model_id))[0]
    yield item, float(element.inference), model, time.time() - start


class AppendTo(beam.DoFn):
  """Appends each row to a JSON-lines file (the summary reads it back)."""
  def __init__(self, path):
    self._path = path

  def process(self, row):
    with open(self._path, 'a') as f:
      f.write(json.dumps(row) + '\n')


class Show(beam.DoFn):
  """Prints each result; marks the switch when it happens."""
  def setup(self):
    self._last = None

  def process(self, row):
    item, prediction, model, seconds = row
    if self._last is not None and model != self._last:
      print(f'         ---- switched: {self._last} -> {model} ----')
    self._last = model
    print(f'  t={seconds:5.2f}s  item {item:3d}  prediction {prediction:6.1f}'
          f'  model {model}', flush=True)
    yield row


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--workdir', default=None,
                      help='folder for the model files (default: a temp dir)')
  parser.add_argument('--items', type=int, default=100,
                      help='work items to stream (one every 0.1 s)')
  parser.add_argument('--drop-after', type=float, default=4.0,
                      help='seconds after the start to publish model_v2')
  args, beam_args = parser.parse_known_args(argv)

  workdir = args.workdir or tempfile.mkdtemp(prefix='streaming_refresh_')
  models = os.path.join(workdir, 'models')
  os.makedirs(models, exist_ok=True)
  v1 = os.path.join(models, 'model_v1.pkl')
  v2 = os.path.join(models, 'model_v2.pkl')
  if os.path.exists(v2):
    os.remove(v2)
  train_and_save(v1, slope=2.0)  # serving when the pipeline starts
  print(f'watching {models}/*.pkl; serving model_v1 (y = 2x)')

  options = PipelineOptions(
      beam_args, runner='DirectRunner', streaming=True, save_main_session=False)
  start = time.time()
  duration = args.items * INTERVAL
  results_path = os.path.join(workdir, 'results.jsonl')
  if os.path.exists(results_path):
    os.remove(results_path)

  with beam.Pipeline(options=options) as pipeline:
    # The watched folder: each worker checks it every second until the
    # stream ends, loads a newer file in the background, then switches.
    side_input_pcoll = pipeline | 'FilePatternUpdates' >> WatchFilePattern(
        file_pattern=os.path.join(models, '*.pkl'),
        interval=1,
        stop_timestamp=start + duration + 5)

    readings = (
        pipeline
        | 'WorkItems' >> PeriodicImpulse(
            data=list(range(args.items)), fire_interval=INTERVAL,
            start_timestamp=start)
        | 'ToFeatures' >> beam.Map(lambda i: np.array([float(i)])))

    inferences = readings | 'RunInference' >> RunInference(
        model_handler=SklearnModelHandlerNumpy(model_uri=v1),
        model_metadata_pcoll=side_input_pcoll)

    _ = (
        inferences
        | 'PostProcessor' >> beam.ParDo(PostProcessor(), start)
        | 'Show' >> beam.ParDo(Show())
        | 'Keep' >> beam.ParDo(AppendTo(results_path)))

    def training_job():
      time.sleep(args.drop_after)
      train_and_save(v2, slope=3.0)
      print(f'         ==== training job published model_v2 (y = 3x) at '
            f't={time.time() - start:.2f}s ====', flush=True)

    threading.Thread(target=training_job, daemon=True).start()
  # Leaving the `with` block ran the pipeline to its end.

  with open(results_path) as f:
    results = [json.loads(line) for line in f]
  served = {}
  for item, prediction, model, _ in results:
    served.setdefault(model, []).append(item)
  items = sorted(i for i, *_ in results)
  print('\nsummary')
  for model, its in sorted(served.items()):
    print(f'  {model}: {len(its)} items ({min(its)}..{max(its)})')
  print(f'  every item exactly once: {items == list(range(args.items))}')
  v2_items = served.get('model_v2', [])
  if v2_items:
    first = min(v2_items)
    later_all_v2 = all(m == 'model_v2' for i, _, m, _ in results if i >= first)
    print(f'  first item on model_v2: {first}; all later items on model_v2: '
          f'{later_all_v2}')
  else:
    print('  model_v2 never served (was the stream long enough?)')
  return served


if __name__ == '__main__':
  main()
