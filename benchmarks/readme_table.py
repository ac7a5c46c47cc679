#!/usr/bin/env python
"""The README's table of measured speed, generated from the committed results
in ``benchmarks/results/*.json``.

    .venv/bin/python benchmarks/readme_table.py            # print the table
    .venv/bin/python benchmarks/readme_table.py --write    # put it in README.md
    .venv/bin/python benchmarks/readme_table.py --check    # exit 1 (with a diff) if README.md is stale

The headline of a row is the MEDIAN OF SAME-ROUND RATIOS, recomputed here from
the runs a file holds (round i of one variant against round i of the other:
the scripts alternate variants, so a round's runs share the machine's state).
Where a file holds no per-round runs, the cell says what the number is instead
(a median the script stored, a single run, a ratio of bests). Rows where we
trail (a ratio under 1 against the reference, or a goal not met) are shown
like the others. Dates and commits are what the file records, "not recorded"
where it records none.
"""
from __future__ import annotations

import argparse
import difflib
import json
import re
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
README = REPO / "README.md"
START = "<!-- measured-table:start -->"
END = "<!-- measured-table:end -->"


# --- numbers -----------------------------------------------------------------

def _rate(run, key):
  if not isinstance(run, dict) or "error" in run:
    return None
  val = run.get(key)
  return val if isinstance(val, (int, float)) and val > 0 else None


def same_round_ratios(num_runs, den_runs, num_key, den_key=None):
  """Ratio of round i of ``num_runs`` to round i of ``den_runs`` (rounds
  where either failed are left out)."""
  out = []
  for a, b in zip(num_runs or [], den_runs or []):
    x, y = _rate(a, num_key), _rate(b, den_key or num_key)
    if x is not None and y is not None:
      out.append(x / y)
  return out


def describe(ratios):
  """(value, how) for a list of same-round ratios."""
  if not ratios:
    return None, "no runs"
  if len(ratios) == 1:
    return ratios[0], "single run"
  return statistics.median(ratios), f"median of {len(ratios)} same-round ratios"


def headline(doc: dict, num: str, den: str, rate_key: str,
             num_key: str | None = None, den_key: str | None = None):
  """``num``/``den`` of a results file in the common layout (``all_runs``:
  variant -> list of runs; ``ratios``; ``repeat``): (value, how).

  With per-round runs: the median of same-round ratios. Without: the
  script's stored ``"num/den (median of rounds)"`` if it has one, else its
  ratio of bests, said as such ("best of N" or "single run")."""
  runs = doc.get("all_runs") or {}
  if runs.get(num) and runs.get(den):
    return describe(same_round_ratios(runs[num], runs[den], num_key or rate_key,
                                      den_key or rate_key))
  stored = doc.get("ratios") or {}
  med = stored.get(f"{num}/{den} (median of rounds)")
  if med is not None:
    return med, "median of same-round ratios as stored (runs not in the file)"
  best = stored.get(f"{num}/{den}")
  if best is not None:
    n = doc.get("repeat")
    if n == 1:
      return best, "single run"
    return best, f"ratio of bests, best of {n}" if n else "ratio of bests (rounds not recorded)"
  return None, "not measured"


def parse_goals(text) -> dict:
  """``'ours/noop >= 0.8'``, ``'a/b >= 2, c/d >= 0.8'`` -> ``{pair: bound}``."""
  if isinstance(text, (int, float)):
    return {"": float(text)}
  return {m.group(1): float(m.group(2))
          for m in re.finditer(r"([\w]+/[\w]+)\s*>=\s*([\d.]+)", text or "")}


def num(val) -> str:
  return f"{val:.0f}" if val >= 100 else f"{val:.1f}" if val >= 10 else f"{val:.2f}"


def x(val) -> str:
  return "—" if val is None else f"{num(val)}x"


def span(vals) -> str:
  vals = [v for v in vals if v is not None]
  if not vals:
    return "—"
  lo, hi = min(vals), max(vals)
  return x(lo) if num(lo) == num(hi) else f"{num(lo)}-{num(hi)}x"


def trail(val, against_reference=True) -> str:
  return " (**we trail**)" if against_reference and val is not None and val < 1 else ""


def parts(*items) -> str:
  """``(value, label[, against_reference])`` -> ``"1.20x label; ..."``,
  leaving out what the file does not have."""
  out = [f"{x(it[0])} {it[1]}{trail(it[0]) if len(it) > 2 and it[2] else ''}"
         for it in items if it[0] is not None]
  return "; ".join(out) or "—"


