#!/usr/bin/env python
"""The five-times-table story, end to end, with ``runinference``.

What ``make demo`` runs (``.venv/bin/python examples/demo.py --out demo_out``).

1. Set-up (seconds): train tiny linear models that learned their five and ten
   times tables -- scikit-learn ``LinearRegression`` (pickled) and a PyTorch
   ``LinearRegression(torch.nn.Module)`` (``state_dict`` saved as ``.pt``) --
   into ``<out>/models``, and write a keyed CSV of maths problems
   (``key,value`` rows: ``five,17`` asks "5 x 17?", ``ten,3`` asks "10 x 3?").
2. One Beam pipeline on the local (DirectRunner-family) runner reads the CSV
   with ``ReadFromText`` and runs four inference patterns side by side:

   * ``keyed``   -- ``KeyedModelHandler(SklearnModelHandlerNumpy(x5))``: every
     row goes to the x5 model, the key rides along;
   * ``routed``  -- ``KeyedModelHandler([KeyModelMapping(['five'], torch x5),
     KeyModelMapping(['ten'], torch x10)])``: the key picks the model;
   * ``ab``      -- A/B: model A (scikit-learn x5) and model B (PyTorch x5) on
     the same rows;
   * ``cascade`` -- x5 (scikit-learn), post-processing, then x10 (PyTorch):
     50 x value.

   Results are written as JSON lines (``WriteToText``) to ``<out>/results``.
3. A summary taken from the pipeline's metrics (records in/out per branch,
   inferences per model, batch sizes, latencies), then a self-check of every
   output line (prediction ~= 5x / 10x / 50x) and of the metrics. Exit status
   is non-zero when anything is wrong.

The same file runs against Apache Beam's own implementation with
``RUNINFERENCE_DEMO_BACKEND=beam`` -- the import prefix is the only difference.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import pickle
import random
import sys
import time
from pathlib import Path


# Beam logs a harmless "apitools not found" warning at import time when the GCP
# extras are absent; keep the demo output readable without hiding real warnings.
class _QuietBeamImportNoise(logging.Filter):
  NOISE = ("apitools not found",)

  def filter(self, record: logging.LogRecord) -> bool:
    msg = record.getMessage()
    return not any(n in msg for n in self.NOISE)


def _configure_logging(level: int = logging.WARNING) -> None:
  root = logging.getLogger()
  if not root.handlers:
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
  root.addFilter(_QuietBeamImportNoise())
  for h in root.handlers:
    h.addFilter(_QuietBeamImportNoise())


_configure_logging()

import numpy as np  # noqa: E402
import torch  # noqa: E402
from sklearn.linear_model import LinearRegression as SklearnLinearRegression  # noqa: E402

import apache_beam as beam  # noqa: E402
from apache_beam.metrics.metric import Metrics  # noqa: E402
from apache_beam.options.pipeline_options import PipelineOptions  # noqa: E402

if os.environ.get("RUNINFERENCE_DEMO_BACKEND", "runinference") == "beam":
  from apache_beam.ml.inference.base import KeyedModelHandler  # noqa: E402
  from apache_beam.ml.inference.base import KeyModelMapping  # noqa: E402
  from apache_beam.ml.inference.base import PredictionResult  # noqa: E402
  from apache_beam.ml.inference.base import RunInference  # noqa: E402
  from apache_beam.ml.inference.pytorch_inference import PytorchModelHandlerTensor  # noqa: E402
  from apache_beam.ml.inference.sklearn_inference import SklearnModelHandlerNumpy  # noqa: E402
  BACKEND = "apache_beam.ml.inference"
else:
  try:
    import runinference  # noqa: F401
  except ImportError:  # not installed: use the checkout this demo lives in
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
  from runinference.base import KeyedModelHandler  # noqa: E402
  from runinference.base import KeyModelMapping  # noqa: E402
  from runinference.base import PredictionResult  # noqa: E402
  from runinference.base import RunInference  # noqa: E402
  from runinference.pytorch_inference import PytorchModelHandlerTensor  # noqa: E402
  from runinference.sklearn_inference import SklearnModelHandlerNumpy  # noqa: E402
  BACKEND = "runinference"

BRANCHES = ("keyed", "routed", "ab_a", "ab_b", "cascade")
TABLES = {"five": 5.0, "ten": 10.0}


# ---------------------------------------------------------------------------
# 1. Set-up: models and data
# ---------------------------------------------------------------------------
class LinearRegression(torch.nn.Module):
  """The codelab's model: one linear layer, y = w x + b."""

  def __init__(self, input_dim: int = 1, output_dim: int = 1):
    super().__init__()
    self.linear = torch.nn.Linear(input_dim, output_dim)

  def forward(self, x):
    return self.linear(x)


