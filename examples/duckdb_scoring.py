#!/usr/bin/env python
"""Score the customers of a DuckDB warehouse and store the predictions in it.

    .venv/bin/python examples/duckdb_scoring.py                # ./duckdb_out
    .venv/bin/python examples/duckdb_scoring.py --rows 2000 --out /tmp/shop

1. Set-up: ``<out>/shop.duckdb`` with a ``customers`` table of ``--rows``
   rows (id, tenure_months, monthly_spend, support_calls, age), and a
   scikit-learn ``LogisticRegression`` trained on it to predict churn
   (pickled to ``<out>/churn.pkl``).
2. One Beam pipeline on the DirectRunner:

       ReadFromDuckDB        split on ``id`` into 4 read-only range reads
       | to (id, features)
       | RunInference        KeyedModelHandler(SklearnModelHandlerNumpy),
                             predict_proba per batch
       | WriteToDuckDB       table ``scores``: key BIGINT, example DOUBLE[],
                             inference DOUBLE[], model_id VARCHAR

3. Query the scores back with SQL, check them against the model, print the
   riskiest customers and write the run report to ``<out>/report.html``.
"""
from __future__ import annotations

import argparse
import logging
import pickle
import sys
from pathlib import Path

FEATURES = ['tenure_months', 'monthly_spend', 'support_calls', 'age']


def make_warehouse(db: Path, rows: int) -> None:
  import duckdb
  import numpy as np
  import pyarrow as pa
  rng = np.random.default_rng(7)
  customers = pa.table({
      'id': np.arange(rows, dtype=np.int64),
      'tenure_months': rng.integers(0, 120, rows),
      'monthly_spend': rng.gamma(2.0, 30.0, rows).round(2),
      'support_calls': rng.poisson(1.5, rows),
      'age': rng.integers(18, 90, rows),
  })
  con = duckdb.connect(str(db))
  con.register('new_customers', customers)
  con.execute('CREATE OR REPLACE TABLE customers AS '
              'SELECT * FROM new_customers')
  con.close()


def features(db: Path):
  import duckdb
  import numpy as np
  con = duckdb.connect(str(db), read_only=True)
  rows = con.execute(
      f'SELECT id, {", ".join(FEATURES)} FROM customers ORDER BY id').fetchall()
  con.close()
  return (np.array([r[0] for r in rows]),
          np.array([r[1:] for r in rows], dtype=np.float64))


def train(db: Path, model_path: Path) -> None:
  import numpy as np
  from sklearn.linear_model import LogisticRegression
  _, x = features(db)
  logit = 1.0 - 0.04 * x[:, 0] + 0.01 * x[:, 1] + 0.6 * x[:, 2] - 0.01 * x[:, 3]
  churned = np.random.default_rng(1).random(len(x)) < 1 / (1 + np.exp(-logit))
  model = LogisticRegression(max_iter=1000).fit(x, churned)
  model_path.write_bytes(pickle.dumps(model))


def predict_proba(model, batch, inference_args=None):
  import numpy as np
  return model.predict_proba(np.stack(batch), **(inference_args or {}))


def to_features(row: dict):
  import numpy as np
  return row['id'], np.array([row[f] for f in FEATURES], dtype=np.float64)


def score(db: Path, model_path: Path):
  import apache_beam as beam

  from runinference.base import KeyedModelHandler, RunInference
  from runinference.io.duckdb import ReadFromDuckDB, WriteToDuckDB
  from runinference.sklearn_inference import SklearnModelHandlerNumpy

  handler = KeyedModelHandler(SklearnModelHandlerNumpy(
      model_uri=str(model_path), inference_fn=predict_proba))
  p = beam.Pipeline()
  _ = (p
       | 'Read' >> ReadFromDuckDB(
           str(db), f'SELECT id, {", ".join(FEATURES)} FROM customers',
           partition_column='id', num_splits=4)
       | 'Features' >> beam.Map(to_features)
       | 'Score' >> RunInference(handler)
       | 'Write' >> WriteToDuckDB(str(db), 'scores', mode='replace'))
  result = p.run()
  result.wait_until_finish()
  return result


def check(db: Path, model_path: Path, rows: int) -> list:
  """Problems found in the ``scores`` table (empty when all is well)."""
  import duckdb
  import numpy as np
  con = duckdb.connect(str(db), read_only=True)
  got = con.execute('SELECT key, inference FROM scores ORDER BY key').fetchall()
  types = dict(con.execute('SELECT column_name, data_type FROM '
                           "information_schema.columns WHERE table_name = "
                           "'scores'").fetchall())
  con.close()
  problems = []
  if len(got) != rows:
    problems.append(f'{len(got)} scores written, expected {rows}')
  if types.get('inference') != 'DOUBLE[]':
    problems.append(f'inference column is {types.get("inference")}')
  ids, x = features(db)
  want = pickle.loads(model_path.read_bytes()).predict_proba(x)
  if [g[0] for g in got] != ids.tolist() or not np.allclose(
      [g[1] for g in got], want):
    problems.append('scores differ from model.predict_proba')
  return problems


def main(argv=None) -> int:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument('--rows', type=int, default=20_000)
  ap.add_argument('--out', default='duckdb_out')
  args = ap.parse_args(argv)

  out = Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  db, model_path = out / 'shop.duckdb', out / 'churn.pkl'
  make_warehouse(db, args.rows)
  train(db, model_path)
  result = score(db, model_path)

  import duckdb

  from runinference.report import RunReport
  con = duckdb.connect(str(db), read_only=True)
  print('riskiest customers:')
  for row in con.execute(
      'SELECT c.id, c.tenure_months, c.support_calls, '
      'round(s.inference[2], 3) AS p_churn FROM scores s '
      'JOIN customers c ON c.id = s.key ORDER BY p_churn DESC LIMIT 5'
  ).fetchall():
    print('  ', row)
  con.close()
  report = RunReport.from_result(result)
  print(report)
  print('report:', report.write_html(str(out / 'report.html'),
                                     title='DuckDB churn scoring'))
  problems = check(db, model_path, args.rows)
  for problem in problems:
    print('PROBLEM:', problem)
  print('ok' if not problems else 'FAILED', '->', db)
  return 1 if problems else 0


if __name__ == '__main__':
  logging.getLogger().setLevel(logging.ERROR)  # Beam's import-time noise
  sys.exit(main())
