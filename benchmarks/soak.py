#!/usr/bin/env python
"""Soak: a streaming RunInference pipeline at a steady rate for a long time,
with model refreshes (every 5th model corrupt), poison rows and one hanging
model call. Not part of CI.

A ``PeriodicImpulse`` emits ``--rate`` elements per second for ``--minutes``
on the DirectRunner in streaming mode. Each element is ``(index, features)``;
1 % of them (``index % 100 == 37``) carry a string array the model cannot
score (poison). The handler is ``SklearnModelHandlerNumpy`` (a pickled
``LinearRegression``) whose call hangs (for an hour) on the batch holding
element ``--hang-at``; ``with_exception_handling(timeout=--timeout)`` sends
that batch to the dead-letter output. Every ``--refresh-every`` seconds a
new model is written into the watched folder (``watch_model_pattern``);
every 5th one is corrupt (truncated pickle), which must be refused while the
current model keeps serving.

At the end it checks that the counts balance exactly: every input index is
in the main output or the dead-letter output, exactly once, and that only
the poison rows plus the hung batch are dead letters. It reports p50/p99
latency (element entering the pipeline -> result), RSS sampled every 10 s
(growth after warm-up), the models served, and writes ``/tmp/soak.json``
(``benchmarks/results/soak.json`` with ``--update``).

    .venv/bin/python benchmarks/soak.py                     # 30 minutes
    .venv/bin/python benchmarks/soak.py --minutes 8 --refresh-every 60
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import pickle
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / 'benchmarks' / 'results'
sys.path.insert(0, str(REPO / 'benchmarks'))
import _harness  # noqa: E402
N_FEATURES = 8
HANG_SECONDS = 3600.0


def poison(i: int) -> bool:
  return i % 100 == 37


def save_model(path: str, slope: float, corrupt: bool) -> None:
  """Writes a pickled LinearRegression (y = slope * sum(x)), or its first
  half when ``corrupt``; published by rename, as a training job would, its
  SHA-256 first (``<file>.sha256``: a watched pickle is loaded only with
  one, see docs/security.md)."""
  import numpy as np
  from sklearn.linear_model import LinearRegression
  x = np.random.RandomState(0).rand(200, N_FEATURES)
  data = pickle.dumps(LinearRegression().fit(x, slope * x.sum(axis=1)))
  if corrupt:
    data = data[:len(data) // 2]
  digest = hashlib.sha256(data).hexdigest()
  for target, body in ((path + '.sha256', digest.encode() + b'\n'),
                       (path, data)):
    tmp = target + '.partial'
    with open(tmp, 'wb') as f:
      f.write(body)
    os.replace(tmp, target)


class _Appender:
  """A DoFn factory appending one JSON line per element to ``path`` (one
  write per bundle)."""
  def __init__(self, path: str, row):
    self.path, self.row = path, row

  def dofn(self):
    import apache_beam as beam
    path, row = self.path, self.row

    class Append(beam.DoFn):
      def start_bundle(self):
        self.rows = []

      def process(self, element):
        self.rows.append(row(element))
        yield element

      def finish_bundle(self):
        if self.rows:
          with open(path, 'a') as f:
            f.write(''.join(json.dumps(r) + '\n' for r in self.rows))
          self.rows = []

    return Append()


def _features(i: int):
  import numpy as np
  if poison(i):
    return np.array(['poison'] * N_FEATURES)
  return np.full(N_FEATURES, (i % 97) / 97.0)


def _dead_index(record) -> int:
  # failed_inferences records are ([row], (exc_type, repr, traceback)); a row
  # is (index, arrived, features).
  rows, _ = record
  return rows[0][0]


def build_handler(model_uri: str, hang_at: int):
  from runinference.sklearn_inference import SklearnModelHandlerNumpy

  class SoakHandler(SklearnModelHandlerNumpy):
    """Runs the features of ``(index, arrived, features)`` rows; the batch
    holding ``hang_at`` hangs."""
    def run_inference(self, batch, model, inference_args=None):
      if any(row[0] == hang_at for row in batch):
        time.sleep(HANG_SECONDS)
      results = super().run_inference([row[2] for row in batch], model,
                                      inference_args)
      return [r._replace(example=row[:2]) for row, r in zip(batch, results)]

  return SoakHandler(model_uri)


def refresher(models: str, every: float, stop: float, log: list) -> None:
  """Publishes model n (slope n+1) every ``every`` seconds; every 5th is
  corrupt."""
  n = 1
  while True:
    time.sleep(max(0.0, min(every, stop - time.time())))
    if time.time() >= stop - 1:
      return
    corrupt = n % 5 == 0
    path = os.path.join(models, f'model_{n:03d}.pkl')
    save_model(path, n + 1.0, corrupt)
    log.append({'t': time.time(), 'model': os.path.basename(path),
                'corrupt': corrupt})
    n += 1


def rss_sampler(samples: list, stop_event: threading.Event) -> None:
  import psutil
  proc = psutil.Process()
  while not stop_event.is_set():
    samples.append((time.time(), proc.memory_info().rss / 2**20))
    stop_event.wait(10)


def run(args) -> dict:
  import apache_beam as beam
  import sklearn.linear_model  # noqa: F401  (import before the clock)
  from apache_beam.options.pipeline_options import PipelineOptions
  from apache_beam.transforms.periodicsequence import PeriodicImpulse

  from runinference.base import RunInference

  work = tempfile.mkdtemp(prefix='soak_')
  models = os.path.join(work, 'models')
  os.makedirs(models)
  first = os.path.join(models, 'model_000.pkl')
  save_model(first, 1.0, corrupt=False)
  files = {k: os.path.join(work, k + '.jsonl') for k in ('in', 'out', 'dead')}
  seconds = args.minutes * 60
  rate = args.rate
  hang_at = int(args.hang_at * rate)
  start = time.time() + 2.0
  stop = start + seconds

  options = PipelineOptions(flags=[], runner='DirectRunner', streaming=True)
  p = beam.Pipeline(options=options)
  rows = (
      p
      | PeriodicImpulse(start_timestamp=start, stop_timestamp=stop,
                        fire_interval=1.0 / rate)
      | 'Row' >> beam.Map(lambda t: (
          int(round((float(t) - start) * rate)), time.time(),
          _features(int(round((float(t) - start) * rate)))))
      | 'CountIn' >> beam.ParDo(
          _Appender(files['in'], lambda r: r[0]).dofn()))
  if args.baseline:
    # The same pipeline without RunInference: the runner's own memory use.
    from runinference.base import PredictionResult
    main = rows | 'NoModel' >> beam.Map(
        lambda r: PredictionResult(r[:2], 0.0, 'none'))
    dlq = None
  else:
    main, dlq = rows | RunInference(
        build_handler(first, hang_at),
        watch_model_pattern=os.path.join(models, '*.pkl'),
        interval=args.watch_interval).with_exception_handling(
            timeout=args.timeout)
  _ = main | 'CountOut' >> beam.ParDo(_Appender(
      files['out'], lambda r: (r.example[0], r.example[1], time.time(),
                               os.path.basename(r.model_id or ''))).dofn())
  if dlq is not None:
    _ = dlq.failed_inferences | 'CountDead' >> beam.ParDo(_Appender(
        files['dead'], lambda rec: (_dead_index(rec), rec[1][0].__name__
                                    if isinstance(rec[1][0], type)
                                    else str(rec[1][0]))).dofn())

  refresh_log: list = []
  rss: list = []
  done = threading.Event()
  threading.Thread(target=refresher, daemon=True,
                   args=(models, args.refresh_every, stop,
                         refresh_log)).start()
  threading.Thread(target=rss_sampler, daemon=True, args=(rss, done)).start()
  t0 = time.time()
  p.run().wait_until_finish()
  wall = time.time() - t0
  done.set()
  return summarize(files, rss, refresh_log, wall, rate, hang_at, start,
                   stop)


def _read(path: str) -> list:
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f]


def summarize(files, rss, refresh_log, wall, rate, hang_at, start,
              stop) -> dict:
  import numpy as np
  ins = _read(files['in'])
  outs = _read(files['out'])
  dead = _read(files['dead'])
  out_idx = [r[0] for r in outs]
  dead_idx = [r[0] for r in dead]
  both = out_idx + dead_idx
  latency = np.asarray([r[2] - r[1] for r in outs]) * 1000
  unexpected_dead = sorted(
      i for i in dead_idx if not poison(i) and abs(i - hang_at) > 2 * rate)
  served: dict = {}
  for r in outs:
    served[r[3]] = served.get(r[3], 0) + 1
  # Samples from warm-up end (2 min) to the source's end; the pipeline's
  # drain and shutdown are not steady state.
  steady = [(t, m) for t, m in rss if start + 120 <= t <= stop]
  warm = [m for _, m in steady]
  slope = None
  if len(steady) > 2:
    ts = np.asarray([t for t, _ in steady]) / 60
    slope = round(float(np.polyfit(ts, warm, 1)[0]), 1)
  rss_mb = [round(m, 1) for _, m in rss]
  minutes = (rss[-1][0] - rss[0][0]) / 60 if len(rss) > 1 else 0
  return {
      'inputs': len(ins),
      'outputs': len(outs),
      'dead_letters': len(dead),
      'balanced': sorted(both) == sorted(ins) and
                  len(set(both)) == len(both),
      'duplicates': len(both) - len(set(both)),
      'missing': len(set(ins) - set(both)),
      'poison_rows': sum(1 for i in ins if poison(i)),
      'poison_dead': sum(1 for i in dead_idx if poison(i)),
      'hung_batch_dead': sum(1 for i in dead_idx if not poison(i)),
      'hang_index': hang_at,
      'unexpected_dead': unexpected_dead[:20],
      'dead_reasons': sorted({r[1] for r in dead}),
      'latency_ms': {
          'p50': round(float(np.percentile(latency, 50)), 2),
          'p99': round(float(np.percentile(latency, 99)), 2),
          'p999': round(float(np.percentile(latency, 99.9)), 2),
          'max': round(float(latency.max()), 2),
      } if len(latency) else {},
      'models_published': refresh_log,
      'models_served': served,
      'rss_mb': rss_mb,
      'rss_growth_after_warmup_mb': round(warm[-1] - warm[0], 1)
                                    if len(warm) > 1 else None,
      'rss_slope_after_warmup_mb_per_min': slope,
      'rss_minutes': round(minutes, 1),
      'wall_s': round(wall, 1),
  }


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--minutes', type=float, default=30)
  parser.add_argument('--rate', type=float, default=50,
                      help='elements per second')
  parser.add_argument('--refresh-every', type=float, default=120,
                      help='seconds between published models')
  parser.add_argument('--watch-interval', type=float, default=5,
                      help='seconds between checks of the watched folder')
  parser.add_argument('--hang-at', type=float, default=30,
                      help='seconds in: the batch holding this element hangs')
  parser.add_argument('--timeout', type=float, default=5,
                      help='with_exception_handling(timeout=...)')
  parser.add_argument('--baseline', action='store_true',
                      help='the same pipeline without RunInference (RSS '
                      'of the runner alone)')
  parser.add_argument('--out', default=None,
                      help='results JSON (default /tmp/soak.json, or /tmp/soak_baseline.json)')
  parser.add_argument('--update', action='store_true',
                      help='write the committed benchmarks/results/soak.json '
                      '(soak_baseline.json with --baseline)')
  args = parser.parse_args(argv)
  name = 'soak_baseline.json' if args.baseline else 'soak.json'
  args.out = str(RESULTS / name if args.update else Path(args.out or f'/tmp/{name}'))
  result = run(args)
  result.update(_harness.provenance())
  result['command'] = ' '.join(['benchmarks/soak.py'] + (argv or sys.argv[1:]))
  result['machine'] = f'{platform.machine()}, {os.cpu_count()} cores'
  os.makedirs(os.path.dirname(args.out), exist_ok=True)
  with open(args.out, 'w') as f:
    json.dump(result, f, indent=1)
  brief = {k: v for k, v in result.items() if k != 'rss_mb'}
  print(json.dumps(brief, indent=1))
  print('rss_mb every 10 s:', result['rss_mb'])
  ok = result['balanced'] and not result['unexpected_dead']
  print('BALANCED' if ok else 'NOT BALANCED')
  return 0 if ok else 1


if __name__ == '__main__':
  sys.exit(main())
