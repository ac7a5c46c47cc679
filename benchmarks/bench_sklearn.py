#!/usr/bin/env python
"""Throughput of RunInference with a small scikit-learn model on the DirectRunner.

Variants (each in its own fresh Python process, same source and sink):

* ``noop``      -- source | beam.Map(identity)                          | sink
                   (with runinference imported: the same local runner as ours)
* ``reference`` -- source | apache_beam.ml.inference RunInference(...) | sink
* ``ours``      -- source | runinference RunInference(...)            | sink
* ``ours_overlap`` -- the same with ``overlap=True`` (model calls on a thread of their own)
* ``raw``       -- no Beam: ``model.predict`` on the same numpy rows, stacked
                   into batches (``--raw-batch`` rows) and in one big batch.

Source: ``Impulse | FlatMap(range(N)) | Map(make_row)`` -- N float64 rows of 4
features made inside the pipeline. Sink: a ``Map`` that bumps a Metrics counter
(checked against N afterwards). Model: ``LinearRegression`` on 4 features,
pickled, loaded through ``SklearnModelHandlerNumpy(model_uri=...)``.

The runner is the DirectRunner's in-process FnApiRunner, built the way the
DirectRunner builds it (``--runner=DirectRunner`` would first try to download
Prism). Timings are wall-clock from ``pipeline.run()`` to the end of
``wait_until_finish()``, so they include pipeline start-up and model loading.

Prints elements/s per variant and the ratios ours/noop, reference/noop,
ours/reference and ours/raw, and writes them to
``benchmarks/results/bench_sklearn.json``.

    .venv/bin/python benchmarks/bench_sklearn.py               # 300k elements, one run each
    .venv/bin/python benchmarks/bench_sklearn.py --n 100000 --repeat 2   # best of 2
    .venv/bin/python benchmarks/bench_sklearn.py --variants noop ours
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

from _harness import (add_out_args, finish, local_pipeline, out_path, pair_ratios,
                      provenance, run_variants)

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
VARIANTS = ("noop", "reference", "ours", "ours_overlap", "raw")
N_FEATURES = 4


def make_row(i: int):
  import numpy as np
  return np.array([i % 97, (i % 13) * 0.5, (i % 7) - 3.0, 1.0], dtype=np.float64)


def train_model(path: Path) -> None:
  import pickle

  import numpy as np
  from sklearn.linear_model import LinearRegression
  rng = np.random.default_rng(0)
  x = rng.normal(size=(1000, N_FEATURES))
  y = x @ np.array([1.5, -2.0, 0.25, 3.0]) + 0.1
  with open(path, "wb") as fh:
    pickle.dump(LinearRegression().fit(x, y), fh)


# ---------------------------------------------------------------------------
# one variant, in this process
# ---------------------------------------------------------------------------
def _quiet_logs():
  import logging

  class _F(logging.Filter):
    def filter(self, r):
      return "apitools not found" not in r.getMessage()

  root = logging.getLogger()
  if not root.handlers:
    logging.basicConfig(level=logging.WARNING)
  root.addFilter(_F())
  for h in root.handlers:
    h.addFilter(_F())


def run_pipeline_variant(variant: str, n: int, model_path: Path) -> dict:
  _quiet_logs()
  # Same warm-up for every variant: import scikit-learn (and pandas, which the
  # reference's handler imports eagerly) before the clock starts, so a lazy
  # import inside the pipeline (~1 s cold) is not billed as throughput.
  import pandas  # noqa: F401
  import sklearn.linear_model  # noqa: F401

  import apache_beam as beam
  from apache_beam.metrics.metric import Metrics
  from apache_beam.metrics.metric import MetricsFilter

  if variant == "reference":
    from apache_beam.ml.inference.base import RunInference
    from apache_beam.ml.inference.sklearn_inference import SklearnModelHandlerNumpy
    step = RunInference(SklearnModelHandlerNumpy(model_uri=str(model_path)))
  elif variant in ("ours", "ours_overlap"):
    sys.path.insert(0, str(REPO))
    from runinference.base import RunInference
    from runinference.sklearn_inference import SklearnModelHandlerNumpy
    # ours: the default (scikit-learn calls run on the step's thread);
    # ours_overlap: forced onto a call thread of their own.
    kwargs = {"overlap": True} if variant == "ours_overlap" else {}
    step = RunInference(SklearnModelHandlerNumpy(model_uri=str(model_path)),
                        **kwargs)
    import runinference
    origin = runinference.__file__
  elif variant == "noop":
    # The floor runs on the same local runner as ours: importing
    # RunInference installs its runner fixes (sampler_fix.py: no idle tick
    # at bundle ends), so ours/noop prices the step, not the fixes.
    sys.path.insert(0, str(REPO))
    import runinference.base  # noqa: F401
    step = beam.Map(lambda x: x)
  else:
    raise ValueError(variant)

  counter = Metrics.counter("bench", "sunk")

  def sink(x):
    counter.inc()

  p = local_pipeline()
  _ = (p
       | "Impulse" >> beam.Impulse()
       | "Generate" >> beam.FlatMap(lambda _: range(n))
       | "MakeRow" >> beam.Map(make_row)
       | "Step" >> step
       | "Sink" >> beam.Map(sink))
  t0 = time.perf_counter()
  result = p.run()
  result.wait_until_finish()
  dt = time.perf_counter() - t0
  sunk = result.metrics().query(MetricsFilter().with_name("sunk"))["counters"]
  got = sum(c.committed for c in sunk)
  out = {"seconds": dt, "elements": got, "el_per_s": n / dt}
  if got != n:
    out["error"] = f"sink saw {got} elements, expected {n}"
  if variant == "ours":
    out["module"] = origin
    # The package must stand alone: it may not pull in Beam's implementation.
    out["imported_apache_beam_ml_inference"] = any(
        m.startswith("apache_beam.ml.inference") for m in sys.modules)
  return out


def run_raw_variant(n: int, model_path: Path, batch: int) -> dict:
  import pickle

  import numpy as np
  with open(model_path, "rb") as fh:
    model = pickle.load(fh)
  rows = [make_row(i) for i in range(n)]  # the same rows, made outside timing
  t0 = time.perf_counter()
  got = 0
  for s in range(0, n, batch):
    got += len(model.predict(np.vstack(rows[s:s + batch])))
  dt_batched = time.perf_counter() - t0
  t0 = time.perf_counter()
  got_one = len(model.predict(np.vstack(rows)))
  dt_one = time.perf_counter() - t0
  assert got == got_one == n
  return {"seconds": dt_batched, "elements": n, "el_per_s": n / dt_batched,
          "batch": batch, "one_batch_seconds": dt_one, "one_batch_el_per_s": n / dt_one}


# ---------------------------------------------------------------------------
# driver
# ---------------------------------------------------------------------------
def main(argv=None) -> int:
  ap = argparse.ArgumentParser(description="RunInference sklearn throughput benchmark")
  ap.add_argument("--n", type=int, default=300_000, help="elements (default 300000)")
  ap.add_argument("--repeat", type=int, default=1, help="runs per variant; best is kept")
  ap.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
  ap.add_argument("--raw-batch", type=int, default=1000,
                  help="rows per predict() call in the raw variant")
  add_out_args(ap, "bench_sklearn.json")
  ap.add_argument("--_child", help=argparse.SUPPRESS)
  ap.add_argument("--_model", help=argparse.SUPPRESS)
  args = ap.parse_args(argv)

  _quiet_logs()
  if args._child:
    if args._child == "raw":
      res = run_raw_variant(args.n, Path(args._model), args.raw_batch)
    else:
      res = run_pipeline_variant(args._child, args.n, Path(args._model))
    print(json.dumps(res))
    return 0

  with tempfile.TemporaryDirectory(prefix="ri_bench_") as tmp:
    model_path = Path(tmp) / "linreg4.pkl"
    train_model(model_path)
    runs, best = run_variants(
        __file__, args.variants, args.repeat,
        ["--n", str(args.n), "--raw-batch", str(args.raw_batch), "--_model", str(model_path)],
        rate_key="el_per_s", unit="el/s")
  eps = {v: best[v].get("el_per_s") for v in best}
  ratios = pair_ratios(
      runs, best, [("ours", "noop"), ("reference", "noop"),
                   ("ours", "reference"), ("ours", "raw"),
                   ("ours_overlap", "ours")], "el_per_s")
  import apache_beam
  import numpy
  import sklearn
  report = {
      "benchmark": "bench_sklearn",
      **provenance(),
      "n": args.n, "repeat": args.repeat, "raw_batch": args.raw_batch,
      "runner": "DirectRunner (in-process FnApiRunner, direct_num_workers=1)",
      "model": "sklearn LinearRegression, 4 features, SklearnModelHandlerNumpy",
      "versions": {"python": platform.python_version(), "apache_beam": apache_beam.__version__,
                   "sklearn": sklearn.__version__, "numpy": numpy.__version__},
      "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
      "results": best,
      "all_runs": runs,
      "el_per_s": eps,
      "ratios": ratios,
      "goal": "ours/noop >= 0.9",
  }

  print(f"\nRunInference sklearn benchmark: n={args.n:,}, best of {args.repeat}, "
        f"DirectRunner (FnApiRunner)")
  print(f"  {'variant':<12}{'seconds':>9}{'elements/s':>14}")
  for v in args.variants:
    b = best[v]
    if "error" in b:
      print(f"  {v:<12}{'error':>9}")
    else:
      print(f"  {v:<12}{b['seconds']:>9.2f}{b['el_per_s']:>14,.0f}")
  if "raw" in best and "one_batch_el_per_s" in best["raw"]:
    print(f"  {'raw 1 batch':<12}{best['raw']['one_batch_seconds']:>9.3f}"
          f"{best['raw']['one_batch_el_per_s']:>14,.0f}")
  print()
  return finish(ratios, {"ours/noop": 0.90, "ours/noop (median of rounds)": 0.90},
                report, best, out_path(args, "bench_sklearn.json"))


if __name__ == "__main__":
  sys.exit(main())
