#!/usr/bin/env python
"""Score a Parquet file of a million rows with the columnar fast path.

    .venv/bin/python examples/columnar_parquet.py                 # 1M rows into ./columnar_out
    .venv/bin/python examples/columnar_parquet.py --rows 50000 --out /tmp/cols

1. Set-up: write ``<out>/customers.parquet`` -- ``--rows`` customers (``id``,
   ``tenure_months``, ``monthly_spend``, ``support_calls``, ``age``) in row
   groups of ``--row-group`` rows -- and train a scikit-learn
   ``LogisticRegression`` that predicts churn from the four features
   (pickled to ``<out>/churn.pkl``).
2. One Beam pipeline on the DirectRunner:

       ReadFromParquetBatched      one pyarrow.Table per row group
       | RunInferenceColumnar      predict_proba once per table: two columns
       | WriteToParquetBatched     <out>/scored.parquet

   No Python object is made per row: each table goes through the model as a
   ``(rows, 4)`` numpy matrix and comes out with ``p_stay`` and ``p_churn``
   appended.
3. Read the result back, check every row is there and its probabilities match
   the model's, and print a few rows, the throughput and the metrics.
"""
from __future__ import annotations

import argparse
import logging
import pickle
import sys
import time
from pathlib import Path

FEATURES = ['tenure_months', 'monthly_spend', 'support_calls', 'age']


def write_customers(path: Path, rows: int, row_group: int) -> None:
  import numpy as np
  import pyarrow as pa
  import pyarrow.parquet as pq
  rng = np.random.default_rng(7)
  table = pa.table({
      'id': np.arange(rows, dtype=np.int64),
      'tenure_months': rng.integers(0, 120, rows),
      'monthly_spend': rng.gamma(2.0, 30.0, rows).round(2),
      'support_calls': rng.poisson(1.5, rows),
      'age': rng.integers(18, 90, rows),
  })
  pq.write_table(table, path, row_group_size=row_group)


def churned(x):
  """The ground truth the model learns (x: rows x FEATURES)."""
  import numpy as np
  logit = (1.0 - 0.04 * x[:, 0] + 0.01 * x[:, 1] + 0.6 * x[:, 2]
           - 0.01 * x[:, 3])
  return np.random.default_rng(1).random(len(x)) < 1 / (1 + np.exp(-logit))


def train(parquet: Path, model_path: Path) -> None:
  import numpy as np
  import pyarrow.parquet as pq
  from sklearn.linear_model import LogisticRegression
  sample = pq.ParquetFile(parquet).read_row_group(0).to_pandas()
  x = sample[FEATURES].to_numpy(np.float64)
  model = LogisticRegression(max_iter=1000).fit(x, churned(x))
  model_path.write_bytes(pickle.dumps(model))


def predict_proba(model, matrix, inference_args):
  return model.predict_proba(matrix, **inference_args)


def score(parquet: Path, model_path: Path, out_prefix: str):
  import apache_beam as beam
  import pyarrow as pa
  import pyarrow.parquet as pq

  from runinference.columnar import RunInferenceColumnar
  from runinference.sklearn_inference import SklearnModelHandlerNumpy

  schema = pq.read_schema(parquet)
  for name in ('p_stay', 'p_churn'):
    schema = schema.append(pa.field(name, pa.float64()))
  p = beam.Pipeline()
  _ = (p
       | 'Read' >> beam.io.ReadFromParquetBatched(str(parquet))
       | 'Score' >> RunInferenceColumnar(
           SklearnModelHandlerNumpy(model_uri=str(model_path)),
           feature_columns=FEATURES,
           output_column=['p_stay', 'p_churn'],
           predict_fn=predict_proba)
       | 'Write' >> beam.io.WriteToParquetBatched(
           out_prefix, schema=schema, codec='snappy', num_shards=1,
           shard_name_template='',
           file_name_suffix='.parquet'))
  start = time.perf_counter()
  result = p.run()
  result.wait_until_finish()
  return result, time.perf_counter() - start


def check(parquet: Path, scored: Path, model_path: Path, rows: int) -> list:
  """Problems found in the output (empty when all is well)."""
  import numpy as np
  import pyarrow.parquet as pq
  out = pq.read_table(scored).sort_by('id')
  problems = []
  if out.num_rows != rows:
    problems.append(f'{out.num_rows} rows written, expected {rows}')
  model = pickle.loads(model_path.read_bytes())
  source = pq.read_table(parquet).sort_by('id')
  x = np.column_stack([source.column(c).to_numpy() for c in FEATURES]).astype(
      np.float64)
  want = model.predict_proba(x)[:, 1]
  got = out.column('p_churn').to_numpy()
  if len(got) != len(want) or not np.allclose(got, want):
    problems.append('p_churn differs from model.predict_proba')
  return problems


def main(argv=None) -> int:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument('--rows', type=int, default=1_000_000)
  ap.add_argument('--row-group', type=int, default=50_000,
                  help='rows per Parquet row group = rows per chunk')
  ap.add_argument('--out', default='columnar_out')
  args = ap.parse_args(argv)

  out = Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  parquet, model_path = out / 'customers.parquet', out / 'churn.pkl'
  scored = out / 'scored.parquet'
  scored.unlink(missing_ok=True)
  t = time.perf_counter()
  write_customers(parquet, args.rows, args.row_group)
  train(parquet, model_path)
  print(f'wrote {args.rows:,} rows to {parquet} and trained {model_path.name} '
        f'in {time.perf_counter() - t:.1f}s')

  result, seconds = score(parquet, model_path, str(out / 'scored'))
  print(f'scored {args.rows:,} rows in {seconds:.2f}s '
        f'({args.rows / seconds:,.0f} rows/s, read and write included)')

  from apache_beam.metrics.metric import MetricsFilter
  metrics = result.metrics().query(MetricsFilter().with_namespace('BeamML_Sklearn'))
  for c in metrics['counters']:
    print(f'  {c.key.metric.name}: {c.committed:,}')
  for d in metrics['distributions']:
    if d.key.metric.name == 'inference_request_batch_size':
      print(f'  model calls: {d.committed.count}, rows per call: '
            f'{d.committed.min:,}..{d.committed.max:,}')

  import pyarrow.parquet as pq
  print(pq.read_table(scored).slice(0, 5).to_pandas().to_string(index=False))
  problems = check(parquet, scored, model_path, args.rows)
  for problem in problems:
    print('PROBLEM:', problem)
  print('ok' if not problems else 'FAILED', '->', scored)
  return 1 if problems else 0


if __name__ == '__main__':
  logging.getLogger().setLevel(logging.ERROR)  # Beam's import-time noise
  sys.exit(main())
