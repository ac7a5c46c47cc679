#!/usr/bin/env python
"""Throughput of the columnar path (RunInferenceColumnar) against per-row
RunInference, on the DirectRunner, with a small scikit-learn model.

Every pipeline variant starts from the same chunked source -- what
``beam.io.ReadFromParquetBatched`` gives a pipeline --
``Impulse | FlatMap(range(N / chunk)) | Map(make_chunk)``: ``pyarrow.RecordBatch``
chunks of ``--chunk`` rows (4 float64 feature columns plus an ``id``), made
inside the pipeline. Variants, each in its own fresh Python process:

* ``columnar``  -- chunks | runinference.columnar.RunInferenceColumnar      | sink
* ``ours``      -- chunks | FlatMap(rows) | runinference RunInference       | sink
* ``reference`` -- chunks | FlatMap(rows) | apache_beam.ml.inference RunInference | sink
* ``noop``      -- chunks | sink (no model: the floor of the columnar path)
* ``explode``   -- chunks | FlatMap(rows) | sink (no model: the floor of any
                   per-row pipeline over chunked data)
* ``raw``       -- no Beam: ``model.predict`` on the whole N x 4 numpy matrix,
                   and on it in slices of ``--chunk`` rows.

The per-row variants turn each chunk into 1-D numpy rows (one per element),
as a per-row pipeline over Parquet/Arrow data has to. The sink bumps a
Metrics counter by the rows it saw (checked against N). The model is a
``LinearRegression`` on 4 features, pickled, loaded through
``SklearnModelHandlerNumpy(model_uri=...)``. Timings are wall clock from
``pipeline.run()`` to the end of ``wait_until_finish()`` (start-up and model
loading included).

Prints rows/s per variant and the ratios, and writes them to
``benchmarks/results/bench_columnar.json``.

    .venv/bin/python benchmarks/bench_columnar.py                    # 1M rows, chunks of 10k
    .venv/bin/python benchmarks/bench_columnar.py --n 200000 --repeat 2
    .venv/bin/python benchmarks/bench_columnar.py --variants columnar raw
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

from _harness import ratio, run_variants

from bench_sklearn import _quiet_logs, _runner, train_model

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
VARIANTS = ("columnar", "ours", "reference", "noop", "explode", "raw")
FEATURES = ["x1", "x2", "x3", "x4"]


def make_matrix(start: int, rows: int):
  """Rows ``start .. start+rows`` of the data set (same for every variant)."""
  import numpy as np
  i = np.arange(start, start + rows)
  return np.column_stack(
      [i % 97, (i % 13) * 0.5, (i % 7) - 3.0, np.ones(rows)]).astype(np.float64)


def make_chunk(k: int, chunk: int, n: int):
  """Chunk ``k``: the rows of ``make_matrix``, one Arrow column each."""
  import numpy as np
  import pyarrow as pa
  start = k * chunk
  i = np.arange(start, start + min(chunk, n - start))
  columns = [i, (i % 97).astype(np.float64), (i % 13) * 0.5, (i % 7) - 3.0,
             np.ones(len(i))]
  return pa.RecordBatch.from_arrays([pa.array(c) for c in columns],
                                    names=["id", *FEATURES])


def rows_of(batch):
  """One 1-D float64 numpy row per element, from a chunk."""
  import numpy as np
  m = np.column_stack([batch.column(c).to_numpy() for c in FEATURES])
  return list(m)


def run_pipeline_variant(variant: str, n: int, chunk: int, model_path: Path) -> dict:
  _quiet_logs()
  import pandas  # noqa: F401  (the reference's handler imports it eagerly)
  import pyarrow  # noqa: F401
  import sklearn.linear_model  # noqa: F401

  import apache_beam as beam
  from apache_beam.metrics.metric import Metrics, MetricsFilter
  from apache_beam.options.pipeline_options import PipelineOptions

  sys.path.insert(0, str(REPO))
  per_row = variant in ("ours", "reference", "explode")
  if variant == "columnar":
    from runinference.columnar import RunInferenceColumnar
    from runinference.sklearn_inference import SklearnModelHandlerNumpy
    step = RunInferenceColumnar(
        SklearnModelHandlerNumpy(model_uri=str(model_path)), FEATURES)
  elif variant == "ours":
    from runinference.base import RunInference
    from runinference.sklearn_inference import SklearnModelHandlerNumpy
    step = RunInference(SklearnModelHandlerNumpy(model_uri=str(model_path)))
  elif variant == "reference":
    from apache_beam.ml.inference.base import RunInference
    from apache_beam.ml.inference.sklearn_inference import SklearnModelHandlerNumpy
    step = RunInference(SklearnModelHandlerNumpy(model_uri=str(model_path)))
  elif variant in ("noop", "explode"):
    step = None
  else:
    raise ValueError(variant)

  counter = Metrics.counter("bench", "rows")
  checksum = Metrics.counter("bench", "checked")

  def sink_rows(x):
    counter.inc()

  def sink_chunk(b):
    counter.inc(b.num_rows)
    if "prediction" in b.schema.names:
      checksum.inc(b.num_rows)

  options = PipelineOptions(["--runner=DirectRunner", "--direct_num_workers=1",
                             "--direct_running_mode=in_memory"])
  p = beam.Pipeline(runner=_runner(options), options=options)
  pcoll = (p
           | "Impulse" >> beam.Impulse()
           | "Generate" >> beam.FlatMap(lambda _: range((n + chunk - 1) // chunk))
           | "MakeChunk" >> beam.Map(make_chunk, chunk, n))
  if per_row:
    pcoll = pcoll | "Rows" >> beam.FlatMap(rows_of)
  if step is not None:
    pcoll = pcoll | "Step" >> step
  _ = pcoll | "Sink" >> beam.Map(sink_rows if per_row else sink_chunk)
  t0 = time.perf_counter()
  result = p.run()
  result.wait_until_finish()
  dt = time.perf_counter() - t0

  def total(name):
    found = result.metrics().query(MetricsFilter().with_name(name))["counters"]
    return sum(c.committed for c in found)

  got = total("rows")
  out = {"seconds": dt, "rows": got, "rows_per_s": n / dt}
  if got != n:
    out["error"] = f"sink saw {got} rows, expected {n}"
  if variant == "columnar" and total("checked") != n:
    out["error"] = "some chunks came out without a prediction column"
  if variant in ("columnar", "ours"):
    out["imported_apache_beam_ml"] = any(
        m.startswith("apache_beam.ml") for m in sys.modules)
  return out


def run_raw_variant(n: int, chunk: int, model_path: Path) -> dict:
  import pickle
  with open(model_path, "rb") as fh:
    model = pickle.load(fh)
  matrix = make_matrix(0, n)  # made outside the timing
  t0 = time.perf_counter()
  got_one = len(model.predict(matrix))
  dt_one = time.perf_counter() - t0
  t0 = time.perf_counter()
  got = sum(len(model.predict(matrix[s:s + chunk])) for s in range(0, n, chunk))
  dt_chunked = time.perf_counter() - t0
  assert got == got_one == n
  return {"seconds": dt_one, "rows": n, "rows_per_s": n / dt_one,
          "chunked_seconds": dt_chunked, "chunked_rows_per_s": n / dt_chunked}


def main(argv=None) -> int:
  ap = argparse.ArgumentParser(description="Columnar RunInference throughput benchmark")
  ap.add_argument("--n", type=int, default=1_000_000, help="rows (default 1000000)")
  ap.add_argument("--chunk", type=int, default=10_000, help="rows per chunk (default 10000)")
  ap.add_argument("--repeat", type=int, default=1, help="runs per variant; best is kept")
  ap.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
  ap.add_argument("--out", default=str(RESULTS / "bench_columnar.json"))
  ap.add_argument("--_child", help=argparse.SUPPRESS)
  ap.add_argument("--_model", help=argparse.SUPPRESS)
  args = ap.parse_args(argv)

  _quiet_logs()
  if args._child:
    if args._child == "raw":
      res = run_raw_variant(args.n, args.chunk, Path(args._model))
    else:
      res = run_pipeline_variant(args._child, args.n, args.chunk, Path(args._model))
    print(json.dumps(res))
    return 0

  with tempfile.TemporaryDirectory(prefix="ri_bench_col_") as tmp:
    model_path = Path(tmp) / "linreg4.pkl"
    train_model(model_path)
    runs, best = run_variants(
        __file__, args.variants, args.repeat,
        ["--n", str(args.n), "--chunk", str(args.chunk), "--_model", str(model_path)],
        rate_key="rows_per_s", unit="rows/s")
  rps = {v: best[v].get("rows_per_s") for v in best}
  if "raw" in best and "chunked_rows_per_s" in best["raw"]:
    rps["raw_chunked"] = best["raw"]["chunked_rows_per_s"]
  ratios = {
      "columnar/ours": ratio(rps.get("columnar"), rps.get("ours")),
      "columnar/reference": ratio(rps.get("columnar"), rps.get("reference")),
      "columnar/noop": ratio(rps.get("columnar"), rps.get("noop")),
      "columnar/explode": ratio(rps.get("columnar"), rps.get("explode")),
      "columnar/raw": ratio(rps.get("columnar"), rps.get("raw")),
      "columnar/raw_chunked": ratio(rps.get("columnar"), rps.get("raw_chunked")),
      "ours/reference": ratio(rps.get("ours"), rps.get("reference")),
  }
  # The model step's own cost: the columnar pipeline's time over the same
  # pipeline without the step, against the raw predict of the same rows.
  step_seconds = None
  if all(v in best and "error" not in best[v] for v in ("columnar", "noop")):
    step_seconds = best["columnar"]["seconds"] - best["noop"]["seconds"]
  import apache_beam
  import numpy
  import pyarrow
  import sklearn
  report = {
      "benchmark": "bench_columnar",
      "when": time.strftime("%Y-%m-%d %H:%M:%S"),
      "n": args.n, "chunk": args.chunk, "repeat": args.repeat,
      "runner": "DirectRunner (in-process FnApiRunner, direct_num_workers=1)",
      "source": "pyarrow.RecordBatch chunks made in the pipeline; per-row "
                "variants FlatMap them into 1-D numpy rows",
      "model": "sklearn LinearRegression, 4 features, SklearnModelHandlerNumpy",
      "versions": {"python": platform.python_version(),
                   "apache_beam": apache_beam.__version__,
                   "sklearn": sklearn.__version__, "numpy": numpy.__version__,
                   "pyarrow": pyarrow.__version__},
      "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
      "results": best,
      "all_runs": runs,
      "rows_per_s": rps,
      "ratios": ratios,
      "columnar_step_seconds": step_seconds,
  }

  print(f"\nColumnar benchmark: n={args.n:,} rows in chunks of {args.chunk:,}, "
        f"best of {args.repeat}, DirectRunner (FnApiRunner)")
  print(f"  {'variant':<14}{'seconds':>9}{'rows/s':>15}")
  for v in args.variants:
    b = best[v]
    if "error" in b:
      print(f"  {v:<14}{'error':>9}")
    else:
      print(f"  {v:<14}{b['seconds']:>9.3f}{b['rows_per_s']:>15,.0f}")
  if "raw_chunked" in rps:
    print(f"  {'raw (chunked)':<14}{best['raw']['chunked_seconds']:>9.3f}"
          f"{rps['raw_chunked']:>15,.0f}")
  if step_seconds is not None:
    print(f"  columnar step alone (columnar - noop): {step_seconds:.3f}s")
  print()
  for k, val in ratios.items():
    if val is not None:
      print(f"  {k:<22}{val:8.2f}x")
  Path(args.out).parent.mkdir(parents=True, exist_ok=True)
  Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
  print(f"\nwritten to {args.out}")
  return 1 if any("error" in b for b in best.values()) else 0


if __name__ == "__main__":
  sys.exit(main())
