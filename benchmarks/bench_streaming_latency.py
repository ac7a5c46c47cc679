#!/usr/bin/env python
"""Element latency of RunInference in a streaming pipeline at a steady rate.

A ``PeriodicImpulse`` emits ``--rate`` elements per second for ``--seconds``
on the DirectRunner in streaming mode (its in-process engine; Prism is not
used). Each element is stamped with ``time.time()`` as it enters the pipeline
(right after the source) and again right after RunInference; the difference
is its latency. The model is a scikit-learn ``LinearRegression`` on 8
features, loaded through ``SklearnModelHandlerNumpy(model_uri=...)``.

Variants (each in its own fresh Python process):

* ``ours``           -- default batching (within a bundle)
* ``ours_duration``  -- ``max_batch_duration_secs=0.1, max_batch_size=64``
* ``ours_refresh``   -- ``watch_model_pattern=...`` (checked every 0.5 s), a
                        new model file dropped at half time: the switch, and
                        the latency of the elements around it
* ``reference``      -- apache_beam.ml.inference, default batching
* ``reference_duration`` -- the reference with ``max_batch_duration_secs``
                        (on the local runner it fails with PeriodicImpulse)

Reports p50/p90/p99/max latency in milliseconds, plus how late the source
emitted elements (the source's own jitter, the same for every variant), and
writes ``/tmp/bench_streaming_latency.json`` (``--results PATH``; the committed
``benchmarks/results/bench_streaming_latency.json`` with ``--update``).

    .venv/bin/python benchmarks/bench_streaming_latency.py
    .venv/bin/python benchmarks/bench_streaming_latency.py --rate 500 --seconds 10
    .venv/bin/python benchmarks/bench_streaming_latency.py --variants ours ours_refresh
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / 'benchmarks' / 'results'
sys.path.insert(0, str(REPO / 'benchmarks'))
import _harness  # noqa: E402
VARIANTS = ('ours', 'ours_duration', 'ours_refresh', 'reference',
            'reference_duration')
N_FEATURES = 8


def save_model(path: str, slope: float) -> None:
  import hashlib
  import pickle

  import numpy as np
  from sklearn.linear_model import LinearRegression
  x = np.random.RandomState(0).rand(200, N_FEATURES)
  y = slope * x.sum(axis=1)
  data = pickle.dumps(LinearRegression().fit(x, y))
  with open(path + '.sha256', 'w') as f:  # the watcher loads pickles only
    f.write(hashlib.sha256(data).hexdigest())  # with their digest beside
  tmp = path + '.partial'
  with open(tmp, 'wb') as f:
    f.write(data)
  os.replace(tmp, path)


class _Record:
  """Appends ``(index, scheduled, arrived, done, model_id)`` rows to a file
  (one write per bundle)."""
  def __init__(self, path):
    self.path = path

  def __call__(self):
    import apache_beam as beam
    path = self.path

    class Record(beam.DoFn):
      def start_bundle(self):
        self.rows = []

      def process(self, result):
        done = time.time()
        (i, scheduled, arrived), example = result.example
        self.rows.append((i, scheduled, arrived, done, result.model_id))

      def finish_bundle(self):
        if self.rows:
          with open(path, 'a') as f:
            f.write(''.join(json.dumps(r) + '\n' for r in self.rows))
          self.rows = []

    return Record()


def _features(i):
  import numpy as np
  return np.full(N_FEATURES, (i % 97) / 97.0)


def run_variant(variant: str, rate: float, seconds: float, workdir: str,
                out: str) -> dict:
  import apache_beam as beam
  import numpy as np
  import sklearn.linear_model  # noqa: F401  (import before the clock)
  from apache_beam.options.pipeline_options import PipelineOptions
  from apache_beam.transforms.periodicsequence import PeriodicImpulse

  reference = variant.startswith('reference')
  if reference:
    from apache_beam.ml.inference.base import (KeyedModelHandler,
                                               RunInference)
    from apache_beam.ml.inference.sklearn_inference import \
        SklearnModelHandlerNumpy
  else:
    from runinference.base import KeyedModelHandler, RunInference
    from runinference.sklearn_inference import SklearnModelHandlerNumpy

  models = os.path.join(workdir, 'models')
  os.makedirs(models, exist_ok=True)
  first = os.path.join(models, 'model_a.pkl')
  second = os.path.join(models, 'model_b.pkl')
  save_model(first, 1.0)
  batching = {}
  if variant.endswith('duration'):
    batching = dict(max_batch_duration_secs=0.1, max_batch_size=64)
  # The example travels with its stamps: ((i, scheduled, arrived), features).
  class _Stamped(SklearnModelHandlerNumpy):
    def run_inference(self, batch, model, inference_args=None):
      results = super().run_inference([x for _, x in batch], model,
                                       inference_args)
      return [r._replace(example=(b[0], r.example)) for b, r in zip(batch, results)]

  handler = _Stamped(first, **batching)
  kwargs = {}
  if variant == 'ours_refresh':
    kwargs = dict(watch_model_pattern=os.path.join(models, '*.pkl'),
                  interval=0.5)

  n = int(rate * seconds)
  start = time.time() + 1.0  # leave time for start-up
  options = PipelineOptions(runner='DirectRunner', streaming=True)
  p = beam.Pipeline(options=options)
  _ = (
      p
      | PeriodicImpulse(
          start_timestamp=start, stop_timestamp=start + seconds,
          fire_interval=1.0 / rate)
      | 'Stamp' >> beam.Map(lambda t: (
          (int(round((float(t) - start) * rate)), float(t), time.time()),
          _features(int(round((float(t) - start) * rate)))))
      | RunInference(handler, **kwargs)
      | beam.ParDo(_Record(out)()))

  dropper = None
  if variant == 'ours_refresh':
    import threading

    def drop():
      time.sleep(max(0.0, start + seconds / 2 - time.time()))
      save_model(second, 2.0)
      with open(out + '.drop', 'w') as f:
        f.write(str(time.time()))

    dropper = threading.Thread(target=drop, daemon=True)
    dropper.start()
  t0 = time.time()
  try:
    p.run().wait_until_finish()
  except Exception as e:  # pylint: disable=broad-except
    msg = str(e).strip().splitlines()
    return {'error': f'{type(e).__name__}: {msg[-1] if msg else ""}'[:300]}
  return {'wall_s': time.time() - t0, 'n_expected': n}


def percentiles(values):
  import numpy as np
  v = np.asarray(values) * 1000
  return {
      'p50_ms': round(float(np.percentile(v, 50)), 2),
      'p90_ms': round(float(np.percentile(v, 90)), 2),
      'p99_ms': round(float(np.percentile(v, 99)), 2),
      'max_ms': round(float(v.max()), 2),
  }


def summarize(out: str, info: dict) -> dict:
  if 'error' in info:
    return info
  rows = []
  if os.path.exists(out):
    with open(out) as f:
      rows = [json.loads(line) for line in f]
  idx = [r[0] for r in rows]
  res = {
      'elements': len(rows),
      'distinct': len(set(idx)),
      'latency': percentiles([r[3] - r[2] for r in rows]),
      'source_lateness': percentiles([r[2] - r[1] for r in rows]),
      'wall_s': round(info['wall_s'], 2),
  }
  if os.path.exists(out + '.drop'):
    with open(out + '.drop') as f:
      dropped = float(f.read())
    rows.sort(key=lambda r: r[0])
    models = [os.path.basename(r[4]) for r in rows]
    switch = next((r for r, m in zip(rows, models) if m == 'model_b.pkl'), None)
    monotone = models == sorted(models)
    res['refresh'] = {
        'switched': switch is not None,
        'seconds_from_drop_to_first_new_result': (
            round(switch[3] - dropped, 3) if switch else None),
        'model_ids_in_order_old_then_new': monotone,
        'latency_within_1s_of_switch': percentiles([
            r[3] - r[2] for r in rows if switch and abs(r[2] - switch[2]) < 1
        ]) if switch else None,
    }
  return res


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--rate', type=float, default=200)
  parser.add_argument('--seconds', type=float, default=10)
  parser.add_argument('--variants', nargs='+', default=list(VARIANTS),
                      choices=VARIANTS)
  parser.add_argument('--one', help=argparse.SUPPRESS)
  parser.add_argument('--out', help=argparse.SUPPRESS)  # the child's rows file
  parser.add_argument('--results', default=None, help='results JSON (default '
                      '/tmp/bench_streaming_latency.json)')
  parser.add_argument('--update', action='store_true',
                      help='write the committed benchmarks/results/bench_streaming_latency.json')
  parser.add_argument('--workdir', help=argparse.SUPPRESS)
  args = parser.parse_args(argv)

  if args.one:  # child process: run one variant
    import logging
    logging.getLogger('apache_beam').setLevel(logging.ERROR)
    info = run_variant(args.one, args.rate, args.seconds, args.workdir, args.out)
    print(json.dumps(info))
    return

  report = {
      **_harness.provenance(),
      'rate_per_s': args.rate, 'seconds': args.seconds,
      'machine': {'python': platform.python_version(), 'cpus': os.cpu_count(),
                  'platform': platform.platform()},
      'variants': {}}
  try:
    import apache_beam
    report['beam'] = apache_beam.__version__
  except ImportError:
    pass
  for variant in args.variants:
    with tempfile.TemporaryDirectory() as work:
      out = os.path.join(work, 'rows.jsonl')
      proc = subprocess.run(
          [sys.executable, __file__, '--one', variant, '--rate', str(args.rate),
           '--seconds', str(args.seconds), '--out', out, '--workdir', work],
          capture_output=True, text=True, cwd=REPO, timeout=600)
      lines = [l for l in proc.stdout.splitlines() if l.startswith('{')]
      info = json.loads(lines[-1]) if lines else {
          'error': (proc.stderr.strip().splitlines() or ['no output'])[-1]}
      res = summarize(out, info)
    report['variants'][variant] = res
    if 'error' in res:
      print(f'{variant:20s} FAILED: {res["error"]}')
    else:
      lat = res['latency']
      line = (f'{variant:20s} {res["elements"]:6d} elements ({res["distinct"]} '
              f'distinct)  latency p50 {lat["p50_ms"]:7.2f} ms  p90 '
              f'{lat["p90_ms"]:7.2f}  p99 {lat["p99_ms"]:7.2f}  max '
              f'{lat["max_ms"]:7.2f}  | source lateness p50 '
              f'{res["source_lateness"]["p50_ms"]:.1f} ms')
      print(line)
      if 'refresh' in res:
        print(f'{"":20s} refresh: {res["refresh"]}')
  path = _harness.out_path(argparse.Namespace(update=args.update, out=args.results),
                           'bench_streaming_latency.json')
  path.parent.mkdir(parents=True, exist_ok=True)
  with open(path, 'w') as f:
    json.dump(report, f, indent=1)
  print(f'written {path}')


if __name__ == '__main__':
  main()
