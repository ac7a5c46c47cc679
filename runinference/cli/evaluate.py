"""``runinference evaluate DATA``: metrics per model and slice, an HTML page
and a validation result, as a CI gate.

    runinference evaluate data.csv --label y --model cand=new.pkl \\
        --model base=serving.pkl --slice country --threshold 'auc>=0.8' ...

Models are scikit-learn pickles/joblib/skops files run on the feature
columns (``--features``; default: every column that is not the label, the
weight, a slice or a prediction), or precomputed predictions
(``--prediction NAME=COLUMN``). Exit status: 0 when every threshold passes
(blessed), 1 when one fails, 2 for bad input (a missing file or column, an
unknown metric, a malformed threshold).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
from typing import Any

from ..exceptions import CliError

_THRESHOLD = re.compile(
    r'^\s*([A-Za-z_][\w]*)\s*(>=|<=)\s*([-+]?[\d.eE+-]+)(%?)\s*'
    r'(?:@\s*(.+?))?\s*$')


HELP = 'evaluate models on a labelled data file; exit 0 if blessed'
DESCRIPTION = (
    'Evaluates one or more models (scikit-learn model files, or prediction '
    'columns of the data) on a labelled data file (CSV, Parquet, JSON '
    'lines), per slice, writes evaluation.json and evaluation.html, and '
    'checks thresholds. Exit 0: blessed; 1: a threshold failed; 2: bad input.')


def add_arguments(ev) -> None:
  ev.add_argument('data', help='the data file (.csv, .parquet, .jsonl)')
  ev.add_argument('--label', required=True, help='the label column')
  ev.add_argument('--model', action='append', default=[], metavar='NAME=PATH',
                  help='a model file to run (repeatable; the first is the '
                  'candidate, the second the baseline)')
  ev.add_argument('--prediction', action='append', default=[],
                  metavar='NAME=COLUMN',
                  help='a column of precomputed predictions (repeatable)')
  ev.add_argument('--features', default=None, metavar='COL,COL',
                  help='the model input columns (default: all the others)')
  ev.add_argument('--metrics', default='binary', metavar='NAMES',
                  help='comma-separated metric names or presets (binary, '
                  'multiclass, regression; default binary)')
  ev.add_argument('--weight', default=None, metavar='COLUMN',
                  help='a column of example weights')
  ev.add_argument('--slice', action='append', default=[], metavar='SPEC',
                  help="a slicing: COL, a cross COL,COL, or value buckets "
                  "COL:B1:B2:... (repeatable; overall is always computed)")
  ev.add_argument('--threshold', action='append', default=[],
                  metavar='METRIC>=V',
                  help="a value threshold on the candidate, e.g. "
                  "'accuracy>=0.8' or 'log_loss<=0.5'; '@*' applies it to "
                  "every slice, '@COL' to every slice of COL")
  ev.add_argument('--change', action='append', default=[],
                  metavar='METRIC>=V',
                  help="a change threshold against the baseline: "
                  "'accuracy>=-0.01' (may drop by at most 0.01), "
                  "'log_loss<=0' (lower is better, must not rise), a "
                  "trailing %% makes it relative: 'roc_auc>=-1%%'")
  ev.add_argument('--candidate', default=None, help='the candidate model')
  ev.add_argument('--baseline', default=None, help='the baseline model')
  ev.add_argument('--bootstrap', type=int, default=0, metavar='N',
                  help='Poisson bootstrap replicates for 95%% intervals')
  ev.add_argument('--out', default='evaluation_out', metavar='DIR',
                  help='where to write evaluation.json and evaluation.html '
                  '(default ./evaluation_out)')
  ev.add_argument('--duckdb', default=None, metavar='FILE',
                  help='also write the metrics to this DuckDB file')
  ev.add_argument('--json', action='store_true',
                  help='print the metrics and validation as JSON on stdout')


def _pairs(items, what) -> dict:
  out = {}
  for item in items:
    name, sep, value = item.partition('=')
    if not sep or not name or not value:
      raise CliError(f'{what} must be NAME=VALUE, got {item!r}.')
    if name in out:
      raise CliError(f'{what} {name!r} is given twice.')
    out[name] = value
  return out


def parse_threshold(text: str, change: bool) -> Any:
  from runinference.evaluation import ChangeThreshold, ValueThreshold
  m = _THRESHOLD.match(text)
  if not m:
    raise CliError(
        f'Cannot read threshold {text!r}: write METRIC>=VALUE or '
        'METRIC<=VALUE, optionally followed by @* or @COLUMN[,COLUMN].')
  metric, op, value, pct, where = m.groups()
  try:
    number = float(value)
  except ValueError as exc:
    raise CliError(f'Threshold {text!r}: {value!r} is not a number.') from exc
  slices = None if where is None else (
      '*' if where.strip() == '*' else [where.strip().split(',')])
  if change:
    kind = {'absolute' if not pct else 'relative':
            number / 100 if pct else number}
    return ChangeThreshold(
        metric, direction='higher_is_better' if op == '>=' else
        'lower_is_better', slices=slices, **kind)
  if pct:
    raise CliError(f'Threshold {text!r}: % is for --change thresholds.')
  return ValueThreshold(metric, **({'lower': number} if op == '>=' else
                                   {'upper': number}), slices=slices)


def _slices(specs) -> list:
  from runinference.evaluation import Bucket
  out: list = [()]
  for spec in specs:
    if ':' in spec:
      col, _, bounds = spec.partition(':')
      try:
        out.append((Bucket(col, [float(b) for b in bounds.split(':')]),))
      except ValueError as exc:
        raise CliError(f'--slice {spec!r}: {exc}') from exc
    else:
      out.append(tuple(c.strip() for c in spec.split(',')))
  return out


def read_table(path: str):
  import pandas as pd
  if not os.path.exists(path):
    raise CliError(f'{path}: no such file.')
  ext = os.path.splitext(path)[1].lower()
  try:
    if ext in ('.parquet', '.pq'):
      return pd.read_parquet(path)
    if ext in ('.jsonl', '.json', '.ndjson'):
      return pd.read_json(path, lines=ext != '.json')
    return pd.read_csv(path)
  except Exception as exc:  # pylint: disable=broad-except
    raise CliError(f'{path}: cannot be read as a table: {exc}') from exc


def predict_for_evaluation(model, batch, inference_args=None):
  """Probabilities where the model has them (classification metrics need
  them), else its predictions."""
  import numpy as np
  x = np.stack(batch)
  if hasattr(model, 'predict_proba'):
    return list(model.predict_proba(x))
  return list(model.predict(x))


def _handlers(models: dict, regression: bool) -> dict:
  from runinference.sklearn_inference import SklearnModelHandlerNumpy
  out = {}
  for name, path in models.items():
    if not os.path.exists(path):
      raise CliError(f'--model {name}={path}: no such file.')
    if os.path.splitext(path)[1].lower() not in (
        '.pkl', '.pickle', '.joblib', '.skops'):
      raise CliError(
          f'--model {name}={path}: evaluate runs scikit-learn model files '
          '(.pkl, .pickle, .joblib, .skops); for other frameworks write the '
          'predictions to a column and pass --prediction NAME=COLUMN, or use '
          'the EvaluateModel transform with any handler.')
    kwargs = {} if regression else {'inference_fn': predict_for_evaluation}
    out[name] = SklearnModelHandlerNumpy(path, **kwargs)
  return out


def _build(args):
  """The EvaluateModel transform and its input, from the arguments."""
  from runinference.evaluation import EvaluateModel
  models = _pairs(args.model, '--model')
  predictions = _pairs(args.prediction, '--prediction')
  if bool(models) == bool(predictions):
    raise CliError('Give model files (--model NAME=PATH) or prediction '
                   'columns (--prediction NAME=COLUMN), not both or neither.')
  table = read_table(args.data)
  slices = _slices(args.slice)
  slice_cols = {c.feature if hasattr(c, 'feature') else c
                for s in slices for c in s}
  used = {args.label, args.weight, *predictions.values(), *slice_cols} - {None}
  missing = sorted(used - set(table.columns))
  if missing:
    raise CliError(f'{args.data}: no column(s) {missing}; it has '
                   f'{list(table.columns)[:30]}.')
  metrics = [m.strip() for m in args.metrics.split(',') if m.strip()]
  thresholds = ([parse_threshold(t, False) for t in args.threshold] +
                [parse_threshold(t, True) for t in args.change])
  common = dict(label_key=args.label, metrics=metrics, weight_key=args.weight,
                slices=slices, thresholds=thresholds,
                candidate=args.candidate, baseline=args.baseline,
                bootstrap=args.bootstrap)
  if predictions:
    return EvaluateModel(predictions=predictions, columnar=True,
                         **common), _Parquet(table[sorted(used)])
  features = ([c.strip() for c in args.features.split(',')] if args.features
              else [c for c in table.columns if c not in used])
  missing = sorted(set(features) - set(table.columns))
  if missing or not features:
    raise CliError(f'{args.data}: feature column(s) {missing} missing.' if
                   missing else f'{args.data}: no feature columns left.')
  regression = metrics == ['regression'] or all(
      m in ('regression', 'mae', 'mse', 'rmse', 'r2', 'mape', 'example_count',
            'weighted_example_count') for m in metrics)
  handlers = _handlers(models, regression)
  import numpy as np
  text = [c for c in features if not np.issubdtype(table[c].dtype, np.number)]
  if text:
    raise CliError(f'feature column(s) {text} are not numeric; name the '
                   'model input columns with --features.')
  x = table[features].to_numpy(dtype=np.float64)
  keep = [c for c in used if c in table.columns]
  rows = [dict(r, __x=x[i]) for i, r in enumerate(
      table[keep].to_dict('records'))]
  return EvaluateModel(handlers=handlers,
                       features='__x', **common), rows


class _Parquet:
  """The table as a temporary Parquet file read in column batches (the
  table is not pickled into the pipeline graph)."""
  def __init__(self, table):
    self.table = table

  def read(self, p):
    import tempfile
    import apache_beam as beam
    self.dir = tempfile.TemporaryDirectory(prefix='ri-evaluate-')
    path = os.path.join(self.dir.name, 'data.parquet')
    self.table.to_parquet(path, row_group_size=65536, index=False)
    return p | beam.io.ReadFromParquetBatched(path)


def _evaluate(args) -> int:
  import apache_beam as beam
  from apache_beam.testing.util import assert_that
  from runinference.evaluation._artifacts import evaluation_dict, write_all
  transform, data = _build(args)
  sink = _Sink()
  with beam.Pipeline(runner='DirectRunner') as p:
    source = (data.read(p) if isinstance(data, _Parquet) else
              p | beam.Create(data, reshuffle=False))
    out = source | transform
    assert_that(out['metrics'] | beam.combiners.ToList(), sink.metrics,
                label='KeepMetrics')
    assert_that(out['validation'], sink.validation, label='KeepValidation')
  records, validation = _Sink.found['metrics'], _Sink.found['validation']
  paths = write_all(records, validation, args.out, html=True,
                    duckdb_file=args.duckdb)
  if args.json:
    print(json.dumps(evaluation_dict(records, validation), indent=1))
  else:
    _summary(records, validation, paths)
  return 0 if validation.blessed else 1


class _Sink:
  """Keeps the pipeline's outputs in this process (the local runner)."""
  found: dict = {}

  @staticmethod
  def metrics(xs):
    _Sink.found['metrics'] = list(xs)[0]

  @staticmethod
  def validation(xs):
    _Sink.found['validation'] = list(xs)[0]


def _summary(records, validation, paths) -> None:
  for r in sorted(records, key=lambda r: (r.model, len(r.slice), str(r.slice))):
    vals = ', '.join(f'{k}={v:.4g}' for k, v in r.metrics.items()
                     if isinstance(v, (int, float)))
    print(f'{r.model} [{r.slice_name}] {vals}')
  print(validation)
  for kind, path in paths.items():
    print(f'{kind}: {os.path.abspath(path)}')


def command(args: argparse.Namespace, rest=()) -> int:
  if rest:
    print(f'runinference evaluate: unrecognized arguments: {" ".join(rest)}',
          file=sys.stderr)
    return 2
  from runinference.exceptions import RunInferenceError
  try:
    return _evaluate(args)
  except CliError as e:
    print(f'runinference evaluate: {e}', file=sys.stderr)
    return e.code
  except RunInferenceError as e:
    print(f'runinference evaluate: {e}', file=sys.stderr)
    return 2