def goal_cell(goals: dict, values: dict) -> str:
  if not goals:
    return "not recorded"
  parts = []
  for pair, bound in goals.items():
    val = values.get(pair)
    met = "—" if val is None else ("met" if val >= bound else "**not met**")
    parts.append(f"{pair} ≥ {bound:g}: {met}")
  return "; ".join(parts)


def when(doc: dict, name: str) -> str:
  date = doc.get("when") or doc.get("date")
  date = str(date).replace("T", " ")[:16] if date else "date not recorded"
  commit = doc.get("commit") or "commit not recorded"
  return f"`{name}`: {date}, {commit}"


def load(name: str, results: Path):
  path = results / name
  return json.loads(path.read_text()) if path.exists() else None


# --- rows --------------------------------------------------------------------
# Each returns a dict of cells, or None when its file is absent.

def row_sklearn(results):
  d = load("bench_sklearn.json", results)
  if d is None:
    return None
  noop, how = headline(d, "ours", "noop", "el_per_s")
  ref, _ = headline(d, "ours", "reference", "el_per_s")
  return {"workload": "RunInference, scikit-learn `LinearRegression`",
          "data": f"{d.get('n', 0):,} rows x 4 float64 features",
          "against": "no-op `beam.Map` pipeline; reference RunInference",
          "headline": parts((noop, "no-op"), (ref, "reference", True)),
          "how": how,
          "goal": goal_cell(parse_goals(d.get("goal")), {"ours/noop": noop}),
          "when": when(d, "bench_sklearn.json")}


def row_cnn(results):
  d = load("bench_cnn.json", results)
  if d is None:
    return None
  raw, how = headline(d, "ours", "raw", "img_per_s")
  ref, _ = headline(d, "ours", "reference", "img_per_s")
  big = load("bench_cnn_64.json", results)  # the second data shape (issue 21's)
  raw64 = headline(big, "ours", "raw", "img_per_s")[0] if big else None
  ref64 = headline(big, "ours", "reference", "img_per_s")[0] if big else None
  seen = [v for v in (raw, raw64) if v is not None]
  data = f"{d.get('n', 0):,} images 3x32x32"
  if big:
    data += f", {big.get('n', 0):,} images 3x64x64"
  return {"workload": "RunInference, PyTorch CNN (2 conv + linear)",
          "data": f"{data}, batches of {d.get('batch')}",
          "against": "raw model loop (no Beam); reference RunInference",
          "headline": parts((raw, "raw, 32x32"), (ref, "reference, 32x32", True),
                            (raw64, "raw, 64x64"), (ref64, "reference, 64x64", True)),
          "how": how,
          "goal": goal_cell(parse_goals(d.get("goal")),
                            {"ours/raw": min(seen, default=None)}),
          "when": when(d, "bench_cnn.json") + (
              "; " + when(big, "bench_cnn_64.json") if big else "")}


def row_columnar(results):
  d = load("bench_columnar.json", results)
  if d is None:
    return None
  per_row, how = headline(d, "columnar", "ours", "rows_per_s")
  ref, _ = headline(d, "columnar", "reference", "rows_per_s")
  raw, _ = headline(d, "columnar", "raw", "rows_per_s", den_key="chunked_rows_per_s")
  return {"workload": "`RunInferenceColumnar`, `LinearRegression`",
          "data": f"{d.get('n', 0):,} rows x 4 features, {d.get('chunk', 0):,}-row Arrow chunks",
          "against": "our per-row RunInference; reference (per row); raw `predict` on the same chunks",
          "headline": parts((per_row, "per-row"), (ref, "reference", True), (raw, "raw")),
          "how": how, "goal": goal_cell(parse_goals(d.get("goal")), {}),
          "when": when(d, "bench_columnar.json")}


def row_columnar_hgb(results):
  d = load("bench_columnar_hgb.json", results)
  if d is None:
    return None
  shapes = d.get("shapes") or [d]
  found, how = [], None
  for shape in shapes:  # defaults: each data shape against raw predict
    val, shape_how = headline(shape, "columnar", "raw", "rows_per_s",
                              den_key="chunked_rows_per_s")
    how = how or shape_how
    found.append((val, f"defaults, {shape.get('chunk', 0):,}-row chunks"))
  merged, _ = headline(d, "columnar_merged", "raw", "rows_per_s",
                       den_key="chunked_rows_per_s")
  sizes = " and ".join(f"{s.get('chunk', 0):,}" for s in shapes)
  worst = [v for v, _ in found if v is not None]
  return {"workload": "`RunInferenceColumnar`, `HistGradientBoostingRegressor` (100 trees)",
          "data": f"{d.get('n', 0):,} rows x 8 features, {sizes}-row chunks",
          "against": "raw `predict` on the same chunks",
          "headline": parts(*found, (merged, f"`rows_per_call=65536`, "
                                             f"{d.get('chunk', 0):,}-row chunks")),
          "how": how, "goal": goal_cell(parse_goals(d.get("goal")),
                                        {"columnar/raw": min(worst, default=None)}),
          "when": when(d, "bench_columnar_hgb.json")}


