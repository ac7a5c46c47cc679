"""Thresholds and the validation result (TFMA's "blessing").

``ValueThreshold``: a metric must lie within ``[lower, upper]``.
``ChangeThreshold``: the candidate's metric against the baseline's, with
``diff = candidate - baseline``: for ``higher_is_better`` it passes when
``diff >= absolute`` and ``diff / |baseline| >= relative`` (so
``absolute=-0.01`` allows a drop of at most 0.01); for ``lower_is_better``
when ``diff <= absolute`` and ``diff / |baseline| <= relative``.

Each threshold applies to ``slices``: None (the default) is the overall
slice only, ``'*'`` every slice, or a list whose items are a slice as a dict
(``{'country': 'US'}``) or a slicing spec's feature names (``['country']``:
every slice of that spec).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Optional, Sequence

from ..exceptions import ConfigurationError
from ._slicing import slice_name

DIRECTIONS = ('higher_is_better', 'lower_is_better')


@dataclasses.dataclass
class SliceMetrics:
  """One model's metrics on one slice (``slice``: ``(feature, value)``
  pairs, ``()`` overall); ``intervals`` per metric under bootstrap."""
  model: str
  slice: tuple
  metrics: dict
  intervals: dict = dataclasses.field(default_factory=dict)

  @property
  def slice_name(self) -> str:
    return slice_name(self.slice)

  def to_dict(self) -> dict:
    return {'model': self.model, 'slice': [list(p) for p in self.slice],
            'slice_name': self.slice_name, 'metrics': self.metrics,
            'intervals': self.intervals}


def _check_slices(slices):
  if slices is None or slices == '*':
    return slices
  if isinstance(slices, (dict, str)):
    slices = [slices]
  out = []
  for s in slices:
    if isinstance(s, dict):
      out.append(tuple(sorted(s.items())))
    elif isinstance(s, str):
      out.append(('spec', (s,)))
    elif isinstance(s, (list, tuple)) and all(isinstance(c, str) for c in s):
      out.append(('spec', tuple(s)))
    else:
      raise ConfigurationError(
          f'A threshold slice must be a dict or a list of feature names, got '
          f'{s!r:.100}.')
  return tuple(out)


def _applies(slices, key: tuple) -> bool:
  if slices is None:
    return key == ()
  if slices == '*':
    return True
  for s in slices:
    if s and s[0] == 'spec':
      if tuple(n for n, _ in key) == s[1]:
        return True
    elif tuple(sorted(key)) == s:
      return True
  return False


@dataclasses.dataclass(frozen=True)
class ValueThreshold:
  """``lower <= metric <= upper`` on ``model`` (default: the candidate)."""
  metric: str
  lower: Optional[float] = None
  upper: Optional[float] = None
  slices: Any = None
  model: Optional[str] = None

  def __post_init__(self):
    if self.lower is None and self.upper is None:
      raise ConfigurationError(
          f'ValueThreshold({self.metric!r}) needs lower and/or upper.')
    object.__setattr__(self, 'slices', _check_slices(self.slices))

  def describe(self) -> str:
    return f'{self.metric} ' + _conditions(
        (self.lower, '>= {:g}'), (self.upper, '<= {:g}'))

  def failure(self, value: float, baseline: Optional[float]) -> Optional[str]:
    if value is None or math.isnan(value):
      return 'no value (NaN)'
    if self.lower is not None and value < self.lower:
      return f'{value:.6g} < {self.lower:g}'
    if self.upper is not None and value > self.upper:
      return f'{value:.6g} > {self.upper:g}'
    return None


@dataclasses.dataclass(frozen=True)
class ChangeThreshold:
  """The candidate's ``metric`` against the baseline's (see module doc)."""
  metric: str
  direction: str = 'higher_is_better'
  absolute: Optional[float] = None
  relative: Optional[float] = None
  slices: Any = None

  def __post_init__(self):
    if self.direction not in DIRECTIONS:
      raise ConfigurationError(
          f'ChangeThreshold direction must be one of {DIRECTIONS}, got '
          f'{self.direction!r}.')
    if self.absolute is None and self.relative is None:
      object.__setattr__(self, 'absolute', 0.0)
    object.__setattr__(self, 'slices', _check_slices(self.slices))

  def describe(self) -> str:
    op = '>=' if self.direction == 'higher_is_better' else '<='
    return f'{self.metric} ' + _conditions(
        (self.absolute, f'change {op} {{:g}}'),
        (self.relative, f'relative change {op} {{:g}}')) + ' vs baseline'

  def failure(self, value: float, baseline: Optional[float]) -> Optional[str]:
    if baseline is None:
      return 'the baseline has no value for this slice'
    if any(v is None or math.isnan(v) for v in (value, baseline)):
      return f'no value (candidate {value}, baseline {baseline})'
    diff = value - baseline
    sign = 1 if self.direction == 'higher_is_better' else -1
    if self.absolute is not None and sign * (diff - self.absolute) < 0:
      return (f'change {diff:+.6g} (candidate {value:.6g}, baseline '
              f'{baseline:.6g}) fails {self.absolute:g}')
    if self.relative is not None:
      rel = diff / abs(baseline) if baseline else math.copysign(
          math.inf, diff) if diff else 0.0
      if sign * (rel - self.relative) < 0:
        return (f'relative change {rel:+.6g} (candidate {value:.6g}, '
                f'baseline {baseline:.6g}) fails {self.relative:g}')
    return None


def _conditions(*conditions: tuple[Optional[float], str]) -> str:
  """The ' and '-joined texts (formatted with their value) of the conditions
  whose value is set."""
  return ' and '.join(text.format(value) for value, text in conditions
                      if value is not None)


@dataclasses.dataclass(frozen=True)
class ThresholdFailure:
  model: str
  slice: tuple
  metric: str
  threshold: str
  reason: str

  def __str__(self):
    return (f'{self.model} [{slice_name(self.slice)}] {self.threshold}: '
            f'{self.reason}')


@dataclasses.dataclass
class ValidationResult:
  """``blessed`` when every threshold passed; ``failures`` names each one
  that did not; ``checked`` counts (threshold, slice) checks made."""
  blessed: bool
  failures: list
  checked: int
  candidate: Optional[str] = None
  baseline: Optional[str] = None

  def __bool__(self):
    return self.blessed

  def __str__(self):
    if self.blessed:
      return f'blessed ({self.checked} threshold check(s) passed)'
    return (f'not blessed: {len(self.failures)} of {self.checked} threshold '
            'check(s) failed: ' + '; '.join(str(f) for f in self.failures))

  def to_dict(self) -> dict:
    return {'blessed': self.blessed, 'checked': self.checked,
            'candidate': self.candidate, 'baseline': self.baseline,
            'failures': [{**dataclasses.asdict(f), 'slice': [
                list(p) for p in f.slice], 'message': str(f)}
                         for f in self.failures]}


def validate(records: Sequence[SliceMetrics], thresholds: Sequence,
             candidate: Optional[str],
             baseline: Optional[str]) -> ValidationResult:
  """Checks ``thresholds`` against ``records``."""
  by_key = {(r.model, r.slice): r for r in records}
  failures, checked = [], 0
  for t in thresholds:
    model = candidate if isinstance(t, ChangeThreshold) else (
        t.model or candidate)
    slices = sorted({r.slice for r in records if r.model == model and
                     _applies(t.slices, r.slice)}, key=str)
    if not slices:
      checked += 1
      failures.append(ThresholdFailure(
          model or '', (), t.metric, t.describe(),
          'no slice of this model matches the threshold\'s slices'))
      continue
    for key in slices:
      checked += 1
      value = by_key[(model, key)].metrics.get(t.metric)
      base = None
      if isinstance(t, ChangeThreshold):
        b = by_key.get((baseline, key))
        base = None if b is None else b.metrics.get(t.metric)
      reason = t.failure(value, base)
      if reason:
        failures.append(
            ThresholdFailure(model, key, t.metric, t.describe(), reason))
  return ValidationResult(not failures, failures, checked, candidate,
                          baseline)


def check_thresholds(thresholds: Sequence, scalar_metrics: Sequence[str],
                     models: Sequence[str], baseline: Optional[str]) -> list:
  from .._core.options import suggest
  out = list(thresholds or [])
  for t in out:
    if not isinstance(t, (ValueThreshold, ChangeThreshold)):
      raise ConfigurationError(
          f'thresholds must be ValueThreshold or ChangeThreshold objects, got '
          f'{t!r:.100}.')
    if t.metric not in scalar_metrics:
      guess = suggest(t.metric, scalar_metrics)
      raise ConfigurationError(
          f'Threshold on {t.metric!r}, which is not a computed scalar metric'
          + (f' (did you mean {guess!r}?)' if guess else '') +
          f'. Computed: {", ".join(scalar_metrics)}.')
    if isinstance(t, ChangeThreshold) and baseline is None:
      raise ConfigurationError(
          f'ChangeThreshold on {t.metric!r} needs a baseline model; models: '
          f'{list(models)}.')
    if isinstance(t, ValueThreshold) and t.model and t.model not in models:
      raise ConfigurationError(
          f'ValueThreshold names model {t.model!r}; models: {list(models)}.')
  return out


__all__ = ['ChangeThreshold', 'SliceMetrics', 'ThresholdFailure',
           'ValidationResult', 'ValueThreshold']
