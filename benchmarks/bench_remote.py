#!/usr/bin/env python
"""Throughput of remote inference against a real MLflow server on loopback.

One ``mlflow models serve --env-manager local`` (a LogisticRegression on 4
columns, ``--workers`` uvicorn workers) serves every variant; each variant
runs in its own fresh Python process, alternating, best of ``--repeat``:

* ``reference`` -- Beam's ``apache_beam.ml.inference`` RunInference with its
  ``RemoteModelHandler`` subclassed the plain way (an httpx client, one
  ``dataframe_split`` POST per batch of ``--batch`` rows).
* ``ours_seq``  -- ``runinference.remote.MLflowModelHandler``, batches of
  ``--batch`` rows, one request at a time (isolates the engine).
* ``ours``      -- ``MLflowModelHandler`` with ``max_concurrent_requests=C``:
  batches of ``4 x C x --batch`` rows, sent as requests of ``--batch`` rows
  (the same request size as the reference), C in flight at a time.
* ``ours_sync`` -- ``ours`` with ``overlap=False`` (requests sent from the
  step's thread; by default a remote handler's calls overlap the pipeline).
* ``loop``      -- no Beam: the same rows, encoded the same way, sent in
  batches of ``--batch`` by C threads sharing one pooled httpx client (the
  limit a pipeline can approach).

Rows are made inside the pipeline (``Impulse | FlatMap(range) | Map``); the
sink counts them with a Metrics counter, checked against N.

    .venv/bin/python benchmarks/bench_remote.py                # 20k rows
    .venv/bin/python benchmarks/bench_remote.py --n 40000 --repeat 3
    .venv/bin/python benchmarks/bench_remote.py --latency-ms 20 \
        --out benchmarks/results/bench_remote_latency20.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from _harness import (add_out_args, local_pipeline, out_path, pair_ratios, provenance, ratio,
                      run_variants)

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / 'benchmarks' / 'results'
VARIANTS = ('reference', 'ours_seq', 'ours', 'ours_sync', 'loop')
COLUMNS = ['a', 'b', 'c', 'd']
ROUNDS = 4


def make_row(i: int) -> dict:
  return {'a': (i % 97) / 50 - 1, 'b': (i % 13) / 6 - 1, 'c': (i % 7) - 3.0,
          'd': 0.5}


def encode(rows) -> dict:
  return {'dataframe_split': {
      'columns': COLUMNS, 'data': [[r[c] for c in COLUMNS] for r in rows]}}


def reference_step(url: str, batch: int):
  import httpx
  from apache_beam.ml.inference.base import RemoteModelHandler, RunInference

  class ReferenceMLflow(RemoteModelHandler):
    def __init__(self):
      super().__init__(namespace='bench_reference')

    def create_client(self):
      return httpx.Client(base_url=url, timeout=30)

    def request(self, rows, model, inference_args=None):
      response = model.post('/invocations', json=encode(rows))
      response.raise_for_status()
      return response.json()['predictions']

    def batch_elements_kwargs(self):
      return {'min_batch_size': batch, 'max_batch_size': batch}

  return RunInference(ReferenceMLflow())


def ours_step(url: str, batch: int, concurrency: int, overlap=None):
  sys.path.insert(0, str(REPO))
  from runinference.base import RunInference
  from runinference.remote import MLflowModelHandler
  # A few rounds of concurrent requests per engine batch, so the wait for a
  # round's slowest request is paid once per several rounds.
  size = batch * concurrency * ROUNDS
  return RunInference(MLflowModelHandler(
      url, columns=COLUMNS, min_batch_size=size, max_batch_size=size,
      request_batch_size=batch, max_concurrent_requests=concurrency),
      overlap=overlap)


def run_pipeline_variant(variant, n, url, batch, concurrency) -> dict:
  import httpx  # noqa: F401  (imported before the clock, for every variant)
  import apache_beam as beam
  from apache_beam.metrics.metric import Metrics, MetricsFilter

  if variant == 'reference':
    step = reference_step(url, batch)
  elif variant == 'ours_seq':
    step = ours_step(url, batch, 1)
  elif variant == 'ours_sync':
    step = ours_step(url, batch, concurrency, overlap=False)
  else:
    step = ours_step(url, batch, concurrency)
  counter = Metrics.counter('bench', 'sunk')
  p = local_pipeline()
  _ = (p | beam.Impulse() | beam.FlatMap(lambda _: range(n))
       | beam.Map(make_row) | step | beam.Map(lambda _: counter.inc()))
  t0 = time.perf_counter()
  result = p.run()
  result.wait_until_finish()
  dt = time.perf_counter() - t0
  sunk = result.metrics().query(MetricsFilter().with_name('sunk'))['counters']
  got = sum(c.committed for c in sunk)
  out = {'seconds': dt, 'elements': got, 'el_per_s': n / dt}
  if got != n:
    out['error'] = f'sink saw {got} elements, expected {n}'
  if variant.startswith('ours'):
    out['imported_apache_beam_ml'] = any(
        m.startswith('apache_beam.ml') for m in sys.modules)
  return out


def run_loop_variant(n, url, batch, concurrency) -> dict:
  import concurrent.futures as cf

  import httpx
  rows = [make_row(i) for i in range(n)]
  client = httpx.Client(base_url=url, timeout=30, limits=httpx.Limits(
      max_connections=concurrency, max_keepalive_connections=concurrency))

  def send(start):
    r = client.post('/invocations', json=encode(rows[start:start + batch]))
    r.raise_for_status()
    return len(r.json()['predictions'])

  t0 = time.perf_counter()
  with cf.ThreadPoolExecutor(concurrency) as pool:
    got = sum(pool.map(send, range(0, n, batch)))
  dt = time.perf_counter() - t0
  return {'seconds': dt, 'elements': got, 'el_per_s': n / dt}


def main(argv=None) -> int:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument('--n', type=int, default=20_000)
  ap.add_argument('--batch', type=int, default=64, help='rows per request')
  ap.add_argument('--concurrency', type=int, default=4)
  ap.add_argument('--workers', type=int, default=2, help='MLflow workers')
  ap.add_argument('--repeat', type=int, default=2)
  ap.add_argument('--latency-ms', type=float, default=0.0,
                  help='put a proxy adding this delay to each request in '
                       'front of the server (a network round trip)')
  ap.add_argument('--variants', nargs='+', choices=VARIANTS,
                  default=list(VARIANTS))
  add_out_args(ap, 'bench_remote.json')
  ap.add_argument('--_child', help=argparse.SUPPRESS)
  ap.add_argument('--_url', help=argparse.SUPPRESS)
  args = ap.parse_args(argv)

  if args._child:
    import logging
    logging.disable(logging.WARNING)
    if args._child == 'loop':
      res = run_loop_variant(args.n, args._url, args.batch, args.concurrency)
    else:
      res = run_pipeline_variant(args._child, args.n, args._url, args.batch,
                                 args.concurrency)
    print(json.dumps(res))
    return 0

  sys.path.insert(0, str(REPO))
  from tests import servers
  with tempfile.TemporaryDirectory(prefix='ri_bench_remote_') as tmp:
    server = servers.mlflow_server(Path(tmp))
    i = server.cmd.index('-w')
    server.cmd[i + 1] = str(args.workers)
    server.start()
    url, proxy = server.url, None
    if args.latency_ms:
      proxy = servers.FaultProxy(server.url, lambda n: 'slow',
                                 slow_secs=args.latency_ms / 1000)
      url = proxy.url
    try:
      runs, best = run_variants(
          __file__, args.variants, args.repeat,
          ['--n', str(args.n), '--batch', str(args.batch), '--concurrency',
           str(args.concurrency), '--_url', url],
          rate_key='el_per_s', unit='el/s')
    finally:
      if proxy is not None:
        proxy.close()
      server.stop()
  eps = {v: best[v].get('el_per_s') for v in best}
  ratios = {
      'ours/reference': ratio(eps.get('ours'), eps.get('reference')),
      'ours/loop': ratio(eps.get('ours'), eps.get('loop')),
      'ours/ours_sync': ratio(eps.get('ours'), eps.get('ours_sync')),
      'ours_seq/reference': ratio(eps.get('ours_seq'), eps.get('reference')),
      # the headline of each pair: the median of its same-round ratios
      **{k: v for k, v in pair_ratios(
          runs, best, [('ours', 'reference'), ('ours', 'loop'), ('ours', 'ours_sync'),
                       ('ours_seq', 'reference')], 'el_per_s').items()
         if k.endswith('(median of rounds)')},
  }
  import apache_beam
  report = {
      'benchmark': 'bench_remote', **provenance(),
      'n': args.n, 'batch': args.batch, 'concurrency': args.concurrency,
      'mlflow_workers': args.workers, 'repeat': args.repeat,
      'added_latency_ms': args.latency_ms,
      'server': 'mlflow models serve --env-manager local, LogisticRegression '
                '(4 columns), dataframe_split, 127.0.0.1',
      'versions': {'python': platform.python_version(),
                   'apache_beam': apache_beam.__version__},
      'machine': {'cpus': os.cpu_count(), 'platform': platform.platform()},
      'results': best, 'all_runs': runs, 'el_per_s': eps, 'ratios': ratios,
      'goal': 'ours/reference >= 2, ours/loop >= 0.8',
  }
  print(f'\nRemote inference (MLflow on loopback): n={args.n:,}, '
        f'{args.batch} rows/request, concurrency {args.concurrency}, '
        f'+{args.latency_ms:g} ms/request, '
        f'best of {args.repeat}')
  for v in args.variants:
    b = best[v]
    print(f'  {v:<10}' + ('error: ' + b['error'][:300] if 'error' in b else
                          f"{b['seconds']:>8.2f}s {b['el_per_s']:>10,.0f} el/s"))
  for k, val in ratios.items():
    if val is not None:
      print(f'  {k:<20}{val:6.2f}x')
  out = out_path(args, 'bench_remote.json')
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text(json.dumps(report, indent=1) + '\n')
  print(f'\nwritten to {out}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
