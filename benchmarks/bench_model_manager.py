#!/usr/bin/env python
"""Three models that do not all fit: ``max_models_per_worker_hint`` against
the central model manager's memory budget.

Three PyTorch models whose weights take real memory (an ``EmbeddingBag`` of
``--rows`` x 128 float32, ~154 MB at the default 300k rows, plus a
``Linear(128, 4)``; each ``state_dict`` saved to a temp dir) serve three keys
through a multi-model ``KeyedModelHandler([KeyModelMapping(['kJ'],
PytorchModelHandlerTensor(...)), ...])``; the input cycles k0, k1, k2, k0, ...
(each element 8 int64 indices), batches fixed at ``--batch`` (64) so every
batch holds all three keys. Variants (each in a fresh Python process,
alternating, best of ``--repeat`` by throughput):

* ``hint2``   -- ``KeyedModelHandler(mappings, max_models_per_worker_hint=2)``
* ``budget2`` -- ``RunInference(..., use_model_manager=True, model_manager_args=
                 {'memory_budget_bytes': 2.5 x weights})``: fits 2 of the 3
* ``budget3`` -- the same with ``4 x weights``: fits all 3

Reported per variant: elements/s (wall clock from ``pipeline.run()`` to the
end of ``wait_until_finish()``), model loads (the count of the keyed
handler's ``load_model_latency_milli_secs`` distribution), the process's
peak RSS (``VmHWM`` of ``/proc/self/status``) and that peak above the RSS
before the pipeline ran (torch, Beam and the package already imported).

Runner: the DirectRunner's in-process FnApiRunner (as ``bench_sklearn.py``).

    .venv/bin/python benchmarks/bench_model_manager.py                 # 640 elements, batch 64
    .venv/bin/python benchmarks/bench_model_manager.py --repeat 2

``--many-keys`` runs instead the scenario of issue 18 (item 6): ``--keys``
(200) keys, each its own copy of a pickled scikit-learn
``KNeighborsRegressor`` holding ``--model-mb`` (20) MiB, through a
multi-model ``KeyedModelHandler`` with ``use_model_manager=True`` and a
``--budget-mb`` (70) MiB budget, each key seen twice, in a fresh process;
and the same with ``max_models_per_worker_hint=3`` (no manager). Reported:
peak RSS above the RSS before the pipeline (``VmHWM`` reset first), which
should stay within the budget plus one model.

    .venv/bin/python benchmarks/bench_model_manager.py --many-keys --out /tmp/mm.json
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

from _harness import (add_out_args, local_pipeline, out_path, paired, provenance, ratio,
                      run_variants)

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
VARIANTS = ("hint2", "budget2", "budget3")
KEYS = ("k0", "k1", "k2")
DIM = 128
BAG = 8


def _model_class():
  from torch import nn

  class BagModel(nn.Module):
    """Mean of ``BAG`` embedding rows, then a small linear head."""
    def __init__(self, rows: int):
      super().__init__()
      self.emb = nn.EmbeddingBag(rows, DIM, mode="mean")
      self.head = nn.Linear(DIM, 4)

    def forward(self, idx):
      return self.head(self.emb(idx))

  return BagModel


def weights_bytes(rows: int) -> int:
  return (rows * DIM + DIM * 4 + 4) * 4


def make_example(i: int, rows: int):
  import torch
  start = (i * 7919) % (rows - BAG)
  return KEYS[i % len(KEYS)], torch.arange(start, start + BAG)


def save_models(folder: Path, rows: int) -> list[Path]:
  import torch
  paths = []
  for j, _ in enumerate(KEYS):
    torch.manual_seed(j)
    path = folder / f"bag{j}.pt"
    torch.save(_model_class()(rows).state_dict(), path)
    paths.append(path)
  return paths


def _status_mb(field: str) -> float:
  with open("/proc/self/status") as f:
    for line in f:
      if line.startswith(field + ":"):
        return int(line.split()[1]) / 1024
  return float("nan")


def run_variant(variant: str, n: int, rows: int, batch: int, folder: Path) -> dict:
  import torch  # noqa: F401
  import apache_beam as beam
  from apache_beam.metrics.metric import Metrics
  sys.path.insert(0, str(REPO))
  from runinference.base import KeyedModelHandler, KeyModelMapping, RunInference
  from runinference.pytorch_inference import PytorchModelHandlerTensor

  mappings = [
      KeyModelMapping([key], PytorchModelHandlerTensor(
          state_dict_path=str(folder / f"bag{j}.pt"), model_class=_model_class(),
          model_params={"rows": rows}))
      for j, key in enumerate(KEYS)]
  wb = weights_bytes(rows)
  if variant == "hint2":
    handler = KeyedModelHandler(mappings, max_models_per_worker_hint=2)
    kwargs, budget = {}, None
  elif variant in ("budget2", "budget3"):
    handler = KeyedModelHandler(mappings)
    budget = int(wb * (2.5 if variant == "budget2" else 4))
    kwargs = {"use_model_manager": True,
              "model_manager_args": {"memory_budget_bytes": budget}}
  else:
    raise ValueError(variant)
  if batch:
    # The multi-model KeyedModelHandler has no batch-size argument (the
    # per-key handlers' are ignored); fix the batch size on this instance.
    handler.batch_elements_kwargs = lambda: {"min_batch_size": batch,
                                             "max_batch_size": batch}
  step = RunInference(handler, **kwargs)

  counter = Metrics.counter("bench", "sunk")

  def sink(x):
    counter.inc()

  p = local_pipeline()
  _ = (p
       | "Impulse" >> beam.Impulse()
       | "Generate" >> beam.FlatMap(lambda _: range(n))
       | "MakeExample" >> beam.Map(make_example, rows)
       | "RunInference" >> step
       | "Sink" >> beam.Map(sink))
  rss_before = _status_mb("VmRSS")
  t0 = time.perf_counter()
  result = p.run()
  result.wait_until_finish()
  dt = time.perf_counter() - t0
  peak = _status_mb("VmHWM")
  metrics = result.metrics().query()
  got = sum(c.committed for c in metrics["counters"] if c.key.metric.name == "sunk")
  # The handler records each load twice: under the step's name and under the
  # key's ("k0-load_model_latency_milli_secs"); count the step's only.
  loads = sum(d.committed.count for d in metrics["distributions"]
              if d.key.metric.name == "load_model_latency_milli_secs")
  out = {"seconds": dt, "elements": got, "el_per_s": n / dt, "model_loads": loads,
         "rss_before_mb": rss_before, "peak_rss_mb": peak,
         "peak_above_before_mb": peak - rss_before,
         "weights_mb_each": wb / 2**20,
         "budget_mb": None if budget is None else budget / 2**20}
  if got != n:
    out["error"] = f"sink saw {got} elements, expected {n}"
  return out


def run_many_keys(variant: str, keys: int, model_mb: float, budget_mb: float,
                  folder: Path) -> dict:
  """One run of the many-keys scenario in this process."""
  import pickle
  import numpy as np
  import apache_beam as beam
  from sklearn.neighbors import KNeighborsRegressor
  sys.path.insert(0, str(REPO))
  from runinference.base import KeyedModelHandler, KeyModelMapping, RunInference
  from runinference.sklearn_inference import SklearnModelHandlerNumpy

  path = folder / f"knn{model_mb:g}.pkl"
  if not path.exists():
    x = np.random.RandomState(0).rand(int(model_mb * 2**20 / 8 / 16), 16)
    path.write_bytes(pickle.dumps(
        KNeighborsRegressor(n_neighbors=1, algorithm="brute").fit(x, x[:, 0])))
  mappings = [KeyModelMapping([f"k{i}"], SklearnModelHandlerNumpy(str(path)))
              for i in range(keys)]
  if variant == "manager":
    step = RunInference(KeyedModelHandler(mappings), use_model_manager=True,
                        model_manager_args={"memory_budget_bytes": int(budget_mb * 2**20)})
  else:
    step = RunInference(KeyedModelHandler(mappings, max_models_per_worker_hint=3))
  with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # VmHWM := VmRSS
  rss_before = _status_mb("VmRSS")
  t0 = time.perf_counter()
  with beam.Pipeline() as p:
    _ = (p | beam.Create(list(range(keys * 2)))
         | beam.Map(lambda i: (f"k{i % keys}", np.full(16, 0.5)))
         | step)
  return {"variant": variant, "keys": keys, "model_mb": model_mb,
          "budget_mb": budget_mb if variant == "manager" else None,
          "seconds": time.perf_counter() - t0, "rss_before_mb": rss_before,
          "peak_above_before_mb": _status_mb("VmHWM") - rss_before}


def many_keys(args) -> int:
  import subprocess
  results = []
  with tempfile.TemporaryDirectory(prefix="ri_bench_mm_keys_") as tmp:
    for variant in ("manager", "hint3"):
      out = subprocess.run(
          [sys.executable, __file__, "--_many_keys_child", variant, "--keys", str(args.keys),
           "--model-mb", str(args.model_mb), "--budget-mb", str(args.budget_mb),
           "--_folder", tmp], capture_output=True, text=True, check=True)
      results.append(json.loads(out.stdout.strip().splitlines()[-1]))
  for r in results:
    print(f"  {r['variant']:<8} {r['keys']} keys x {r['model_mb']:g} MiB, budget "
          f"{r['budget_mb'] or '-'} MiB: peak {r['peak_above_before_mb']:.0f} MiB above "
          f"start, {r['seconds']:.1f} s")
  Path(args.out).parent.mkdir(parents=True, exist_ok=True)
  Path(args.out).write_text(json.dumps(
      {"benchmark": "bench_model_manager --many-keys",
       **provenance(),
       "machine": {"cpus": os.cpu_count(), "loadavg": os.getloadavg()},
       "results": results}, indent=1) + "\n")
  return 0


def main(argv=None) -> int:
  ap = argparse.ArgumentParser(description="model manager vs max_models_per_worker_hint")
  ap.add_argument("--n", type=int, default=640, help="elements (default 640)")
  ap.add_argument("--batch", type=int, default=64,
                  help="fixed batch size (default 64; 0 = the default adaptive batching)")
  ap.add_argument("--rows", type=int, default=300_000,
                  help="embedding rows per model (default 300000 = ~147 MiB of weights)")
  ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads in every variant")
  ap.add_argument("--repeat", type=int, default=1, help="runs per variant; best is kept")
  ap.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
  add_out_args(ap, "bench_model_manager.json")
  ap.add_argument("--many-keys", action="store_true",
                  help="the issue-18 scenario: many keys, small models, a tight budget")
  ap.add_argument("--keys", type=int, default=200)
  ap.add_argument("--model-mb", type=float, default=20)
  ap.add_argument("--budget-mb", type=float, default=70)
  ap.add_argument("--_many_keys_child", help=argparse.SUPPRESS)
  ap.add_argument("--_child", help=argparse.SUPPRESS)
  ap.add_argument("--_folder", help=argparse.SUPPRESS)
  args = ap.parse_args(argv)

  if args._many_keys_child:
    print(json.dumps(run_many_keys(args._many_keys_child, args.keys, args.model_mb,
                                   args.budget_mb, Path(args._folder))))
    return 0
  if args.many_keys:
    args.out = str(out_path(args, "bench_model_manager_keys.json"))
    return many_keys(args)
  if args._child:
    import torch
    torch.set_num_threads(args.threads)
    print(json.dumps(run_variant(args._child, args.n, args.rows, args.batch, Path(args._folder))))
    return 0

  with tempfile.TemporaryDirectory(prefix="ri_bench_mm_") as tmp:
    save_models(Path(tmp), args.rows)
    runs, best = run_variants(
        __file__, args.variants, args.repeat,
        ["--n", str(args.n), "--batch", str(args.batch), "--rows", str(args.rows), "--threads", str(args.threads),
         "--_folder", tmp],
        rate_key="el_per_s", unit="el/s")
  eps = {v: best[v].get("el_per_s") for v in best}
  peaks = {v: best[v].get("peak_above_before_mb") for v in best}
  ratios = {
      "budget2/hint2 throughput": ratio(eps.get("budget2"), eps.get("hint2")),
      "budget2/hint2 peak above start": ratio(peaks.get("budget2"), peaks.get("hint2")),
      "budget3/hint2 throughput": ratio(eps.get("budget3"), eps.get("hint2")),
      "budget3/hint2 peak above start": ratio(peaks.get("budget3"), peaks.get("hint2")),
      # the headline: the median of same-round ratios
      "budget2/hint2 throughput (median of rounds)": paired(runs, "budget2", "hint2", "el_per_s"),
      "budget3/hint2 throughput (median of rounds)": paired(runs, "budget3", "hint2", "el_per_s"),
  }
  import apache_beam
  import torch
  report = {
      "benchmark": "bench_model_manager",
      **provenance(),
      "n": args.n, "batch": args.batch, "rows": args.rows, "threads": args.threads, "repeat": args.repeat,
      "weights_mb_each": weights_bytes(args.rows) / 2**20,
      "runner": "DirectRunner (in-process FnApiRunner, direct_num_workers=1)",
      "model": f"3 x (EmbeddingBag({args.rows}, {DIM}, mean) + Linear({DIM}, 4)), "
               "PytorchModelHandlerTensor(state_dict_path, model_class) per key",
      "versions": {"python": platform.python_version(), "apache_beam": apache_beam.__version__,
                   "torch": torch.__version__},
      "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                  "loadavg": os.getloadavg()},
      "results": best, "all_runs": runs, "el_per_s": eps, "ratios": ratios,
  }
  print(f"\nModel manager benchmark: n={args.n:,} elements over 3 keys, 3 models of "
        f"{weights_bytes(args.rows) / 2**20:.0f} MiB, batch {args.batch or 'adaptive'}, "
        f"best of {args.repeat}")
  print(f"  {'variant':<10}{'budget MiB':>11}{'seconds':>9}{'el/s':>9}{'loads':>7}"
        f"{'peak RSS MiB':>14}{'peak-start MiB':>16}")
  for v in args.variants:
    b = best[v]
    if "error" in b:
      print(f"  {v:<10}{'error':>11}")
      continue
    bud = "-" if b["budget_mb"] is None else f"{b['budget_mb']:.0f}"
    print(f"  {v:<10}{bud:>11}{b['seconds']:>9.2f}{b['el_per_s']:>9,.0f}{b['model_loads']:>7}"
          f"{b['peak_rss_mb']:>14,.0f}{b['peak_above_before_mb']:>16,.0f}")
  print()
  for k, val in ratios.items():
    if val is not None:
      print(f"  {k:<32}{val:6.2f}x")
  out = out_path(args, "bench_model_manager.json")
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text(json.dumps(report, indent=1) + "\n")
  print(f"\nwritten to {out}")
  return 1 if any("error" in b for b in best.values()) else 0


if __name__ == "__main__":
  sys.exit(main())
