"""``EvaluateModel`` for Beam YAML: labelled rows in; metric rows and a
validation row out.

    - type: EvaluateModel
      input: Scored
      config:
        label: y
        predictions: {candidate: score, baseline: old_score}
        metrics: [binary]
        slices: [[], [country], [country, device], {bucket: age, boundaries: [30, 60]}]
        thresholds:
          - {metric: accuracy, lower: 0.8}
          - {metric: roc_auc, change: {absolute: -0.01}}
          - {metric: log_loss, change: {direction: lower_is_better}, slices: '*'}
        output_dir: eval_out        # evaluation.json + evaluation.html

or ``model_handlers: {name: {type: ..., config: {...}}}`` (as RunInference's
``model_handler``, its ``preprocess`` turning a row into the model input)
instead of ``predictions``. Outputs: ``metrics`` (rows of model, slice,
metric, value, lower, upper -- scalar metrics; lower/upper NaN without
``bootstrap``) and ``validation`` (one row: blessed, checked, failures).
"""
from __future__ import annotations

from typing import Any, Optional

import apache_beam as beam

from runinference.base import ModelHandler
from runinference.evaluation import (Bucket, ChangeThreshold, ValueThreshold,
                                     WriteEvaluation)
from runinference.evaluation import EvaluateModel as _Evaluate
from runinference.exceptions import RunInferenceError

from .errors import YamlConfigError, expect_mapping, reject_unknown
from .handlers import build_handler

_CONFIG = ('label', 'metrics', 'predictions', 'model_handlers', 'weight',
           'slices', 'thresholds', 'candidate', 'baseline', 'bootstrap',
           'seed', 'output_dir', 'duckdb_file')


class _RowModel(ModelHandler):
  """A YAML handler run on rows: the row becomes the model input with the
  handler's ``preprocess``; the result goes through ``postprocess``."""
  def __init__(self, spec):
    self._inner = spec.handler
    self._to_input = spec.to_input
    self._postprocess = spec.postprocess

  def load_model(self):
    return self._inner.load_model()

  def run_inference(self, batch, model, inference_args=None):
    results = self._inner.run_inference(
        [self._to_input(r) for r in batch], model, inference_args)
    post = self._postprocess
    return [post(r) if post else r for r in results]

  @property
  def model_location(self):
    return self._inner.model_location

  def batch_elements_kwargs(self):
    return self._inner.batch_elements_kwargs()

  def get_metrics_namespace(self):
    return self._inner.get_metrics_namespace()

  def share_model_across_processes(self):
    return self._inner.share_model_across_processes()


def _slices(spec) -> Optional[list]:
  if spec is None:
    return None
  if not isinstance(spec, list):
    raise YamlConfigError(['slices'], 'must be a list of slicing specs')
  out = []
  for i, s in enumerate(spec):
    if isinstance(s, dict):
      reject_unknown(s, ('bucket', 'boundaries'), ['slices', i], 'bucket')
      try:
        out.append(Bucket(s['bucket'], s['boundaries']))
      except (KeyError, RunInferenceError, TypeError) as e:
        raise YamlConfigError(['slices', i], f'a bucket needs bucket: FIELD '
                              f'and boundaries: [increasing numbers] ({e})')
    elif isinstance(s, list):
      out.append(tuple(Bucket(c['bucket'], c['boundaries'])
                       if isinstance(c, dict) else c for c in s))
    else:
      out.append(s)
  return out


def _thresholds(spec) -> list:
  out = []
  for i, t in enumerate(spec or []):
    path = ['thresholds', i]
    t = dict(expect_mapping(t, path, 'threshold'))
    reject_unknown(t, ('metric', 'lower', 'upper', 'change', 'slices',
                       'model'), path, 'threshold')
    if 'metric' not in t:
      raise YamlConfigError([*path, 'metric'], 'required field missing')
    try:
      if 'change' in t:
        change = expect_mapping(t.pop('change') or {}, [*path, 'change'],
                                'change')
        reject_unknown(change, ('absolute', 'relative', 'direction'),
                       [*path, 'change'], 'change')
        out.append(ChangeThreshold(t['metric'], slices=t.get('slices'),
                                   **change))
      else:
        out.append(ValueThreshold(**t))
    except (RunInferenceError, TypeError) as e:
      raise YamlConfigError(path, str(e)) from e
  return out


def _metric_rows(rec):
  for name, value in rec.metrics.items():
    if isinstance(value, (int, float)):
      ci = rec.intervals.get(name, {})
      yield beam.Row(model=rec.model, slice=rec.slice_name, metric=name,
                     value=float(value),
                     lower=float(ci.get('lower', float('nan'))),
                     upper=float(ci.get('upper', float('nan'))))


def _validation_row(v):
  return beam.Row(blessed=bool(v.blessed), checked=int(v.checked),
                  failures=[str(f) for f in v.failures])


class _YamlEvaluate(beam.PTransform):
  def __init__(self, evaluate, output_dir, duckdb_file):
    super().__init__()
    self._evaluate = evaluate
    self._output_dir = output_dir
    self._duckdb = duckdb_file

  def expand(self, pcoll):
    out = pcoll | 'Evaluate' >> self._evaluate
    if self._output_dir:
      _ = out | 'WriteEvaluation' >> WriteEvaluation(
          self._output_dir, duckdb_file=self._duckdb)
    return {'metrics': out['metrics'] | 'MetricRows' >> beam.FlatMap(
                _metric_rows),
            'validation': out['validation'] | 'ValidationRow' >> beam.Map(
                _validation_row)}


def EvaluateModel(label: Optional[str] = None, **config: Any):  # pylint: disable=invalid-name
  """The Beam YAML ``EvaluateModel`` transform (see the module doc)."""
  reject_unknown(config, _CONFIG, [], 'EvaluateModel config')
  if not label:
    raise YamlConfigError(['label'], 'required: the label field')
  handlers = config.get('model_handlers')
  if handlers is not None:
    handlers = {
        name: _RowModel(build_handler(spec, ['model_handlers', name]))
        for name, spec in expect_mapping(handlers, ['model_handlers'],
                                         'model_handlers').items()}
  try:
    evaluate = _Evaluate(
        label_key=label, metrics=config.get('metrics', 'binary'),
        handlers=handlers, predictions=config.get('predictions'),
        features=(lambda row: row) if handlers else None,
        weight_key=config.get('weight'), slices=_slices(config.get('slices')),
        thresholds=_thresholds(config.get('thresholds')),
        candidate=config.get('candidate'), baseline=config.get('baseline'),
        bootstrap=config.get('bootstrap', 0), seed=config.get('seed'))
  except YamlConfigError:
    raise
  except RunInferenceError as e:
    raise YamlConfigError([], f'EvaluateModel: {e}') from e
  return _YamlEvaluate(evaluate, config.get('output_dir'),
                       config.get('duckdb_file'))