TORCH_PARAMS = {"input_dim": 1, "output_dim": 1}


def train_models(model_dir: Path) -> dict[str, Path]:
  """Teach sklearn and torch models their x5 and x10 tables; returns paths."""
  model_dir.mkdir(parents=True, exist_ok=True)
  x = np.arange(0, 100, dtype=np.float32).reshape(-1, 1)
  paths = {}
  torch.manual_seed(0)
  for name, factor in TABLES.items():
    y = factor * x
    # scikit-learn: closed-form least squares, pickled.
    sk = SklearnLinearRegression().fit(x, y.ravel())
    p = model_dir / f"{name}_times_table_sklearn.pkl"
    with open(p, "wb") as fh:
      pickle.dump(sk, fh)
    paths[f"sklearn_{name}"] = p
    # PyTorch: a few L-BFGS steps on the same data, state_dict saved.
    model = LinearRegression(**TORCH_PARAMS)
    xt, yt = torch.from_numpy(x / 100.0), torch.from_numpy(y / 100.0)  # scaled
    opt = torch.optim.LBFGS(model.parameters(), lr=1.0, max_iter=100,
                            line_search_fn="strong_wolfe")

    def closure():
      opt.zero_grad()
      loss = torch.nn.functional.mse_loss(model(xt), yt)
      loss.backward()
      return loss

    for _ in range(5):
      opt.step(closure)
    # Training used inputs and targets both scaled by 1/100, so the weight is
    # already right and only the bias needs scaling back.
    with torch.no_grad():
      model.linear.bias.mul_(100.0)
    p = model_dir / f"{name}_times_table_torch.pt"
    torch.save(model.state_dict(), p)
    paths[f"torch_{name}"] = p
  return paths


def write_problems(path: Path, n_per_table: int, seed: int = 7) -> list[tuple[str, int]]:
  """A keyed CSV of maths problems: header ``key,value``; values unique per key."""
  rng = random.Random(seed)
  rows = [(key, v) for key in TABLES
          for v in rng.sample(range(1, 10 * n_per_table + 1), n_per_table)]
  rng.shuffle(rows)
  path.parent.mkdir(parents=True, exist_ok=True)
  with open(path, "w") as fh:
    fh.write("key,value\n")
    for k, v in rows:
      fh.write(f"{k},{v}\n")
  return rows


# ---------------------------------------------------------------------------
# 2. The pipeline
# ---------------------------------------------------------------------------
def parse_row(line: str) -> tuple[str, int]:
  key, value = line.split(",")
  Metrics.counter("demo", "rows_read").inc()
  return key.strip(), int(value)


def _scalar(x) -> float:
  if isinstance(x, torch.Tensor):
    return float(x.detach().reshape(-1)[0])
  return float(np.asarray(x).reshape(-1)[0])


class CountIn(beam.DoFn):
  """Identity that counts the records entering a branch."""

  def __init__(self, branch: str):
    self.branch = branch
    self.counter = Metrics.counter("demo", f"{branch}_in")

  def process(self, element):
    self.counter.inc()
    yield element


def to_json(branch: str):
  counter = Metrics.counter("demo", f"{branch}_out")

  def fmt(record: dict) -> str:
    counter.inc()
    return json.dumps(record, sort_keys=True)

  return fmt


def keyed_record(kv: tuple[str, PredictionResult], model: str) -> dict:
  key, pr = kv
  return {"key": key, "value": _scalar(pr.example), "prediction": _scalar(pr.inference),
          "model": model}