def row_text(results):
  d = load("bench_text.json", results)
  if d is None:
    return None
  raw, how = headline(d, "ours", "raw", "rate")
  ref, _ = headline(d, "ours", "reference", "rate")
  tech = load("bench_text_technical.json", results)  # the second data shape
  raw_t = headline(tech, "ours", "raw", "rate")[0] if tech else None
  seen = [v for v in (raw, raw_t) if v is not None]
  words = "plain and technical words" if tech else "plain words"
  return {"workload": "RunInference, all-MiniLM-L6-v2 (`HuggingFacePipelineModelHandler`)",
          "data": f"{d.get('n', 0):,} ragged sentences, {words}",
          "against": "sentence-transformers `encode`; reference RunInference",
          "headline": parts((raw, "`encode`, plain"), (raw_t, "`encode`, technical"),
                            (ref, "reference", True)),
          "how": how, "goal": goal_cell(parse_goals(d.get("goal")),
                                        {"ours/raw": min(seen, default=None)}),
          "when": when(d, "bench_text.json") + (
              "; " + when(tech, "bench_text_technical.json") if tech else "")}


def row_embeddings(results):
  d = load("bench_mltransform_embeddings.json", results)
  if d is None:
    return None
  vals, hows, sizes = {}, set(), d.get("sizes") or {}
  for dist, by in (d.get("runs") or {}).items():
    val, how = describe(same_round_ratios(by.get("default"), by.get("encode"), "rate"))
    vals[dist] = val
    hows.add(how)
  goal = d.get("goal")
  met = [k for k, v in vals.items() if v is not None and goal is not None and v >= goal]
  goal_txt = "not recorded" if goal is None else (
      f"≥ {goal:g}: " + ("met" if len(met) == len(vals) else
                         f"**not met** on {', '.join(k for k in vals if k not in met)}"))
  return {"workload": "MLTransform `SentenceTransformerEmbeddings`, all-MiniLM-L6-v2",
          "data": ", ".join(f"{k} ({sizes.get(k, 0):,} sentences)" for k in vals),
          "against": "sentence-transformers `encode`",
          "headline": parts(*((v, k) for k, v in vals.items())),
          "how": " / ".join(sorted(hows)), "goal": goal_txt,
          "when": when(d, "bench_mltransform_embeddings.json")}


def rows_mltransform(results, name):
  d = load(name, results)
  if d is None:
    return []
  out = []
  cases = d.get("cases") or {}
  for mode in ("write", "read"):
    ref_vals, noop_vals, hows, met = [], [], set(), 0
    for case in cases.values():
      runs = case.get("runs") or {}
      val, how = describe(same_round_ratios(runs.get(f"ours_{mode}"),
                                            runs.get(f"reference_{mode}"), "rows_per_s"))
      ref_vals.append(val)
      hows.add(how)
      noop, _ = describe(same_round_ratios(runs.get(f"ours_{mode}"),
                                           runs.get("noop_write"), "rows_per_s"))
      noop_vals.append(noop)
      met += (case.get("summary") or {}).get(mode, {}).get("goal") == "met"
    rows = sorted({c.get("rows", 0) for c in cases.values()})
    shapes = sorted({c.get("shape") for c in cases.values()})
    sources = sorted({c.get("source") for c in cases.values()})
    goal = d.get("goal")
    out.append({
        "workload": f"MLTransform {mode} mode (z-score, 0-1, bucketize, vocabulary)",
        "data": f"{len(cases)} cases: {'/'.join(shapes)} x source {'/'.join(sources)}, "
                f"{', '.join(f'{r:,}' for r in rows)} rows",
        "against": "reference (Beam on tensorflow-transform); the same pipeline without MLTransform",
        "headline": f"{span(ref_vals)} reference{trail(min(filter(None, ref_vals), default=None))}; "
                    f"{span(noop_vals)} no-op",
        "how": " / ".join(sorted(hows)) + ", per case; range over cases",
        "goal": "not recorded" if not goal else
                f"{goal.replace('>=', '≥').replace('<=', '≤')}: met in {met} of {len(cases)}",
        "when": when(d, name)})
  return out


