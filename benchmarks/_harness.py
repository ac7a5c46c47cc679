"""What the throughput benchmarks share: each variant runs in a fresh Python
process (``script --_child VARIANT ...`` prints one JSON line), best of N."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def run_child(script: str, variant: str, child_args: list[str],
              python: str | None = None) -> dict:
  cmd = [python or sys.executable, script, "--_child", variant, *child_args]
  proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
  for line in reversed(proc.stdout.splitlines()):
    if line.startswith("{"):
      return json.loads(line)
  tail = (proc.stderr or proc.stdout).strip().splitlines()[-15:]
  return {"error": f"exit {proc.returncode}: " + "\n".join(tail)}


def run_variants(script: str, variants, repeat: int, child_args: list[str],
                 rate_key: str, unit: str,
                 pythons: dict | None = None) -> tuple[dict, dict]:
  """Runs every variant ``repeat`` times, alternating, printing each run;
  returns ``(runs, best)`` where ``best`` is each variant's fastest run by
  ``rate_key`` (or its last error). ``pythons``: the interpreter of a
  variant that runs in another virtualenv (e.g. the reference's)."""
  runs: dict[str, list[dict]] = {v: [] for v in variants}
  for r in range(repeat):
    for v in variants:
      res = run_child(script, v, child_args, (pythons or {}).get(v))
      runs[v].append(res)
      if "error" in res:
        print(f"  {v:<10} ERROR {res['error']}", flush=True)
      else:
        print(f"  {v:<10} run {r + 1}: {res['seconds']:7.2f}s  "
              f"{res[rate_key]:>13,.0f} {unit}", flush=True)
  best = {}
  for v, rs in runs.items():
    ok = [x for x in rs if "error" not in x]
    best[v] = max(ok, key=lambda x: x[rate_key]) if ok else rs[-1]
  return runs, best


def ratio(a, b):
  return None if not a or not b else a / b


def paired(runs: dict, num: str, den: str, rate_key: str):
  """The median over rounds of ``num``'s rate over ``den``'s in the same
  round (runs alternate, so a round's two runs share the machine's state):
  steadier than a ratio of bests on a machine whose speed drifts."""
  import statistics
  pairs = [ratio(a.get(rate_key), b.get(rate_key))
           for a, b in zip(runs.get(num, []), runs.get(den, []))
           if "error" not in a and "error" not in b]
  pairs = [x for x in pairs if x is not None]
  return statistics.median(pairs) if pairs else None


def pair_ratios(runs: dict, best: dict, pairs, rate_key: str) -> dict:
  """``num/den`` for each pair of variants: the ratio of their best runs,
  and (``... (median of rounds)``) the median of their same-round ratios."""
  out = {}
  for num, den in pairs:
    out[f"{num}/{den}"] = ratio(best.get(num, {}).get(rate_key),
                                best.get(den, {}).get(rate_key))
    out[f"{num}/{den} (median of rounds)"] = paired(runs, num, den, rate_key)
  return out


def finish(ratios: dict, goals: dict, report: dict, best: dict, out) -> int:
  """Prints the ratios (with each goal met or not), writes ``report`` as JSON
  to ``out``; exit status 1 if a variant failed."""
  import json
  from pathlib import Path
  for k, val in ratios.items():
    if val is None:
      continue
    flag = ""
    if k in goals:
      met = "met)" if val >= goals[k] else "NOT met)"
      flag = f"  (goal >= {goals[k]:.2f}: {met}"
    print(f"  {k:<16}{val:6.2f}x{flag}")
  Path(out).parent.mkdir(parents=True, exist_ok=True)
  Path(out).write_text(json.dumps(report, indent=1) + "\n")
  print(f"\nwritten to {out}")
  return 1 if any("error" in b for b in best.values()) else 0


def timed_run(pipeline, counter: str) -> tuple[float, int]:
  """Runs ``pipeline``; returns the seconds from ``run()`` to the end of
  ``wait_until_finish()`` and the committed total of the ``counter`` metric
  (what the sink counted)."""
  import time
  from apache_beam.metrics.metric import MetricsFilter
  t0 = time.perf_counter()
  result = pipeline.run()
  result.wait_until_finish()
  seconds = time.perf_counter() - t0
  got = sum(c.committed for c in result.metrics().query(
      MetricsFilter().with_name(counter))["counters"])
  return seconds, got


def local_pipeline():
  """A Pipeline on the DirectRunner's in-process FnApiRunner (one worker),
  built the way the DirectRunner builds it: ``--runner=DirectRunner`` alone
  would first try to download the Prism binary."""
  import apache_beam as beam
  from apache_beam.options.pipeline_options import PipelineOptions
  from apache_beam.portability.api import beam_provision_api_pb2
  from apache_beam.runners.portability.fn_api_runner import fn_runner
  from apache_beam.runners.portability.portable_runner import JobServiceHandle
  options = PipelineOptions(["--runner=DirectRunner", "--direct_num_workers=1",
                             "--direct_running_mode=in_memory"])
  encoded = JobServiceHandle.encode_pipeline_options(options.get_all_options())
  runner = fn_runner.FnApiRunner(provision_info=fn_runner.ExtendedProvisionInfo(
      beam_provision_api_pb2.ProvisionInfo(pipeline_options=encoded)))
  return beam.Pipeline(runner=runner, options=options)


# --- provenance and where results go (added for the README's generated table) --

RESULTS = REPO / "benchmarks" / "results"


def commit() -> str:
  """The checkout's short commit, ``-dirty`` when the tree has changes;
  ``"unknown"`` outside git."""
  import subprocess

  def git(*args):
    return subprocess.run(["git", *args], capture_output=True, text=True,
                          cwd=REPO).stdout.strip()
  try:
    head = git("rev-parse", "--short", "HEAD")
  except OSError:
    return "unknown"
  if not head:
    return "unknown"
  return head + ("-dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def provenance() -> dict:
  """``{"when": UTC time, "commit": ...}`` for a results JSON."""
  import datetime
  now = datetime.datetime.now(datetime.timezone.utc)
  return {"when": now.strftime("%Y-%m-%d %H:%M:%S UTC"), "commit": commit()}


def add_out_args(parser, name: str) -> None:
  """``--out PATH`` (default: a scratch file ``/tmp/NAME``) and ``--update``
  (write the committed ``benchmarks/results/NAME`` instead)."""
  import tempfile
  parser.add_argument("--out", default=None,
                      help=f"results JSON (default {Path(tempfile.gettempdir()) / name})")
  parser.add_argument("--update", action="store_true",
                      help=f"write the committed benchmarks/results/{name}")


def out_path(args, name: str) -> Path:
  """Where ``add_out_args``' options say the results go: ``results/NAME``
  with ``--update``, else ``--out``, else ``/tmp/NAME``."""
  import tempfile
  if getattr(args, "update", False):
    return RESULTS / name
  return Path(args.out) if args.out else Path(tempfile.gettempdir()) / name


def paired_keys(runs: dict, num: str, den: str, num_key: str, den_key: str):
  """``paired`` for two different rate keys (e.g. a pipeline's ``rows_per_s``
  against the raw variant's ``chunked_rows_per_s``)."""
  import statistics
  pairs = [ratio(a.get(num_key), b.get(den_key))
           for a, b in zip(runs.get(num, []), runs.get(den, []))
           if "error" not in a and "error" not in b]
  pairs = [x for x in pairs if x is not None]
  return statistics.median(pairs) if pairs else None