def routed_record(kv: tuple[str, PredictionResult]) -> dict:
  key, pr = kv
  value, pred = _scalar(pr.example), _scalar(pr.inference)
  # Which model answered is read off the answer itself, not the key, so the
  # per-model counts below really check the routing.
  factor = round(pred / value) if value else None
  model = {5: "torch_five", 10: "torch_ten"}.get(factor, f"unknown(x{factor})")
  return {"key": key, "value": value, "prediction": pred, "model": model}


def ab_record(pr: PredictionResult, model: str) -> dict:
  return {"value": _scalar(pr.example), "prediction": _scalar(pr.inference), "model": model}


def cascade_middle(kv: tuple[str, PredictionResult]) -> tuple[str, torch.Tensor]:
  """Post-processing between the two models: x5's answer becomes x10's input."""
  key, pr = kv
  return key, torch.tensor([_scalar(pr.inference)], dtype=torch.float32)


def cascade_record(kv: tuple[str, PredictionResult]) -> dict:
  key, pr = kv  # key is "<table>:<value>" so the original value travels along
  table, value = key.split(":")
  return {"key": table, "value": float(value), "stage1": _scalar(pr.example),
          "prediction": _scalar(pr.inference), "model": "sklearn_five>torch_ten"}


def make_handlers(models: dict[str, Path]) -> dict[str, object]:
  def sk(name):
    return SklearnModelHandlerNumpy(model_uri=str(models[f"sklearn_{name}"]))

  def pt(name):
    return PytorchModelHandlerTensor(
        state_dict_path=str(models[f"torch_{name}"]), model_class=LinearRegression,
        model_params=TORCH_PARAMS, device="CPU")

  return {
      "keyed": KeyedModelHandler(sk("five")),
      "routed": KeyedModelHandler([
          KeyModelMapping(["five"], pt("five")),
          KeyModelMapping(["ten"], pt("ten")),
      ]),
      "ab_a": sk("five"),
      "ab_b": pt("five"),
      "cascade_1": KeyedModelHandler(sk("five")),
      "cascade_2": KeyedModelHandler(pt("ten")),
  }


def make_runner(options: PipelineOptions):
  """The in-process portable runner the DirectRunner falls back to.

  ``--runner=DirectRunner`` first tries Prism, which downloads a binary from
  GitHub (impossible offline; slow otherwise) and then falls back to this same
  FnApiRunner. Constructing it directly, exactly as the DirectRunner does,
  skips the download attempt; the BundleBasedDirectRunner is ~5x slower.
  """
  from apache_beam.portability.api import beam_provision_api_pb2
  from apache_beam.runners.portability.fn_api_runner import fn_runner
  from apache_beam.runners.portability.portable_runner import JobServiceHandle
  encoded = JobServiceHandle.encode_pipeline_options(options.get_all_options())
  info = fn_runner.ExtendedProvisionInfo(
      beam_provision_api_pb2.ProvisionInfo(pipeline_options=encoded))
  return fn_runner.FnApiRunner(provision_info=info)


