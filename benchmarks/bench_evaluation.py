"""Evaluation throughput: ``EvaluateModel`` vs TensorFlow Model Analysis on the
same precomputed binary predictions (model-agnostic: label and prediction
columns), 5 metrics (accuracy, precision, recall, ROC AUC, log loss), 3
slicing specs (overall, country, country x device), 200k and 1M rows.

Each variant runs in a fresh process (``--_child``) that builds the same
seeded DataFrame; TFMA is timed DataFrame -> metrics (``analyze_raw_data``),
ours Parquet file (the DataFrame written untimed) -> metrics, reading
included; it reports rows/s, peak
RSS (ru_maxrss, the whole process), and the overall and one slice's values
(ours also checked against scikit-learn). Variants alternate per round; the
ratio reported is the median of same-round ratios.

    python benchmarks/bench_evaluation.py                       # ours only
    bash benchmarks/reference_tfma_venv.sh
    python benchmarks/bench_evaluation.py --reference-python /tmp/ri-reference-tfma/bin/python

On an idle machine, both sizes, two alternating rounds (TFMA took about
2 min a run at 200k rows and 9-10 min at 1M on the idle 2-core machine: 25 min
in all)::

    python benchmarks/bench_evaluation.py --rows 200000 1000000 --repeat 2 \
        --reference-python /tmp/ri-reference-tfma/bin/python --update

Goals checked (median of same-round ratios): ours/tfma rows/s >= 50 and
TFMA's peak RSS over ours >= 1 at each size; exact metrics (accuracy,
precision, recall, log loss) equal TFMA's within 1e-6 overall and on one
slice.

Variants: ``ours`` (column blocks: ``ReadFromParquetBatched``,
``columnar=True``), ``ours_rows`` (``ReadFromParquet``, one dict per
example: the per-row path), ``tfma``
(``tfma.analyze_raw_data(df, eval_config)``).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SPECS = [[], ['country'], ['country', 'device']]
PROBE = (('country', 'c3'),)  # the slice whose values are compared too
METRICS = ('accuracy', 'precision', 'recall', 'roc_auc', 'log_loss')
TFMA_NAMES = {'binary_accuracy': 'accuracy', 'precision': 'precision',
              'recall': 'recall', 'auc': 'roc_auc',
              'binary_crossentropy': 'log_loss'}


def make_frame(rows: int):
  import numpy as np
  import pandas as pd
  rng = np.random.default_rng(42)
  label = rng.integers(0, 2, rows)
  pred = np.clip(0.35 * label + 0.65 * rng.random(rows), 1e-4, 1 - 1e-4)
  return pd.DataFrame({
      'label': label.astype(np.float64),
      'prediction': pred.astype(np.float64),
      'country': np.array([f'c{i}' for i in range(8)])[rng.integers(0, 8, rows)],
      'device': np.array(['phone', 'desktop', 'tablet'])[
          rng.integers(0, 3, rows)],
  })


def _sklearn(df) -> dict:
  import sklearn.metrics as skm
  y, p = df['label'].to_numpy().astype(int), df['prediction'].to_numpy()
  yp = p >= 0.5
  return {'accuracy': skm.accuracy_score(y, yp),
          'precision': skm.precision_score(y, yp),
          'recall': skm.recall_score(y, yp),
          'roc_auc': skm.roc_auc_score(y, p), 'log_loss': skm.log_loss(y, p)}


def _peak_rss_mb() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_ours(rows: int, per_row: bool) -> dict:
  import apache_beam as beam
  from apache_beam.testing.util import assert_that
  from benchmarks._harness import local_pipeline
  from runinference.evaluation import EvaluateModel
  import pickle
  import tempfile
  df = make_frame(rows)
  tmp = tempfile.mkdtemp()
  sink = os.path.join(tmp, 'metrics.pkl')
  parquet = os.path.join(tmp, 'data.parquet')
  df.to_parquet(parquet, row_group_size=65536)  # not timed: the input file

  def keep(records, path=sink):  # the matcher runs on a pickled copy
    with open(path, 'wb') as f:
      pickle.dump({r.slice: {k: r.metrics[k] for k in METRICS}
                   for r in records}, f)
  t0 = time.perf_counter()
  p = local_pipeline()
  if per_row:
    data = p | beam.io.ReadFromParquet(parquet)
    kwargs = dict(predictions={'m': 'prediction'})
  else:
    data = p | beam.io.ReadFromParquetBatched(parquet)
    kwargs = dict(predictions={'m': 'prediction'}, columnar=True)
  out = (data
         | EvaluateModel(label_key='label', metrics=list(METRICS),
                         slices=SPECS, **kwargs))
  assert_that(out['metrics'], keep)
  p.run().wait_until_finish()
  seconds = time.perf_counter() - t0
  with open(sink, 'rb') as f:
    found = pickle.load(f)
  return {'seconds': seconds, 'rows_per_s': rows / seconds,
          'peak_rss_mb': _peak_rss_mb(), 'slices': len(found),
          'overall': found[()], 'probe': found[PROBE],
          'sklearn': _sklearn(df)}


def child_tfma(rows: int) -> dict:
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
  import tensorflow_model_analysis as tfma
  from tensorflow_model_analysis.proto import config_pb2
  df = make_frame(rows)
  config = config_pb2.EvalConfig(
      model_specs=[config_pb2.ModelSpec(label_key='label',
                                        prediction_key='prediction')],
      metrics_specs=[config_pb2.MetricsSpec(metrics=[
          config_pb2.MetricConfig(class_name=c) for c in (
              'BinaryAccuracy', 'Precision', 'Recall', 'AUC',
              'BinaryCrossentropy')])],
      slicing_specs=[config_pb2.SlicingSpec(feature_keys=s) for s in SPECS])
  t0 = time.perf_counter()
  result = tfma.analyze_raw_data(df, config)
  seconds = time.perf_counter() - t0
  found = {}
  for key, by_output in result.slicing_metrics:
    values = by_output.get('', {}).get('', {})
    found[tuple(key)] = {TFMA_NAMES[k]: v.get('doubleValue')
                         for k, v in values.items() if k in TFMA_NAMES}
  return {'seconds': seconds, 'rows_per_s': rows / seconds,
          'peak_rss_mb': _peak_rss_mb(), 'slices': len(found),
          'overall': found.get(()), 'probe': found.get(PROBE)}


def _compare(a: dict, b: dict) -> dict:
  return {k: None if a is None or b is None or a.get(k) is None or
          b.get(k) is None else abs(a[k] - b[k]) for k in METRICS}


def main() -> int:
  from benchmarks._harness import add_out_args, out_path, provenance
  ap = argparse.ArgumentParser()
  ap.add_argument('--rows', type=int, nargs='+', default=[200_000, 1_000_000])
  ap.add_argument('--repeat', type=int, default=2)
  ap.add_argument('--variants', nargs='+', default=['ours', 'tfma'])
  ap.add_argument('--reference-python', default=None,
                  help='the TFMA venv\'s python (reference_tfma_venv.sh)')
  add_out_args(ap, 'bench_evaluation.json')
  ap.add_argument('--_child', default=None)
  ap.add_argument('--_rows', type=int, default=0)
  args = ap.parse_args()
  if args._child:
    fn = {'ours': lambda r: child_ours(r, False),
          'ours_rows': lambda r: child_ours(r, True),
          'tfma': child_tfma}[args._child]
    res = fn(args._rows)
    print(json.dumps(res), flush=True)
    os._exit(0)  # TF can crash at interpreter exit
  from benchmarks._harness import finish, paired, run_variants
  variants = [v for v in args.variants
              if v != 'tfma' or args.reference_python]
  if 'tfma' in args.variants and 'tfma' not in variants:
    print('tfma skipped: give --reference-python (see '
          'benchmarks/reference_tfma_venv.sh)')
  report, ratios, best_all = {**provenance(), 'load_avg': os.getloadavg()}, {}, {}
  for rows in args.rows:
    print(f'{rows:,} rows, 5 metrics, 3 slicing specs', flush=True)
    runs, best = run_variants(
        __file__, variants, args.repeat, ['--_rows', str(rows)],
        'rows_per_s', 'rows/s',
        pythons={'tfma': args.reference_python} if args.reference_python
        else None)
    entry = {'runs': runs, 'best': best}
    ours = best.get('ours', {})
    if 'sklearn' in ours:
      entry['ours_vs_sklearn'] = _compare(ours['overall'], ours['sklearn'])
    if 'tfma' in best and 'overall' in ours and 'error' not in best['tfma']:
      entry['ours_vs_tfma_overall'] = _compare(ours['overall'],
                                               best['tfma']['overall'])
      entry['ours_vs_tfma_probe'] = _compare(ours['probe'],
                                             best['tfma']['probe'])
      entry['rss_ours_over_tfma'] = (ours['peak_rss_mb'] /
                                     best['tfma']['peak_rss_mb'])
      # Exact metrics equal within 1e-6 (ROC AUC: TFMA interpolates over
      # 10,000 thresholds, so its difference is only reported).
      entry['exact_metrics_within_1e-6'] = all(
          d is not None and d <= 1e-6
          for k in ('ours_vs_tfma_overall', 'ours_vs_tfma_probe')
          for m, d in entry[k].items() if m != 'roc_auc')
      ratios[f'{rows}: ours/tfma'] = paired(runs, 'ours', 'tfma', 'rows_per_s')
      # Peak RSS, TFMA's over ours (>= 1: ours no larger), same-round median.
      ratios[f'{rows}: rss tfma/ours'] = paired(runs, 'tfma', 'ours',
                                                'peak_rss_mb')
    for v, b in best.items():
      if 'error' not in b:
        print(f'  best {v:<10} {b["rows_per_s"]:>12,.0f} rows/s  peak RSS '
              f'{b["peak_rss_mb"]:,.0f} MB  slices {b["slices"]}')
    for k in ('ours_vs_sklearn', 'ours_vs_tfma_overall', 'ours_vs_tfma_probe'):
      if k in entry:
        print(f'  {k}: max |diff| ' + ', '.join(
            f'{m}={d:.2e}' for m, d in entry[k].items() if d is not None))
    if 'exact_metrics_within_1e-6' in entry:
      print(f"  exact metrics equal TFMA's within 1e-6: "
            f"{entry['exact_metrics_within_1e-6']}")
    report[str(rows)] = entry
    best_all.update({f'{v}@{rows}': b for v, b in best.items()})
  report['ratios'] = ratios
  goals = {k: 1.0 if 'rss' in k else 50.0 for k in ratios}
  report['goals'] = goals
  return finish(ratios, goals, report, best_all,
                out_path(args, 'bench_evaluation.json'))


if __name__ == '__main__':
  sys.exit(main())
