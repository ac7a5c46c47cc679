#!/usr/bin/env python
"""Throughput of RunInference with a small CNN on fixed-size images.

Variants (each in its own fresh Python process, same torch thread count):

* ``raw``       -- no Beam: ``model(torch.stack(batch))`` under ``no_grad`` on
                   the same images, ``--batch`` images per call.
* ``reference`` -- source | apache_beam.ml.inference RunInference(
                   PytorchModelHandlerTensor) | sink
* ``ours_overlap`` -- ``ours`` with ``overlap=True`` (model calls on a thread of their own;
                   the default for a CPU model is off)
* ``ours``      -- source | runinference RunInference(
                   PytorchModelHandlerTensor) | sink

Model: 2 conv layers (3->32->64, 3x3, ReLU, 2x2 max-pool each) + a linear
layer to 10 classes on 3xSxS float32 images (``--size`` S: 32 by default,
64 is issue 21's shape, committed as ``bench_cnn_64.json``); its ``state_dict`` is saved
to a temp dir and both handlers load it with ``model_class`` and
``state_dict_path``, batches fixed at ``--batch`` (min = max batch size).

Source: ``Impulse | FlatMap(range(N)) | Map(make_image)`` -- images made
inside the pipeline (a random base tensor made once per process, scaled per
element). Sink: a ``Map`` that bumps a Metrics counter (checked against N).
The runner is the DirectRunner's in-process FnApiRunner (as
``bench_sklearn.py``). Timings: wall clock from ``pipeline.run()`` to the
end of ``wait_until_finish()`` (start-up and model loading included); the
raw loop is timed over making each batch's images and the model call (no Beam).

    .venv/bin/python benchmarks/bench_cnn.py                       # 20k images, best of 1
    .venv/bin/python benchmarks/bench_cnn.py --n 5000 --repeat 3
    .venv/bin/python benchmarks/bench_cnn.py --size 64 --n 6000 --repeat 5 --update
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
VARIANTS = ("raw", "reference", "ours", "ours_overlap")
_NAMES = {32: "bench_cnn.json", 64: "bench_cnn_64.json"}  # per --size

_BASE = None


def _cnn_class():
  import torch
  from torch import nn

  class SmallCNN(nn.Module):
    def __init__(self, num_classes: int = 10, size: int = 32):
      super().__init__()
      self.features = nn.Sequential(
          nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
          nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
      self.head = nn.Linear(64 * (size // 4) ** 2, num_classes)

    def forward(self, x):
      return self.head(torch.flatten(self.features(x), 1))

  return SmallCNN


def make_image(i: int, size: int = 32):
  """A 3 x size x size image; the random base is made once per process,
  never captured in the pipeline."""
  global _BASE
  import torch
  if _BASE is None or _BASE.shape[-1] != size:
    _BASE = torch.rand((3, size, size),
                       generator=torch.Generator().manual_seed(0))
  return _BASE * ((i % 251 + 1) / 251.0)


def save_model(path: Path, size: int = 32) -> None:
  import torch
  torch.manual_seed(0)
  torch.save(_cnn_class()(size=size).state_dict(), path)


def _peak_rss_mb() -> float:
  with open("/proc/self/status") as f:
    for line in f:
      if line.startswith("VmHWM:"):
        return int(line.split()[1]) / 1024
  return float("nan")


def run_pipeline_variant(variant: str, n: int, batch: int, model_path: Path,
                         size: int = 32) -> dict:
  import apache_beam as beam
  from apache_beam.metrics.metric import Metrics, MetricsFilter

  if variant == "reference":
    from apache_beam.ml.inference.base import RunInference
    from apache_beam.ml.inference.pytorch_inference import PytorchModelHandlerTensor
  elif variant in ("ours", "ours_overlap"):
    sys.path.insert(0, str(REPO))
    from runinference.base import RunInference as _RunInference
    from runinference.pytorch_inference import PytorchModelHandlerTensor

    def RunInference(handler):  # noqa: N802
      # ours_overlap: model calls forced onto a thread of their own.
      return _RunInference(handler, **({"overlap": True}
                                        if variant == "ours_overlap" else {}))
  else:
    raise ValueError(variant)
  handler = PytorchModelHandlerTensor(
      state_dict_path=str(model_path), model_class=_cnn_class(),
      model_params={"size": size},
      min_batch_size=batch, max_batch_size=batch)

  counter = Metrics.counter("bench", "sunk")

  def sink(x):
    counter.inc()

  p = local_pipeline()
  _ = (p
       | "Impulse" >> beam.Impulse()
       | "Generate" >> beam.FlatMap(lambda _: range(n))
       | "MakeImage" >> beam.Map(make_image, size)
       | "RunInference" >> RunInference(handler)
       | "Sink" >> beam.Map(sink))
  t0 = time.perf_counter()
  result = p.run()
  result.wait_until_finish()
  dt = time.perf_counter() - t0
  sunk = result.metrics().query(MetricsFilter().with_name("sunk"))["counters"]
  got = sum(c.committed for c in sunk)
  out = {"seconds": dt, "elements": got, "img_per_s": n / dt,
         "peak_rss_mb": _peak_rss_mb()}
  if got != n:
    out["error"] = f"sink saw {got} elements, expected {n}"
  if variant == "ours":
    out["imported_apache_beam_ml_inference"] = any(
        m.startswith("apache_beam.ml.inference") for m in sys.modules)
  return out


def run_raw_variant(n: int, batch: int, model_path: Path, size: int = 32) -> dict:
  import torch
  model = _cnn_class()(size=size)
  model.load_state_dict(torch.load(model_path))
  model.eval()
  make_image(0, size)  # warm-up
  t0 = time.perf_counter()
  got = 0
  with torch.no_grad():
    for s in range(0, n, batch):
      # Images made per batch, as the pipelines make them per element:
      # holding all n images first (245 MB at n = 20,000) made the loop
      # slower than the pipelines, a cache effect, not a limit.
      images = [make_image(i, size) for i in range(s, min(n, s + batch))]
      got += len(model(torch.stack(images)))
  dt = time.perf_counter() - t0
  assert got == n
  return {"seconds": dt, "elements": n, "img_per_s": n / dt,
          "peak_rss_mb": _peak_rss_mb()}


def main(argv=None) -> int:
  ap = argparse.ArgumentParser(description="RunInference small-CNN throughput benchmark")
  ap.add_argument("--n", type=int, default=20_000, help="images (default 20000)")
  ap.add_argument("--batch", type=int, default=64, help="images per model call (default 64)")
  ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads in every variant")
  ap.add_argument("--size", type=int, default=32, choices=(32, 64),
                  help="image side (default 32; 64: issue 21's shape)")
  ap.add_argument("--repeat", type=int, default=1, help="runs per variant; best is kept")
  ap.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
  add_out_args(ap, "bench_cnn[_64].json")
  ap.add_argument("--_child", help=argparse.SUPPRESS)
  ap.add_argument("--_model", help=argparse.SUPPRESS)
  args = ap.parse_args(argv)

  if args._child:
    import torch
    torch.set_num_threads(args.threads)
    if args._child == "raw":
      res = run_raw_variant(args.n, args.batch, Path(args._model), args.size)
    else:
      res = run_pipeline_variant(args._child, args.n, args.batch,
                                 Path(args._model), args.size)
    res["torch_threads"] = torch.get_num_threads()
    print(json.dumps(res))
    return 0

  with tempfile.TemporaryDirectory(prefix="ri_bench_cnn_") as tmp:
    model_path = Path(tmp) / "cnn.pt"
    save_model(model_path, args.size)
    runs, best = run_variants(
        __file__, args.variants, args.repeat,
        ["--n", str(args.n), "--batch", str(args.batch), "--threads", str(args.threads),
         "--size", str(args.size),
         "--_model", str(model_path)],
        rate_key="img_per_s", unit="img/s")
  ips = {v: best[v].get("img_per_s") for v in best}
  ratios = pair_ratios(
      runs, best, [("ours", "raw"), ("reference", "raw"), ("ours", "reference"),
                   ("ours_overlap", "ours")], "img_per_s")
  import apache_beam
  import torch
  report = {
      "benchmark": "bench_cnn",
      **provenance(),
      "n": args.n, "batch": args.batch, "threads": args.threads, "repeat": args.repeat,
      "size": args.size,
      "runner": "DirectRunner (in-process FnApiRunner, direct_num_workers=1)",
      "model": f"CNN 3x{args.size}x{args.size} -> conv32 -> pool -> conv64 -> pool -> linear10, "
               "PytorchModelHandlerTensor(state_dict_path, model_class)",
      "versions": {"python": platform.python_version(), "apache_beam": apache_beam.__version__,
                   "torch": torch.__version__},
      "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                  "loadavg": os.getloadavg()},
      "results": best, "all_runs": runs, "img_per_s": ips, "ratios": ratios,
      "goal": "ours/raw >= 0.95",
  }
  print(f"\nRunInference small-CNN benchmark: n={args.n:,} images, batch {args.batch}, "
        f"{args.threads} torch threads, best of {args.repeat}, DirectRunner (FnApiRunner)")
  print(f"  {'variant':<12}{'seconds':>9}{'images/s':>12}{'peak RSS MB':>13}")
  for v in args.variants:
    b = best[v]
    if "error" in b:
      print(f"  {v:<12}{'error':>9}")
    else:
      print(f"  {v:<12}{b['seconds']:>9.2f}{b['img_per_s']:>12,.0f}{b['peak_rss_mb']:>13,.0f}")
  print()
  return finish(ratios, {"ours/raw": 0.95, "ours/raw (median of rounds)": 0.95},
                report, best, out_path(args, _NAMES[args.size]))


if __name__ == "__main__":
  sys.exit(main())