def build_pipeline(p: beam.Pipeline, csv_path: Path, results_dir: Path,
                   models: dict[str, Path]) -> None:
  mh = make_handlers(models)

  def sink(pcoll, branch):
    return (pcoll
            | f"{branch}: ToJson" >> beam.Map(to_json(branch))
            | f"{branch}: Write" >> beam.io.WriteToText(
                str(results_dir / branch), file_name_suffix=".jsonl",
                shard_name_template=""))

  problems = (p
              | "ReadProblems" >> beam.io.ReadFromText(str(csv_path), skip_header_lines=1)
              | "Parse" >> beam.Map(parse_row))

  # keyed: every row to the x5 model; the key rides along.
  keyed = (problems
           | "keyed: In" >> beam.ParDo(CountIn("keyed"))
           | "keyed: ToNumpy" >> beam.Map(
               lambda kv: (kv[0], np.array([kv[1]], dtype=np.float32)))
           | "RunInference[keyed]" >> RunInference(mh["keyed"])
           | "keyed: Record" >> beam.Map(keyed_record, model="sklearn_five"))
  sink(keyed, "keyed")

  # routed: the key picks the model (KeyModelMapping).
  routed = (problems
            | "routed: In" >> beam.ParDo(CountIn("routed"))
            | "routed: ToTensor" >> beam.Map(
                lambda kv: (kv[0], torch.tensor([kv[1]], dtype=torch.float32)))
            | "RunInference[routed]" >> RunInference(mh["routed"])
            | "routed: Record" >> beam.Map(routed_record))
  sink(routed, "routed")

  # A/B: both candidate models on the same rows.
  values = problems | "ab: Values" >> beam.Map(lambda kv: kv[1])
  ab_a = (values
          | "ab_a: In" >> beam.ParDo(CountIn("ab_a"))
          | "ab_a: ToNumpy" >> beam.Map(lambda v: np.array([v], dtype=np.float32))
          | "RunInference[ab_a]" >> RunInference(mh["ab_a"])
          | "ab_a: Record" >> beam.Map(ab_record, model="A:sklearn_five"))
  sink(ab_a, "ab_a")
  ab_b = (values
          | "ab_b: In" >> beam.ParDo(CountIn("ab_b"))
          | "ab_b: ToTensor" >> beam.Map(lambda v: torch.tensor([v], dtype=torch.float32))
          | "RunInference[ab_b]" >> RunInference(mh["ab_b"])
          | "ab_b: Record" >> beam.Map(ab_record, model="B:torch_five"))
  sink(ab_b, "ab_b")

  # cascade: x5, post-process, x10.
  cascade = (problems
             | "cascade: In" >> beam.ParDo(CountIn("cascade"))
             | "cascade: ToNumpy" >> beam.Map(
                 lambda kv: (f"{kv[0]}:{kv[1]}", np.array([kv[1]], dtype=np.float32)))
             | "RunInference[cascade_1]" >> RunInference(mh["cascade_1"])
             | "cascade: PostProcess" >> beam.Map(cascade_middle)
             | "RunInference[cascade_2]" >> RunInference(mh["cascade_2"])
             | "cascade: Record" >> beam.Map(cascade_record))
  sink(cascade, "cascade")


# ---------------------------------------------------------------------------
# 3. Metrics summary and self-check
# ---------------------------------------------------------------------------
RI_STEPS = ("keyed", "routed", "ab_a", "ab_b", "cascade_1", "cascade_2")


def _dist(d):
  """(count, sum, min, max) of a DistributionResult, tolerant of None."""
  if d is None:
    return (0, 0, None, None)
  return (d.count, d.sum, d.min, d.max)


def collect_metrics(result) -> dict:
  """Fold ``result.metrics().query()`` into per-branch / per-step figures."""
  q = result.metrics().query()
  out: dict = {"demo": {}, "steps": {s: {"namespace": None, "counters": {}, "dists": {}}
                                     for s in RI_STEPS}}

  def step_of(step_name: str):
    for s in RI_STEPS:
      if f"RunInference[{s}]" in step_name:
        return s
    return None

  for c in q["counters"]:
    val = c.committed if c.committed is not None else c.attempted
    if c.key.metric.namespace == "demo":
      out["demo"][c.key.metric.name] = out["demo"].get(c.key.metric.name, 0) + val
      continue
    s = step_of(c.key.step)
    if s:
      st = out["steps"][s]
      st["namespace"] = st["namespace"] or c.key.metric.namespace
      st["counters"][c.key.metric.name] = st["counters"].get(c.key.metric.name, 0) + val
  for d in q["distributions"]:
    s = step_of(d.key.step)
    if not s:
      continue
    val = d.committed if d.committed is not None else d.attempted
    st = out["steps"][s]
    st["namespace"] = st["namespace"] or d.key.metric.namespace
    cnt, tot, mn, mx = _dist(val)
    prev = st["dists"].get(d.key.metric.name)
    if prev:
      cnt, tot = cnt + prev[0], tot + prev[1]
      mn = min(x for x in (mn, prev[2]) if x is not None) if (mn, prev[2]) != (None, None) else None
      mx = max(x for x in (mx, prev[3]) if x is not None) if (mx, prev[3]) != (None, None) else None
    st["dists"][d.key.metric.name] = (cnt, tot, mn, mx)
  return out


