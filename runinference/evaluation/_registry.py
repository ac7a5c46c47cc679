"""Built-in metrics by name, and the presets ``binary``, ``multiclass`` and
``regression``."""
from __future__ import annotations

from typing import Any, Sequence

from ..exceptions import ConfigurationError, ConfigurationTypeError
from .._core.options import suggest
from ._classification import (Calibration, ConfusionMatrix, ProbabilisticLoss,
                              accuracy, prf)
from ._contract import Metric, MetricCombiner, as_metric
from ._ranking import EXACT_LIMIT, OneVsRest, Ranking
from ._regression import Counts, Regression


def _builtins(threshold: float, bins: int, exact_limit: int) -> dict:
  cm, loss = ConfusionMatrix(threshold), ProbabilisticLoss()
  rank, reg, counts = Ranking(exact_limit), Regression(), Counts()
  ovr = OneVsRest(exact_limit)
  out = {
      'example_count': Metric('example_count', counts, lambda a: float(a[0])),
      'weighted_example_count': Metric('weighted_example_count', counts,
                                       lambda a: float(a[1])),
      'accuracy': Metric('accuracy', cm, accuracy),
      'confusion_matrix': Metric('confusion_matrix', cm, lambda m: m.tolist(),
                                 scalar=False),
      'log_loss': Metric('log_loss', loss, lambda a: a[0]),
      'brier_score': Metric('brier_score', loss, lambda a: a[1]),
      'roc_auc': Metric('roc_auc', rank, lambda a: a['roc_auc']),
      'pr_auc': Metric('pr_auc', rank, lambda a: a['pr_auc']),
      'roc_auc_ovr': Metric('roc_auc_ovr', ovr, lambda a: a['roc_auc_ovr']),
      'pr_auc_ovr': Metric('pr_auc_ovr', ovr, lambda a: a['pr_auc_ovr']),
      'roc_curve': Metric('roc_curve', rank, lambda a: a['roc_curve'],
                          scalar=False),
      'pr_curve': Metric('pr_curve', rank, lambda a: a['pr_curve'],
                         scalar=False),
      'calibration_curve': Metric('calibration_curve', Calibration(bins),
                                  scalar=False),
  }
  for avg in ('binary', 'macro', 'micro'):
    suffix = '' if avg == 'binary' else '_' + avg
    for i, name in enumerate(('precision', 'recall', 'f1')):
      out[name + suffix] = Metric(
          name + suffix, cm, lambda m, v=prf(avg), i=i: v(m)[i])
  for name in ('mae', 'mse', 'rmse', 'r2', 'mape'):
    out[name] = Metric(name, reg, lambda a, n=name: float(a[n]))
  return out


METRIC_NAMES = tuple(sorted(_builtins(0.5, 10, EXACT_LIMIT)))

PRESETS = {
    'binary': ('example_count', 'accuracy', 'precision', 'recall', 'f1',
               'roc_auc', 'pr_auc', 'log_loss', 'brier_score',
               'confusion_matrix', 'calibration_curve', 'roc_curve',
               'pr_curve'),
    'multiclass': ('example_count', 'accuracy', 'precision_macro',
                   'recall_macro', 'f1_macro', 'precision_micro',
                   'recall_micro', 'f1_micro', 'roc_auc_ovr', 'pr_auc_ovr',
                   'log_loss', 'brier_score', 'confusion_matrix'),
    'regression': ('example_count', 'mae', 'mse', 'rmse', 'r2', 'mape'),
}


def resolve_metrics(specs: Any, *, threshold: float = 0.5,
                    calibration_bins: int = 10,
                    auc_exact_limit: int = EXACT_LIMIT,
                    weighted: bool = False) -> list[Metric]:
  """Metrics from names, preset names, ``MetricCombiner`` instances and
  ``Metric`` objects (in order, duplicates dropped)."""
  if isinstance(specs, (str, MetricCombiner, Metric)):
    specs = [specs]
  if not isinstance(specs, Sequence) or not specs:
    raise ConfigurationTypeError(
        'metrics must be a non-empty list of metric names, presets '
        f'({", ".join(PRESETS)}) or MetricCombiner objects; got {specs!r:.100}.')
  table = _builtins(threshold, calibration_bins, auc_exact_limit)
  out: dict = {}
  for spec in specs:
    if isinstance(spec, str):
      names = list(PRESETS.get(spec, (spec,)))
      if spec in PRESETS and weighted:
        names.insert(1, 'weighted_example_count')
      for name in names:
        if name not in table:
          guess = suggest(name, list(table) + list(PRESETS))
          raise ConfigurationError(
              f'Unknown metric {name!r}' +
              (f' (did you mean {guess!r}?)' if guess else '') +
              f'. Known metrics: {", ".join(sorted(table))}; presets: '
              f'{", ".join(PRESETS)}.')
        out.setdefault(name, table[name])
    else:
      try:
        metric = as_metric(spec)
      except (TypeError, ValueError) as exc:
        raise ConfigurationTypeError(
            f'A metric must be a name or a MetricCombiner; got {spec!r:.100}'
            f' ({exc}).') from exc
      if metric.name in out:
        raise ConfigurationError(f'Two metrics are named {metric.name!r}.')
      out[metric.name] = metric
  return list(out.values())
