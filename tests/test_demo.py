"""End-to-end check of examples/demo.py: the five-times-table story."""
import importlib.util
import json
import sys
from pathlib import Path

import pytest

pytest.importorskip("sklearn")
pytest.importorskip("torch")

DEMO = Path(__file__).resolve().parent.parent / "examples" / "demo.py"


@pytest.fixture(scope="module")
def demo():
  spec = importlib.util.spec_from_file_location("runinference_demo", DEMO)
  mod = importlib.util.module_from_spec(spec)
  sys.modules[spec.name] = mod  # so pickling by reference of its classes works
  spec.loader.exec_module(mod)
  return mod


@pytest.fixture(scope="module")
def run(demo, tmp_path_factory):
  out = tmp_path_factory.mktemp("demo_out")
  rc = demo.main(["--out", str(out), "--n", "40", "--quiet"])
  return demo, out, rc


def _load(path):
  with open(path) as fh:
    return [json.loads(line) for line in fh if line.strip()]


def _close(a, b):
  return abs(a - b) <= 1e-3 * max(1.0, abs(b)) + 1e-2


def test_main_succeeds(run):
  _, _, rc = run
  assert rc == 0


def test_setup_artifacts(run):
  _, out, _ = run
  models = out / "models"
  for name in ("five", "ten"):
    assert (models / f"{name}_times_table_sklearn.pkl").stat().st_size > 0
    assert (models / f"{name}_times_table_torch.pt").stat().st_size > 0
  lines = (out / "problems.csv").read_text().splitlines()
  assert lines[0] == "key,value"
  assert len(lines) == 1 + 80


def test_json_lines_exist_and_counts_match(run):
  demo, out, _ = run
  for branch in demo.BRANCHES:
    path = out / "results" / f"{branch}.jsonl"
    assert path.exists(), path
    assert len(_load(path)) == 80, branch


def test_predictions(run):
  _, out, _ = run
  res = out / "results"
  for r in _load(res / "keyed.jsonl"):
    assert _close(r["prediction"], 5 * r["value"]), r
  for r in _load(res / "ab_a.jsonl") + _load(res / "ab_b.jsonl"):
    assert _close(r["prediction"], 5 * r["value"]), r
  factor = {"five": 5, "ten": 10}
  routed = _load(res / "routed.jsonl")
  for r in routed:
    assert _close(r["prediction"], factor[r["key"]] * r["value"]), r
  assert {r["model"] for r in routed} == {"torch_five", "torch_ten"}
  for r in _load(res / "cascade.jsonl"):
    assert _close(r["stage1"], 5 * r["value"]), r
    assert _close(r["prediction"], 50 * r["value"]), r


def test_keys_survive(run):
  _, out, _ = run
  rows = (out / "problems.csv").read_text().splitlines()[1:]
  want = sorted((k, float(v)) for k, v in (line.split(",") for line in rows))
  for branch in ("keyed", "routed", "cascade"):
    got = sorted((r["key"], r["value"]) for r in _load(out / "results" / f"{branch}.jsonl"))
    assert got == want, branch


def test_metrics_from_pipeline(demo, tmp_path):
  res = demo.run_demo(tmp_path, n_per_table=10, quiet=True)
  assert res["problems"] == []
  m = res["metrics"]
  assert m["demo"]["rows_read"] == 20
  for step in demo.RI_STEPS:
    assert m["steps"][step]["counters"]["num_inferences"] == 20, step
    assert m["steps"][step]["counters"].get("failed_batches_counter", 0) == 0, step
    assert m["steps"][step]["dists"]["inference_request_batch_size"][1] == 20, step
  assert m["steps"]["keyed"]["namespace"] == "BeamML_Sklearn"
  assert m["steps"]["ab_b"]["namespace"] == "BeamML_PyTorch"


def test_verify_catches_wrong_answers(demo, tmp_path):
  """The self-check must fail when an answer is off."""
  res = demo.run_demo(tmp_path, n_per_table=5, quiet=True)
  assert res["problems"] == []
  path = res["results_dir"] / "keyed.jsonl"
  recs = _load(path)
  recs[0]["prediction"] += 1.0
  path.write_text("".join(json.dumps(r) + "\n" for r in recs))
  problems = demo.verify(res["results_dir"], res["rows"], res["metrics"], [])
  assert any("keyed" in p and "wrong" in p for p in problems)