def _mean(d):
  return (d[1] / d[0]) if d and d[0] else None


def _fmt(x, spec=".1f"):
  return "-" if x is None else format(x, spec)


def print_table(title: str, header: list[str], rows: list[list[str]]) -> None:
  try:
    from rich.console import Console
    from rich.table import Table
  except ImportError:
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    print(f"\n{title}")
    print("  " + "  ".join(str(h).ljust(w) for h, w in zip(header, widths)))
    print("  " + "  ".join("-" * w for w in widths))
    for r in rows:
      print("  " + "  ".join(str(c).ljust(w) for c, w in zip(r, widths)))
    return
  console = Console()
  if not console.is_terminal:  # piped / captured: don't squeeze into 80 columns
    console = Console(width=160)
  console.print(f"\n[bold]{title}[/bold]")
  t = Table()
  for h in header:
    t.add_column(h, no_wrap=True)
  for r in rows:
    t.add_row(*[str(c) for c in r])
  console.print(t)


def summarize(metrics: dict, routed_models: dict[str, int] | None = None) -> None:
  demo = metrics["demo"]
  print_table(
      "Records per branch (demo counters)",
      ["branch", "in", "out"],
      [[b, demo.get(f"{b}_in" if b != "cascade" else "cascade_in", 0),
        demo.get(f"{b}_out", 0)] for b in BRANCHES])
  rows = []
  for s in RI_STEPS:
    st = metrics["steps"][s]
    c, d = st["counters"], st["dists"]
    bs = d.get("inference_request_batch_size")
    lat = d.get("inference_batch_latency_micro_secs")
    load = d.get("load_model_latency_milli_secs")
    size = d.get("model_byte_size")
    rows.append([s, st["namespace"] or "-", c.get("num_inferences", 0),
                 c.get("failed_batches_counter", 0),
                 bs[0] if bs else 0, _fmt(_mean(bs)), _fmt(bs[3] if bs else None, "d"),
                 _fmt(_mean(lat), ".0f"), _fmt(_mean(load), ".0f"),
                 _fmt(size[3] if size else None, "d")])
  print_table("RunInference metrics per step",
              ["step", "namespace", "inferences", "failed batches", "batches",
               "batch mean", "batch max", "latency us/batch", "load ms",
               "model bytes"], rows)
  # Per-model counts of the routed (KeyModelMapping) handler: '<key>-_num_inferences'.
  per_model = routed_cohort_counts(metrics)
  if per_model:
    print_table("Routed (KeyModelMapping) inferences per model cohort "
                "(metric '<key>-_num_inferences')",
                ["cohort key", "inferences"], sorted([k, v] for k, v in per_model.items()))
  elif routed_models:
    print_table("Routed (KeyModelMapping) inferences per model (counted from the output; "
                "no per-cohort metrics were reported)",
                ["model", "inferences"], sorted([k, v] for k, v in routed_models.items()))


def routed_cohort_counts(metrics: dict) -> dict[str, int]:
  """Per-cohort counters of a multi-model KeyedModelHandler: '<key>-_num_inferences'."""
  suffix = "-_num_inferences"
  return {name[:-len(suffix)]: v
          for name, v in metrics["steps"]["routed"]["counters"].items()
          if name.endswith(suffix)}


def _close(pred: float, expected: float) -> bool:
  return abs(pred - expected) <= 1e-3 * max(1.0, abs(expected)) + 1e-2