def rows_remote(results):
  out = []
  for name, setting in (("bench_remote.json", "plain loopback"),
                        ("bench_remote_latency20.json", "+20 ms per request")):
    d = load(name, results)
    if d is None:
      continue
    ref, how = headline(d, "ours", "reference", "el_per_s")
    loop, _ = headline(d, "ours", "loop", "el_per_s")
    out.append({
        "workload": f"remote inference, MLflow server, {setting}",
        "data": f"{d.get('n', 0):,} rows, {d.get('batch')} per request, "
                f"{d.get('concurrency')} concurrent",
        "against": "reference `RemoteModelHandler`; a threaded client loop (no Beam)",
        "headline": parts((ref, "reference", True), (loop, "loop")),
        "how": how,
        "goal": goal_cell(parse_goals(d.get("goal")), {"ours/reference": ref, "ours/loop": loop}),
        "when": when(d, name)})
  return out


def row_scale(results):
  """2 Dask workers against 1 (every workload) and against the in-process
  DirectRunner (the hgb sizes, whose goal names both)."""
  d = load("bench_scale.json", results)
  if d is None:
    return None
  items, hows, data, goals, values = [], set(), [], {}, {}
  what = {"tabular": "tabular MLP ({:,} rows)", "text": "text MiniLM ({:,} sentences)",
          "hgb": "HGB 300 trees per element ({:,} rows)"}
  bounds = parse_goals(d.get("goal"))
  for key, r in (d.get("results") or {}).items():
    runs, base, n = r.get("runs") or {}, key.split("_")[0], r.get("n", 0)
    data.append(what.get(base, base + " ({:,})").format(n))
    one, how = describe(same_round_ratios(runs.get("dask2"), runs.get("dask1"), "rate"))
    hows.add(how)
    direct, _ = describe(same_round_ratios(runs.get("dask2"), runs.get("direct"), "rate"))
    label = f"{base} {n:,}" if base == "hgb" else base
    items.append((one, f"one worker ({label})"))
    if base == "hgb":
      items.append((direct, f"DirectRunner ({label})"))
      got = {"dask2/dask1": one, "dask2/direct": direct}
      goals.update({f"{n}: {pair}": b for pair, b in bounds.items()})
      values.update({f"{n}: {pair}": got.get(pair) for pair in bounds})
  avg, avg0 = d.get("loadavg_at_end"), d.get("loadavg_at_start")
  load_note = (f"load average {avg0[0]:.1f} at the start, {avg[0]:.1f} at the end"
               if avg and avg0 else f"load average {avg[0]:.1f} at the end" if avg else
               "machine load not recorded (the runs were on a loaded machine: "
               "benchmarks/README.md)")
  return {"workload": "DaskRunner, 2 worker processes",
          "data": ", ".join(data),
          "against": "the same pipeline on 1 Dask worker; the in-process DirectRunner",
          "headline": parts(*items),
          "how": "; ".join([*sorted(hows), load_note]),
          "goal": goal_cell(goals, values),
          "when": when(d, "bench_scale.json")}


def row_scale_multiprocess(results):
  """Beam's multi-process DirectRunner (2 SDK worker processes) against its
  1-worker form and the in-process DirectRunner, per hgb size, with each
  variant's fixed cost per run: no goal of ours, shown because users try
  it first."""
  d = load("bench_scale.json", results)
  if d is None:
    return None
  items, hows, data = [], set(), []
  for key, r in (d.get("results") or {}).items():
    runs, n = r.get("runs") or {}, r.get("n", 0)
    if not key.startswith("hgb_") or not runs.get("mp2"):
      continue
    data.append(f"{n:,}")
    for den, label in (("mp1", "1 worker"), ("direct", "in-process DirectRunner")):
      value, how = describe(same_round_ratios(runs.get("mp2"), runs.get(den), "rate"))
      hows.add(how)
      items.append((value, f"{label} ({n:,} rows)"))
  if not items:
    return None
  costs = d.get("hgb_fixed_and_steady (median seconds, smallest and largest n)") or {}
  fixed = "; ".join(f"{v} {c['fixed_s']:.1f} s + n / {c['steady_rate'] / 1000:,.0f}k"
                    for v, c in costs.items() if v in ("direct", "mp1", "mp2"))
  return {"workload": "multi-process DirectRunner, 2 workers (Beam's runner)",
          "data": "HGB 300 trees per element, " + ", ".join(data) + " rows",
          "against": "the same runner with 1 worker; the in-process DirectRunner",
          "headline": parts(*items),
          "how": "; ".join(sorted(hows) + ([f"seconds per run: {fixed}"] if fixed else [])),
          "goal": "none: its workers start inside every run (docs/scaling.md)",
          "when": when(d, "bench_scale.json")}


