"""How many copies of a model's weights a machine holds with 2 worker processes.

A PyTorch model of ``--weights-mb`` of float32 weights runs under
``runinference`` RunInference on a Dask ``LocalCluster`` of 2 worker processes
(``runinference.runners.DaskRunner``), in three variants, each in a fresh
Python process:

| variant | handler |
|---|---|
| `per_process` | default: one model per worker process |
| `large_model` | `large_model=True`: one model per machine, shared by both workers |
| `copies2` | `model_copies=2`: exactly two per machine |

While the pipeline runs, a sampler reads ``/proc/<pid>/smaps_rollup`` (PSS
and RSS) of every process of the cluster (nanny, workers, any model server)
every 0.2 s. ``steady`` is the median of the samples in the second half of
the run, minus the cluster's PSS after warm-up (torch imported in both
workers, before any model is loaded); ``copies`` is that delta divided by
the weights' size. PSS divides shared pages among the processes that map
them, so pages shared between workers are counted once.

    .venv/bin/python benchmarks/bench_memory.py                 # 400 MB model
    .venv/bin/python benchmarks/bench_memory.py --weights-mb 200 --n 400
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import _harness  # noqa: E402

VARIANTS = {
    'per_process': {},
    'large_model': {'large_model': True},
    'copies2': {'model_copies': 2},
}
WIDTH = 4096  # each layer: WIDTH x WIDTH float32 = 64 MiB


def _smaps_rollup(pid: int) -> tuple[int, int]:
  """(PSS, RSS) of one process in bytes; (0, 0) once it has gone."""
  pss = rss = 0
  try:
    with open(f'/proc/{pid}/smaps_rollup') as f:
      for line in f:
        if line.startswith('Pss:'):
          pss = int(line.split()[1]) * 1024
        elif line.startswith('Rss:'):
          rss = int(line.split()[1]) * 1024
  except (FileNotFoundError, ProcessLookupError, PermissionError):
    pass
  return pss, rss


def cluster_memory() -> dict:
  """PSS/RSS of every process below this one (the cluster), summed."""
  import psutil
  per = {}
  for proc in psutil.Process().children(recursive=True):
    pss, rss = _smaps_rollup(proc.pid)
    per[proc.pid] = (pss, rss)
  return {
      'pss': sum(p for p, _ in per.values()),
      'rss': sum(r for _, r in per.values()),
      'processes': len(per),
      'per_process_pss': sorted(p for p, _ in per.values()),
  }


class Sampler(threading.Thread):
  def __init__(self, every_s: float = 0.2):
    super().__init__(daemon=True)
    self.every_s = every_s
    self.samples: list[dict] = []
    self.stop = threading.Event()

  def run(self):
    while not self.stop.is_set():
      self.samples.append(cluster_memory())
      self.stop.wait(self.every_s)


def _big_net_class():
  import torch

  class BigNet(torch.nn.Module):
    def __init__(self, layers: int):
      super().__init__()
      self.layers = torch.nn.Sequential(
          *[torch.nn.Linear(WIDTH, WIDTH, bias=False) for _ in range(layers)])

    def forward(self, x):
      return self.layers(x)

  return BigNet


def _warm_worker():
  import torch  # noqa: F401

  import runinference.pytorch_inference  # noqa: F401
  torch.set_num_threads(1)
  return os.getpid()


def _row(i):
  import torch
  return torch.full((WIDTH, ), float(i % 7) / 7)


def child(variant: str, weights_mb: int, n: int) -> dict:
  import apache_beam as beam
  import torch
  from apache_beam.options.pipeline_options import PipelineOptions
  from dask.distributed import Client, LocalCluster

  from runinference.base import RunInference
  from runinference.pytorch_inference import PytorchModelHandlerTensor
  from runinference.runners import DaskRunner

  layers = max(1, round(weights_mb / (WIDTH * WIDTH * 4 / 2**20)))
  weights = layers * WIDTH * WIDTH * 4
  BigNet = _big_net_class()
  path = os.path.join(tempfile.mkdtemp(), 'big.pt')
  torch.save(BigNet(layers).state_dict(), path)

  cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                         host='127.0.0.1', dashboard_address=None)
  try:
    with Client(cluster) as client:
      worker_pids = sorted(client.run(_warm_worker).values())
    time.sleep(1.0)
    baseline = cluster_memory()
    handler = PytorchModelHandlerTensor(
        state_dict_path=path, model_class=BigNet,
        model_params={'layers': layers}, min_batch_size=16,
        max_batch_size=16, **VARIANTS[variant])
    sampler = Sampler()
    sampler.start()
    start = time.perf_counter()
    options = PipelineOptions(
        [f'--dask_client_address={cluster.scheduler_address}',
         '--dask_partition_size=32'])
    with beam.Pipeline(runner=DaskRunner(), options=options) as p:
      _ = (p | beam.Create(range(n)) | beam.Map(_row)
           | RunInference(handler) | beam.Map(lambda r: None))
    seconds = time.perf_counter() - start
    sampler.stop.set()
    sampler.join()
  finally:
    cluster.close()
  half = sampler.samples[len(sampler.samples) // 2:] or sampler.samples
  steady_pss = statistics.median(s['pss'] for s in half)
  steady_rss = statistics.median(s['rss'] for s in half)
  peak_pss = max(s['pss'] for s in sampler.samples)
  mb = 2**20
  return {
      'variant': variant,
      'seconds': seconds,
      'rate': n / seconds,
      'weights_mb': weights / mb,
      'worker_pids': worker_pids,
      'baseline_pss_mb': baseline['pss'] / mb,
      'steady_pss_delta_mb': (steady_pss - baseline['pss']) / mb,
      'steady_rss_delta_mb': (steady_rss - baseline['rss']) / mb,
      'peak_pss_delta_mb': (peak_pss - baseline['pss']) / mb,
      'copies_by_pss': (steady_pss - baseline['pss']) / weights,
      'copies_by_rss': (steady_rss - baseline['rss']) / weights,
      'samples': len(sampler.samples),
      'processes': max(s['processes'] for s in sampler.samples),
  }


def main():
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument('--weights-mb', type=int, default=400)
  ap.add_argument('--n', type=int, default=800, help='elements per run')
  ap.add_argument('--variants', nargs='+', default=list(VARIANTS),
                  choices=list(VARIANTS))
  _harness.add_out_args(ap, 'bench_memory.json')
  ap.add_argument('--_child')
  args = ap.parse_args()
  if args._child:
    print(json.dumps(child(args._child, args.weights_mb, args.n)))
    return
  results = {}
  for v in args.variants:
    res = _harness.run_child(__file__, v,
                             ['--weights-mb', str(args.weights_mb), '--n',
                              str(args.n)])
    results[v] = res
    if 'error' in res:
      print(f'{v:<12} ERROR {res["error"]}', flush=True)
      continue
    print(f'{v:<12} weights {res["weights_mb"]:.0f} MB | steady PSS '
          f'+{res["steady_pss_delta_mb"]:.0f} MB ({res["copies_by_pss"]:.2f} '
          f'copies) | RSS +{res["steady_rss_delta_mb"]:.0f} MB '
          f'({res["copies_by_rss"]:.2f}) | peak PSS '
          f'+{res["peak_pss_delta_mb"]:.0f} MB | {res["processes"]} processes'
          f' | {res["seconds"]:.1f}s', flush=True)
  out = _harness.out_path(args, 'bench_memory.json')
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text(json.dumps({**_harness.provenance(), 'args': vars(args), 'results': results},
                            indent=2, default=str) + '\n')
  print(f'-> {out}')


if __name__ == '__main__':
  main()
