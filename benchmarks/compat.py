#!/usr/bin/env python
"""Compatibility yardstick: run Apache Beam's own RunInference tests against
``runinference``.

The test files Beam ships in site-packages (``apache_beam/ml/inference/*_test.py``)
are copied twice into a temporary directory:

* ``reference/`` -- unchanged, so they exercise ``apache_beam.ml.inference``;
* ``ours/``      -- with the import prefix ``apache_beam.ml.inference`` swapped
  for ``runinference`` (``apache_beam.examples...`` and everything else is left
  alone).

pytest runs on every copy (``-p no:cacheprovider``, a per-test timeout, junit XML
output) and a table is printed and written to ``benchmarks/results/compat.md``:
passed / failed / skipped / errors for the reference and for ours, ours-passed
as a percentage of reference-passed, and the tests that pass on the reference
but not on ours.

The reference half is slow (``base_test.py`` alone has timeout tests), so its
junit files are kept in ``benchmarks/results/junit/`` (git-ignored) and can be
reused with ``--reuse-reference``.

Usage::

    .venv/bin/python benchmarks/compat.py                      # everything
    .venv/bin/python benchmarks/compat.py --reuse-reference    # only rerun ours
    .venv/bin/python benchmarks/compat.py --files base_test.py sklearn_inference_test.py
    .venv/bin/python benchmarks/compat.py --only reference     # just the reference half

MLTransform (``--suite transforms``): Beam's ``apache_beam/ml/transforms`` tests
(``base_test.py``, ``tft_test.py``, ``handlers_test.py``,
``embeddings/huggingface_test.py``) with ``apache_beam.ml.transforms`` swapped for
``runinference.transforms`` and ``apache_beam.ml.inference`` for ``runinference``
(a drop-in pipeline swaps both). The reference needs tensorflow_transform, which
the project venv does not have: run its half in the venv built by
``benchmarks/reference_tft_venv.sh``::

    .venv/bin/python benchmarks/compat.py --suite transforms \
        --reference-python /tmp/ri-reference-tft/bin/python
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
JUNIT_DIR = RESULTS / "junit"

# test file -> python modules that must be importable for the file to be worth
# running (the file skips itself at module level otherwise).
TEST_FILES: dict[str, tuple[str, ...]] = {
    "base_test.py": (),
    "sklearn_inference_test.py": ("sklearn",),
    "pytorch_inference_test.py": ("torch",),
    "utils_test.py": (),
    "onnx_inference_test.py": ("onnxruntime", "onnx", "skl2onnx"),
    "tensorflow_inference_test.py": ("tensorflow",),
    "xgboost_inference_test.py": ("xgboost",),
    "huggingface_inference_test.py": ("transformers",),
    "model_manager_test.py": (),
    "vllm_inference_test.py": (),
    "vertex_ai_inference_test.py": ("google.cloud.aiplatform",),
    "tensorrt_inference_test.py": ("tensorrt",),
}
# MLTransform suite: test file (relative to apache_beam/ml/transforms) -> modules.
TRANSFORMS_TEST_FILES: dict[str, tuple[str, ...]] = {
    "base_test.py": (),
    "tft_test.py": (),
    "handlers_test.py": (),
    "embeddings/huggingface_test.py": ("sentence_transformers",),
}
TRANSFORMS_PREFIX = "apache_beam.ml.transforms"
CORE = ("base_test.py", "sklearn_inference_test.py",
        "pytorch_inference_test.py", "utils_test.py")
PREFIX = "apache_beam.ml.inference"


def beam_inference_dir() -> Path:
  spec = importlib.util.find_spec("apache_beam")
  assert spec and spec.origin, "apache_beam is not installed"
  return Path(spec.origin).parent / "ml" / "inference"


def beam_transforms_dir() -> Path:
  return beam_inference_dir().parent / "transforms"


_TRANSFORMS_RE = re.compile(r"\bapache_beam\.ml\.transforms\b")


def swap_transforms_imports(src: str) -> str:
  """Point a Beam MLTransform test file at ``runinference.transforms`` (and its
  RunInference/ModelHandler imports at ``runinference``)."""
  return _PREFIX_RE.sub("runinference", _TRANSFORMS_RE.sub("runinference.transforms", src))


def beam_version() -> str:
  from importlib.metadata import version  # no `import apache_beam`: keeps the log quiet
  return version("apache-beam")


_TEST_MOD_RE = re.compile(r"\bapache_beam\.ml\.inference\.(\w+_test)\b")
_PREFIX_RE = re.compile(r"\bapache_beam\.ml\.inference\b")


def swap_imports(src: str) -> str:
  """Point a Beam test file at ``runinference``.

  * ``apache_beam.ml.inference.<x>_test`` (one test file importing helpers from
    another) becomes the local copy ``<x>_test``;
  * every other ``apache_beam.ml.inference`` (``from apache_beam.ml.inference
    import base``, ``...inference.base import X``, ``...inference.pytorch_inference``,
    mock.patch target strings) becomes ``runinference``.
  ``apache_beam.examples.*`` and the rest of Beam are untouched.
  """
  src = _TEST_MOD_RE.sub(r"\1", src)
  return _PREFIX_RE.sub("runinference", src)


def available(mods: tuple[str, ...]) -> tuple[bool, str]:
  for m in mods:
    try:
      if importlib.util.find_spec(m) is None:
        return False, m
    except (ImportError, ValueError):
      return False, m
  return True, ""


def flat(f: str) -> str:
  """embeddings/huggingface_test.py -> embeddings_huggingface_test.py"""
  return f.replace("/", "_")


def prepare(dest: Path, files: list[str], src_dir: Path, ours: bool,
            swap=None) -> None:
  dest.mkdir(parents=True, exist_ok=True)
  # Empty ini: makes `dest` the rootdir so no project ini leaks in.
  (dest / "pytest.ini").write_text("[pytest]\n")
  # Copy every selected file plus any *_test helper modules they import, so a
  # cross-test import (e.g. huggingface -> tensorflow_inference_test) resolves.
  wanted = set(files)
  for f in list(files):
    text = (src_dir / f).read_text()
    for m in _TEST_MOD_RE.findall(text):
      wanted.add(m + ".py")
  for f in sorted(wanted):
    text = (src_dir / f).read_text()
    if ours:
      text = (swap or swap_imports)(text)
    (dest / flat(f)).write_text(text)


def run_pytest(workdir: Path, test_file: str, junit: Path, timeout: int,
               ours: bool, log, python: str = sys.executable) -> float:
  env = dict(os.environ)
  env.pop("PYTEST_ADDOPTS", None)
  if ours:
    env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
  # --tb=native: pytest's own traceback style re-parses sources with ast,
  # which CPython 3.11.7 can crash on after a deep recursion in a test
  # ("AST constructor recursion depth mismatch"), ending the whole file's run.
  cmd = [python, "-m", "pytest", flat(test_file), "-q", "-p", "no:cacheprovider",
         "--tb=native",
         f"--timeout={timeout}", f"--junitxml={junit}", "-o", "junit_family=xunit2",
         "-W", "ignore::DeprecationWarning", "-W", "ignore::FutureWarning"]
  t0 = time.time()
  with open(log, "w") as fh:
    proc = subprocess.run(cmd, cwd=workdir, env=env, stdout=fh, stderr=subprocess.STDOUT)
  dt = time.time() - t0
  if not junit.exists():
    # pytest crashed before writing a report: record one error entry.
    junit.write_text(
        '<testsuites><testsuite name="pytest"><testcase classname="%s" name="collection">'
        '<error message="pytest exited %d without a junit report"/></testcase>'
        '</testsuite></testsuites>' % (flat(test_file)[:-3], proc.returncode))
  return dt


# Why a test did not pass, keyed like parse_junit's results (first line only).
MESSAGES: dict[Path, dict[str, str]] = {}


def parse_junit(path: Path) -> dict[str, str]:
  """test id -> 'passed' | 'failed' | 'error' | 'skipped'.

  Module-level problems (collection errors, a module-level SkipTest) appear as
  one entry whose id has an empty class name, e.g. ``::base_test``.
  """
  out: dict[str, str] = {}
  msgs: dict[str, str] = {}
  root = ET.parse(path).getroot()
  for tc in root.iter("testcase"):
    name = f"{tc.get('classname', '')}::{tc.get('name', '')}"
    status = "passed"
    msg = ""
    for child in tc:
      if child.tag in ("failure",):
        status = "failed"
      elif child.tag == "error":
        status = "error" if status == "passed" else status
      elif child.tag == "skipped":
        status = "skipped" if status == "passed" else status
      else:
        continue
      text = (child.get("message") or "").strip()
      if text in ("", "collection failure", "collection skipped") and child.text:
        body = child.text.strip().splitlines()
        elines = [ln[1:].strip() for ln in body if ln.startswith("E ")]
        text = elines[-1] if elines else (body[-1] if body else text)
      m = re.search(r"SkipTest: (.*?)['\"]?\)?$", text)
      if m:  # "('file.py', 52, 'unittest.case.SkipTest: reason')" -> "reason"
        text = "SkipTest: " + m.group(1)
      if text and not msg:
        msg = text.splitlines()[0][:200]
    # pytest may report a failing teardown as a second entry with same name.
    if name in out and out[name] != "passed":
      continue
    out[name] = status
    if msg:
      msgs[name] = msg
  MESSAGES[path] = msgs
  return out


def module_level(res: dict[str, str] | None) -> list[str]:
  """Entries that stand for the whole module (collection error / module skip)."""
  return [t for t in (res or {}) if t.startswith("::") or t.split("::")[0] == ""]


def counts(res: dict[str, str] | None) -> dict[str, int]:
  c = {"passed": 0, "failed": 0, "skipped": 0, "error": 0}
  for s in (res or {}).values():
    c[s] += 1
  return c


def fmt_counts(c: dict[str, int] | None) -> str:
  if c is None:
    return "n/a"
  return f"{c['passed']}/{c['failed']}/{c['skipped']}/{c['error']}"


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--files", nargs="+", help="test files to run (default: all present)")
  p.add_argument("--reuse-reference", action="store_true",
                 help="reuse saved reference junit results instead of rerunning")
  p.add_argument("--only", choices=("reference", "ours"),
                 help="run only one half (the other is read from saved results if any)")
  p.add_argument("--timeout", type=int, default=180, help="per-test timeout, seconds")
  p.add_argument("--keep", action="store_true", help="keep the temp dir")
  p.add_argument("--strict", action="store_true",
                 help="exit 1 when a test passing on the reference fails on ours "
                 "without being declared in benchmarks/compat_known_gaps.py, or a "
                 "declared gap passes (so the list must be updated)")
  p.add_argument("--out", default=None,
                 help="report file (default: benchmarks/results/compat.md, "
                 "or compat_mltransform.md for --suite transforms)")
  p.add_argument("--suite", choices=("inference", "transforms"), default="inference",
                 help="which of Beam's test directories to run")
  p.add_argument("--reference-python", default=sys.executable,
                 help="interpreter for the reference half (e.g. the venv of "
                 "benchmarks/reference_tft_venv.sh, which has tensorflow_transform)")
  p.add_argument("--ours-python", default=sys.executable,
                 help="interpreter for our half (default: this one); e.g. the "
                 "reference venv, to run handlers_test.py, whose helpers import "
                 "tensorflow_transform")
  args = p.parse_args(argv)

  transforms = args.suite == "transforms"
  test_files = TRANSFORMS_TEST_FILES if transforms else TEST_FILES
  prefix = TRANSFORMS_PREFIX if transforms else PREFIX
  swap = swap_transforms_imports if transforms else swap_imports
  tag = "mlt_" if transforms else ""
  if args.out is None:
    args.out = str(RESULTS / ("compat_mltransform.md" if transforms else "compat.md"))
  src_dir = beam_transforms_dir() if transforms else beam_inference_dir()
  files = args.files or [f for f in test_files if (src_dir / f).exists()]
  for f in files:
    if not (src_dir / f).exists():
      p.error(f"{f} not found in {src_dir}")

  JUNIT_DIR.mkdir(parents=True, exist_ok=True)
  gi = JUNIT_DIR / ".gitignore"
  if not gi.exists():
    gi.write_text("*\n")
  meta_path = JUNIT_DIR / f"{tag}reference_meta.json"
  meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}

  have_ours = (REPO / "runinference" / "__init__.py").exists()
  run_ref = args.only != "ours" and not args.reuse_reference
  run_ours = args.only != "reference"
  if run_ours and not have_ours:
    print("note: runinference/__init__.py not found; ours will fail to import")

  tmp = Path(tempfile.mkdtemp(prefix="ri_compat_"))
  ref_dir, ours_dir = tmp / "reference", tmp / "ours"
  runnable = []
  skipped_files: dict[str, str] = {}
  for f in files:
    ok, missing = available(test_files.get(f, ()))
    if ok:
      runnable.append(f)
    else:
      skipped_files[f] = f"`{missing}` not installed"
  prepare(ref_dir, runnable, src_dir, ours=False)
  prepare(ours_dir, runnable, src_dir, ours=True, swap=swap)

  results: dict[str, dict[str, dict[str, str] | None]] = {}
  msgs: dict[str, dict[str, str]] = {}
  ref_msgs: dict[str, dict[str, str]] = {}
  side_msgs = {"reference": ref_msgs, "ours": msgs}
  times: dict[str, dict[str, float]] = {}
  for f in runnable:
    stem = tag + flat(f)[:-3]
    results[f] = {"reference": None, "ours": None}
    times[f] = {}
    ref_junit = JUNIT_DIR / f"reference_{stem}.xml"
    if run_ref:
      print(f"[reference] {f} ...", flush=True)
      times[f]["reference"] = run_pytest(ref_dir, f, ref_junit, args.timeout, False,
                                         JUNIT_DIR / f"reference_{stem}.log",
                                         python=args.reference_python)
      meta[f] = {"beam": beam_version(), "seconds": round(times[f]["reference"], 1),
                 "when": time.strftime("%Y-%m-%d %H:%M:%S")}
      meta_path.write_text(json.dumps(meta, indent=1))
    if ref_junit.exists():
      if meta.get(f, {}).get("beam") not in (None, beam_version()):
        print(f"warning: saved reference for {f} is from Beam {meta[f]['beam']}, "
              f"installed is {beam_version()}")
      results[f]["reference"] = parse_junit(ref_junit)
      ref_msgs[f] = MESSAGES[ref_junit]
    elif args.reuse_reference:
      print(f"warning: no saved reference for {f}; run without --reuse-reference")
    if run_ours:
      ours_junit = tmp / f"ours_{stem}.xml"
      print(f"[ours]      {f} ...", flush=True)
      times[f]["ours"] = run_pytest(ours_dir, f, ours_junit, args.timeout, True,
                                    JUNIT_DIR / f"ours_{stem}.log",
                                    python=args.ours_python)
      shutil.copy(ours_junit, JUNIT_DIR / f"ours_{stem}.xml")
      results[f]["ours"] = parse_junit(ours_junit)
      msgs[f] = MESSAGES[ours_junit]
    elif (JUNIT_DIR / f"ours_{stem}.xml").exists():
      results[f]["ours"] = parse_junit(JUNIT_DIR / f"ours_{stem}.xml")
      msgs[f] = MESSAGES[JUNIT_DIR / f"ours_{stem}.xml"]

  # ---- report -------------------------------------------------------------
  lines = []
  lines.append("# Compatibility: Beam's MLTransform tests on runinference.transforms\n"
               if transforms else
               "# Compatibility: Beam's RunInference tests on runinference\n")
  ref_py = ("" if args.reference_python == sys.executable else
            f" The reference half ran with `{args.reference_python}`.")
  if args.ours_python != sys.executable:
    ref_py += f" Our half ran with `{args.ours_python}`."
  lines.append(f"Beam {beam_version()} test files from `{src_dir}`; "
               f"imports `{prefix}` swapped for "
               f"`{'runinference.transforms' if transforms else 'runinference'}` "
               f"in the *ours* copy.{ref_py} "
               f"Counts are passed/failed/skipped/errors; per-test timeout {args.timeout}s. "
               f"Generated {time.strftime('%Y-%m-%d %H:%M')} by `benchmarks/compat.py`.\n")
  lines.append("| file | reference p/f/s/e | ours p/f/s/e | ours passed / ref passed |")
  lines.append("|---|---|---|---|")
  tot_ref = tot_ours = 0
  regressions: dict[str, list[tuple[str, str]]] = {}
  module_notes: dict[str, str] = {}
  for f in files:
    if f in skipped_files:
      lines.append(f"| {f} | not run ({skipped_files[f]}) | not run | – |")
      continue
    ref, ours = results[f]["reference"], results[f]["ours"]
    cr = counts(ref) if ref is not None else None
    co = counts(ours) if ours is not None else None
    if cr is not None and co is not None:
      ref_pass = {t for t, s in ref.items() if s == "passed"}
      both = {t for t in ref_pass if ours.get(t) == "passed"}
      tot_ref += len(ref_pass)
      tot_ours += len(both)
      pct = f"{100.0 * len(both) / len(ref_pass):.1f}% ({len(both)}/{len(ref_pass)})" \
          if ref_pass else "–"
      mod = module_level(ours)
      why_not_run = ("not run: " + "; ".join(
          f"{ours[m]} {msgs.get(f, {}).get(m, '')}".strip() for m in mod)) if mod else "not run"
      regressions[f] = sorted(
          (t, ours[t] + (f": {msgs.get(f, {}).get(t, '')}" if msgs.get(f, {}).get(t) else "")
           if t in ours else why_not_run)
          for t in ref_pass - both)
      if mod and len(ref_pass - both) > 3:
        module_notes[f] = why_not_run
    else:
      pct = "–"
    lines.append(f"| {f} | {fmt_counts(cr)} | {fmt_counts(co)} | {pct} |")
  if tot_ref:
    lines.append(f"| **total** | | | **{100.0 * tot_ours / tot_ref:.1f}% "
                 f"({tot_ours}/{tot_ref})** |")
  lines.append("")
  notes = []
  for f in files:
    if f in skipped_files or f not in results:
      continue
    for side in ("reference", "ours"):
      res = results[f][side]
      for m in module_level(res):
        notes.append(f"- {f}, {side}: whole module {res[m]} — "
                     f"{side_msgs[side].get(f, {}).get(m, '')}")
  if notes:
    lines.append("Module-level outcomes (collection errors, module skips):\n")
    lines.extend(notes)
    lines.append("")
  lines.append("## Tests passing on the reference but not on runinference\n")
  any_reg = False
  for f, regs in regressions.items():
    if not regs:
      continue
    any_reg = True
    lines.append(f"### {f} ({len(regs)})\n")
    if f in module_notes:
      lines.append(f"Whole module: {module_notes[f]}\n")
    for t, st in regs:
      if f in module_notes and st == module_notes[f]:
        lines.append(f"- `{t}`")
      else:
        lines.append(f"- `{t}` — ours: {st}")
    lines.append("")
  if not any_reg:
    lines.append("None." if regressions else "No comparison available yet.")
  gains = []
  for f in files:
    if f in skipped_files or f not in results:
      continue
    ref, ours = results[f]["reference"], results[f]["ours"]
    if ref is None or ours is None:
      continue
    for t, st in sorted(ours.items()):
      if st == "passed" and ref.get(t) not in (None, "passed"):
        gains.append(f"- `{t}` — reference: {ref[t]}: "
                     f"{side_msgs['reference'].get(f, {}).get(t, '')}")
  if gains:
    lines.append("")
    lines.append("## Tests failing on the reference (in this environment) but passing on "
                 "runinference\n")
    lines.extend(gains)
  lines.append("")
  logs = ", ".join(f"`benchmarks/results/junit/{{reference,ours}}_{tag}{flat(f)[:-3]}.log`"
                   for f in runnable[:1])
  lines.append(f"pytest logs: {logs} (and likewise per file; git-ignored).")
  report = "\n".join(lines) + "\n"
  print()
  print(report)
  if args.only != "reference":
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(report)
    print(f"written to {args.out}")
  if args.keep:
    print(f"temp dir kept: {tmp}")
  else:
    shutil.rmtree(tmp, ignore_errors=True)
  if args.strict:
    return strict_check(args.suite, regressions, results, skipped_files)
  return 0


def strict_check(suite: str, regressions: dict, results: dict,
                 skipped_files: dict) -> int:
  """1 (and why) when the run and the declared known gaps disagree."""
  from compat_known_gaps import KNOWN_GAPS
  gaps = KNOWN_GAPS[suite]
  problems = []
  for f, regs in regressions.items():
    for test, status in regs:
      if f"{f}::{test}" not in gaps:
        problems.append(f"undeclared: {f}::{test} ({status})")
  for key, reason in sorted(gaps.items()):
    f, test = key.split("::", 1)
    if f in skipped_files or f not in results or results[f]["ours"] is None:
      continue
    if results[f]["ours"].get(test) == "passed":
      problems.append(f"declared gap now passes (remove it): {key} -- {reason}")
  if problems:
    print("\ncompat --strict FAILED:\n  " + "\n  ".join(problems))
    return 1
  print(f"\ncompat --strict: every gap is declared ({len(gaps)} in "
        "benchmarks/compat_known_gaps.py) and none passes")
  return 0


if __name__ == "__main__":
  sys.exit(main())