def verify(results_dir: Path, rows: list[tuple[str, int]], metrics: dict,
           warnings: list[str]) -> list[str]:
  """Checks every output line and the metrics; returns a list of problems
  (and appends softer findings to ``warnings``)."""
  problems: list[str] = []
  n = len(rows)
  expected_rows = sorted((k, float(v)) for k, v in rows)

  def load(branch):
    path = results_dir / f"{branch}.jsonl"
    if not path.exists():
      problems.append(f"{branch}: output {path} missing")
      return []
    with open(path) as fh:
      return [json.loads(line) for line in fh if line.strip()]

  out = {b: load(b) for b in BRANCHES}
  for b, recs in out.items():
    if len(recs) != n:
      problems.append(f"{b}: {len(recs)} output records, expected {n}")

  def check(branch, recs, factor_of):
    bad = [r for r in recs if not _close(r["prediction"], factor_of(r) * r["value"])]
    if bad:
      problems.append(f"{branch}: {len(bad)} wrong predictions, e.g. {bad[0]}")

  check("keyed", out["keyed"], lambda r: 5.0)
  check("routed", out["routed"], lambda r: TABLES[r["key"]])
  check("ab_a", out["ab_a"], lambda r: 5.0)
  check("ab_b", out["ab_b"], lambda r: 5.0)
  check("cascade", out["cascade"], lambda r: 50.0)
  bad = [r for r in out["cascade"] if not _close(r["stage1"], 5.0 * r["value"])]
  if bad:
    problems.append(f"cascade: {len(bad)} wrong stage-1 answers, e.g. {bad[0]}")
  for b in ("keyed", "routed", "cascade"):
    got = sorted((r["key"], r["value"]) for r in out[b])
    if out[b] and got != expected_rows:
      problems.append(f"{b}: keys/values in the output differ from the input")
  # A/B: the two candidates should agree on every value.
  a = {r["value"]: r["prediction"] for r in out["ab_a"]}
  b_ = {r["value"]: r["prediction"] for r in out["ab_b"]}
  worst = max((abs(a[v] - b_[v]) for v in a.keys() & b_.keys()), default=0.0)
  if worst > 1e-3 * 10 * max(v for _, v in rows) + 1e-2:
    problems.append(f"ab: models A and B disagree by up to {worst}")

  # Metrics: inferences == records for every RunInference step.
  demo = metrics["demo"]
  if demo.get("rows_read", 0) != n:
    problems.append(f"metrics: rows_read={demo.get('rows_read')} expected {n}")
  for s in RI_STEPS:
    got = metrics["steps"][s]["counters"].get("num_inferences")
    if got != n:
      problems.append(f"metrics: {s} num_inferences={got}, expected {n}")
    bs = metrics["steps"][s]["dists"].get("inference_request_batch_size")
    if not bs or bs[1] != n:
      problems.append(f"metrics: {s} inference_request_batch_size sum="
                      f"{bs[1] if bs else None}, expected {n}")
  # Per-cohort counters ('five-_num_inferences', ...) as Beam reports them for a
  # KeyedModelHandler over KeyModelMappings. Wrong values fail the check; their
  # absence is only a warning (the per-model split is then taken from the output).
  per_model = routed_cohort_counts(metrics)
  want = {k: sum(1 for kk, _ in rows if kk == k) for k in TABLES}
  if per_model and per_model != want:
    problems.append(f"metrics: routed per-model counts {per_model}, expected {want}")
  elif not per_model:
    warnings.append("metrics: no per-cohort counters ('<key>-_num_inferences') reported "
                    "for the KeyModelMapping step (Beam reports them)")
  return problems


def show_samples(results_dir: Path, k: int = 3) -> None:
  def first(branch):
    with open(results_dir / f"{branch}.jsonl") as fh:
      return [json.loads(next(fh)) for _ in range(k)]

  print("\nA few answers:")
  for r in first("keyed"):
    print(f"  keyed    [{r['key']:>4}]  5 x {r['value']:g} = {r['prediction']:.2f}  ({r['model']})")
  for r in first("routed"):
    f = int(TABLES[r["key"]])
    print(f"  routed   [{r['key']:>4}] {f:2d} x {r['value']:g} = {r['prediction']:.2f}  ({r['model']})")
  for r in first("cascade"):
    print(f"  cascade  [{r['key']:>4}] 10 x (5 x {r['value']:g} = {r['stage1']:.2f}) "
          f"= {r['prediction']:.2f}")