def row_evaluation(results):
  """Both sizes from one alternating run: rows/s and peak RSS, each the
  median of same-round ratios, with the run's goals."""
  doc = load("bench_evaluation.json", results)
  if doc is None:
    return None
  parts, hows, values = [], [], {}
  sizes = sorted((k for k in doc if k.isdigit()), key=int)
  for size in sizes:
    runs = (doc[size].get("runs") or {})
    speed, how = describe(same_round_ratios(runs.get("ours"), runs.get("tfma"),
                                            "rows_per_s"))
    rss, _ = describe(same_round_ratios(runs.get("tfma"), runs.get("ours"),
                                        "peak_rss_mb"))
    exact = doc[size].get("exact_metrics_within_1e-6")
    parts.append(f"{x(speed)} at {int(size):,} rows (TFMA's peak RSS "
                 f"{x(rss)} ours)")
    hows.append(f"{int(size):,}: {how}"
                + ("" if exact is None else
                   f"; exact metrics equal TFMA's within 1e-6: {exact}"))
    values[f"{size}: ours/tfma"] = speed
    values[f"{size}: rss tfma/ours"] = rss
  return {"workload": "`EvaluateModel`, 5 metrics x 3 slicings",
          "data": "binary predictions from Parquet, "
                  + " and ".join(f"{int(s):,}" for s in sizes) + " rows",
          "against": "TensorFlow Model Analysis",
          "headline": "; ".join(parts), "how": "; ".join(hows),
          "goal": goal_cell(doc.get("goals") or {}, values),
          "when": when(doc, "bench_evaluation.json")}


def rows(results: Path = RESULTS) -> list[dict]:
  out = [row_sklearn(results), row_cnn(results), row_columnar(results),
         row_columnar_hgb(results), row_text(results), row_embeddings(results),
         *rows_mltransform(results, "bench_mltransform.json"),
         *rows_mltransform(results, "bench_mltransform_1m.json"),
         *rows_remote(results), row_scale(results),
         row_scale_multiprocess(results), row_evaluation(results)]
  return [r for r in out if r]


COLUMNS = [("workload", "workload"), ("data", "data"), ("against", "compared with"),
           ("headline", "ours ÷ them (headline)"), ("how", "how the headline is taken"),
           ("goal", "goal (as the file records it)"), ("when", "results file: date, commit")]


def render(results: Path = RESULTS) -> str:
  lines = ["| " + " | ".join(title for _, title in COLUMNS) + " |",
           "|" + "---|" * len(COLUMNS)]
  for r in rows(results):
    lines.append("| " + " | ".join(str(r.get(k, "")).replace("|", "\\|")
                                   for k, _ in COLUMNS) + " |")
  return "\n".join(lines) + "\n"


# --- README ------------------------------------------------------------------

def block(text: str) -> str:
  return f"{START}\n<!-- generated by benchmarks/readme_table.py; edit that, not this -->\n{text}{END}"


def replace_block(readme_text: str, table: str) -> str:
  i, j = readme_text.find(START), readme_text.find(END)
  if i < 0 or j < i:
    raise SystemExit(f"README has no {START} ... {END} block")
  return readme_text[:i] + block(table) + readme_text[j + len(END):]


def check(readme: Path = README, results: Path = RESULTS) -> str:
  """'' when the README's block is what the results give, else a diff."""
  current = readme.read_text()
  wanted = replace_block(current, render(results))
  if wanted == current:
    return ""
  return "".join(difflib.unified_diff(current.splitlines(True), wanted.splitlines(True),
                                      str(readme), "generated from benchmarks/results"))


def main(argv=None) -> int:
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  group = ap.add_mutually_exclusive_group()
  group.add_argument("--write", action="store_true", help="replace the README block")
  group.add_argument("--check", action="store_true",
                     help="exit 1 with a diff when the README block is stale")
  args = ap.parse_args(argv)
  if args.check:
    diff = check()
    if diff:
      sys.stdout.write(diff)
      print("README.md's measured table is stale: run "
            "`python benchmarks/readme_table.py --write`", file=sys.stderr)
      return 1
    return 0
  if args.write:
    README.write_text(replace_block(README.read_text(), render()))
    print(f"written to {README}")
    return 0
  sys.stdout.write(render())
  return 0


if __name__ == "__main__":
  sys.exit(main())
