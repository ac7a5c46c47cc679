"""The README's measured table is what benchmarks/readme_table.py makes of the
committed results (no pipeline runs here)."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _module():
  spec = importlib.util.spec_from_file_location(
      "readme_table", REPO / "benchmarks" / "readme_table.py")
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod


def test_readme_table_is_current():
  diff = _module().check()
  assert diff == "", ("README.md's measured table is stale; run "
                      "`python benchmarks/readme_table.py --write`:\n" + diff)


def _doc(all_runs=None, ratios=None, repeat=3):
  doc = {"benchmark": "bench_cnn", "when": "2026-12-01 10:00:00", "n": 100,
         "batch": 8, "repeat": repeat, "goal": "ours/raw >= 0.95",
         "ratios": ratios or {}}
  if all_runs is not None:
    doc["all_runs"] = all_runs
  return doc


def test_rounds_give_the_median_of_same_round_ratios(tmp_path):
  mod = _module()
  runs = {"raw": [{"img_per_s": 100}, {"img_per_s": 200}, {"img_per_s": 100}],
          "ours": [{"img_per_s": 90}, {"img_per_s": 100}, {"img_per_s": 80}],
          "reference": [{"img_per_s": 50}, {"img_per_s": 50}, {"error": "x"}]}
  # best/best would be 100/200 = 0.50x; the same-round ratios are .9, .5, .8
  doc = _doc(runs, {"ours/raw": 0.5})
  assert mod.headline(doc, "ours", "raw", "img_per_s") == (
      0.8, "median of 3 same-round ratios")
  # a failed round is left out, not counted as a ratio
  assert mod.headline(doc, "ours", "reference", "img_per_s") == (
      1.9, "median of 2 same-round ratios")
  (tmp_path / "bench_cnn.json").write_text(json.dumps(doc))
  table = mod.render(tmp_path)
  assert "0.80x raw" in table and "median of 3 same-round ratios" in table
  assert "ours/raw ≥ 0.95: **not met**" in table  # a row where we trail stays
  assert "2026-12-01 10:00, commit not recorded" in table


def test_without_rounds_the_cell_says_what_the_number_is(tmp_path):
  mod = _module()
  stored = _doc(None, {"ours/raw": 1.2, "ours/raw (median of rounds)": 0.9})
  assert mod.headline(stored, "ours", "raw", "img_per_s") == (
      0.9, "median of same-round ratios as stored (runs not in the file)")
  best = _doc(None, {"ours/raw": 1.2}, repeat=3)
  assert mod.headline(best, "ours", "raw", "img_per_s") == (1.2, "ratio of bests, best of 3")
  single = _doc(None, {"ours/raw": 1.2}, repeat=1)
  assert mod.headline(single, "ours", "raw", "img_per_s") == (1.2, "single run")
  (tmp_path / "bench_cnn.json").write_text(json.dumps(best))
  table = mod.render(tmp_path)
  assert "1.20x raw" in table and "ratio of bests, best of 3" in table
  assert "median" not in table.split("\n")[2]


def test_check_reports_a_stale_block(tmp_path):
  mod = _module()
  readme = tmp_path / "README.md"
  readme.write_text(f"intro\n{mod.START}\nold table\n{mod.END}\nrest\n")
  diff = mod.check(readme, mod.RESULTS)
  assert "-old table" in diff
  readme.write_text(mod.replace_block(readme.read_text(), mod.render()))
  assert mod.check(readme, mod.RESULTS) == ""
  assert readme.read_text().endswith(f"{mod.END}\nrest\n")


def test_evaluation_row_uses_same_round_ratios_at_each_size(tmp_path):
  mod = _module()
  runs = {"ours": [{"rows_per_s": 100_000.0, "peak_rss_mb": 500.0},
                   {"rows_per_s": 60_000.0, "peak_rss_mb": 400.0}],
          "tfma": [{"rows_per_s": 1_000.0, "peak_rss_mb": 2_000.0},
                   {"rows_per_s": 2_000.0, "peak_rss_mb": 2_000.0}]}
  doc = {"when": "2026-12-04 17:00:00", "commit": "abc",
         "200000": {"runs": runs, "exact_metrics_within_1e-6": True},
         "goals": {"200000: ours/tfma": 50.0, "200000: rss tfma/ours": 1.0}}
  (tmp_path / "bench_evaluation.json").write_text(json.dumps(doc))
  row = mod.row_evaluation(tmp_path)
  # Same-round speed ratios 100 and 30: median 65 (not 100k/1k best-of).
  assert "65.0x at 200,000 rows" in row["headline"]
  # RSS ratios 4 and 5: median 4.5.
  assert "4.50x ours" in row["headline"]
  assert "200000: ours/tfma ≥ 50: met" in row["goal"]
  assert "within 1e-6: True" in row["how"]
  doc["200000"]["runs"]["ours"][0]["rows_per_s"] = 10_000.0   # ratios 10, 30
  (tmp_path / "bench_evaluation.json").write_text(json.dumps(doc))
  assert "200000: ours/tfma ≥ 50: **not met**" in mod.row_evaluation(tmp_path)["goal"]