def _routed_models_from_output(results_dir: Path) -> dict[str, int]:
  counts: dict[str, int] = {}
  path = results_dir / "routed.jsonl"
  if path.exists():
    with open(path) as fh:
      for line in fh:
        if line.strip():
          m = json.loads(line)["model"]
          counts[m] = counts.get(m, 0) + 1
  return counts


def run_demo(out: Path, n_per_table: int = 100, quiet: bool = False,
             runner: str = "fnapi") -> dict:
  """Runs set-up, pipeline, summary and checks.

  Returns a dict with ``problems`` (empty when every check passed),
  ``warnings``, ``rows``, ``metrics``, ``results_dir`` and timings.
  """
  say = (lambda *a, **k: None) if quiet else print
  out = Path(out)
  t0 = time.perf_counter()
  models = train_models(out / "models")
  rows = write_problems(out / "problems.csv", n_per_table)
  results_dir = out / "results"
  results_dir.mkdir(parents=True, exist_ok=True)
  for b in BRANCHES:
    (results_dir / f"{b}.jsonl").unlink(missing_ok=True)
  t_setup = time.perf_counter() - t0
  say(f"runinference demo ({BACKEND}): {len(models)} models trained in {out / 'models'}, "
      f"{len(rows)} problems in {out / 'problems.csv'} ({t_setup:.1f}s)")

  options = PipelineOptions(["--runner=DirectRunner", "--direct_num_workers=1",
                             "--direct_running_mode=in_memory"])
  if runner == "fnapi":
    runner_obj = make_runner(options)
  elif runner == "bundle":
    from apache_beam.runners.direct.direct_runner import BundleBasedDirectRunner
    runner_obj = BundleBasedDirectRunner()
  else:  # "direct": let the DirectRunner pick (tries Prism first)
    runner_obj = None
  t1 = time.perf_counter()
  p = beam.Pipeline(runner=runner_obj, options=options)
  build_pipeline(p, out / "problems.csv", results_dir, models)
  result = p.run()
  result.wait_until_finish()
  t_pipe = time.perf_counter() - t1
  metrics = collect_metrics(result)
  say(f"pipeline ({type(runner_obj or result).__name__ if runner_obj else 'DirectRunner'}) "
      f"finished in {t_pipe:.1f}s; results in {results_dir}/*.jsonl")
  warnings: list[str] = []
  problems = verify(results_dir, rows, metrics, warnings)
  if not quiet:
    summarize(metrics, _routed_models_from_output(results_dir))
    if not problems:
      show_samples(results_dir)
    for w in warnings:
      print(f"\nwarning: {w}")
  return {"rows": rows, "metrics": metrics, "problems": problems, "warnings": warnings,
          "results_dir": results_dir, "setup_s": t_setup, "pipeline_s": t_pipe}


def main(argv=None) -> int:
  ap = argparse.ArgumentParser(description="runinference five-times-table demo")
  ap.add_argument("--out", default="demo_out", help="output folder (models, CSV, results)")
  ap.add_argument("--n", type=int, default=100, help="problems per times table")
  ap.add_argument("--runner", choices=("fnapi", "direct", "bundle"), default="fnapi",
                  help="fnapi (default): the DirectRunner's in-process FnApiRunner, built "
                       "directly; direct: --runner=DirectRunner as is (tries Prism first); "
                       "bundle: BundleBasedDirectRunner (slow)")
  ap.add_argument("--quiet", action="store_true")
  args = ap.parse_args(argv)
  res = run_demo(Path(args.out), n_per_table=args.n, quiet=args.quiet, runner=args.runner)
  if res["problems"]:
    print("\nFAILED self-check:", file=sys.stderr)
    for pr in res["problems"]:
      print(f"  - {pr}", file=sys.stderr)
    return 1
  print(f"\nOK: all {len(BRANCHES)} outputs x {len(res['rows'])} records verified "
        f"(5x / 10x / 50x within tolerance; metrics consistent) "
        f"in {res['setup_s'] + res['pipeline_s']:.1f}s.")
  return 0


if __name__ == "__main__":
  sys.exit(main())
