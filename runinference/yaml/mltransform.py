"""``MLTransform`` for Beam YAML (as Beam's own ``MLTransform`` YAML form)::

    - type: MLTransform
      config:
        write_artifact_location: artifacts/
        transforms:
          - type: ScaleTo01
            config: {columns: [x]}
          - type: ComputeAndApplyVocabulary
            config: {columns: [word]}

``type`` is a transform of ``runinference.transforms.tft`` (or of
``runinference.transforms.embeddings.*``), or any fully qualified class name.
"""
from __future__ import annotations

import importlib
import inspect
from typing import Any, Optional

import apache_beam as beam
from apache_beam.typehints.row_type import RowTypeConstraint

from runinference.report import live as live_metrics

from .errors import YamlConfigError, expect_mapping, reject_unknown

_NAMESPACE = 'runinference_yaml'

_MODULES = ('runinference.transforms.tft',
            'runinference.transforms.embeddings.huggingface')


def _resolve(name, path) -> type:
  if not isinstance(name, str) or not name:
    raise YamlConfigError(path, f'must be a transform name, got {name!r}')
  if '.' in name:
    module_name, _, attr = name.rpartition('.')
    candidates = [(module_name, attr)]
  else:
    candidates = [(m, name) for m in _MODULES]
  for module_name, attr in candidates:
    try:
      obj = getattr(importlib.import_module(module_name), attr, None)
    except ImportError:
      continue
    if isinstance(obj, type):
      return obj
  raise YamlConfigError(path, f'unknown MLTransform transform {name!r}; use a '
                        'class of runinference.transforms.tft (e.g. ScaleTo01) '
                        'or a fully qualified class name')


def build_operation(spec, path: list):
  """``{type, config}`` -> an MLTransform operation."""
  spec = expect_mapping(spec, path, 'transform')
  reject_unknown(spec, ('type', 'config'), path, 'transform')
  cls = _resolve(spec.get('type'), [*path, 'type'])
  config = expect_mapping(spec.get('config', {}), [*path, 'config'],
                          'transform config')
  params = inspect.signature(cls.__init__).parameters
  if not any(p.kind == p.VAR_KEYWORD for p in params.values()):
    reject_unknown(config, [n for n in params if n != 'self'],
                   [*path, 'config'], f'{cls.__name__} config')
  try:
    return cls(**config)
  except Exception as e:  # the operation's own check of its arguments
    raise YamlConfigError([*path, 'config'],
                          f'{cls.__name__}: {type(e).__name__}: {e}') from e


class _Count:
  """Counts rows in the live metrics (the CLI's progress line) as they pass."""

  def __init__(self, name: str, step: str = 'MLTransform'):
    self.name = name
    self.step = step

  def __call__(self, row):
    live_metrics.counter_inc(_NAMESPACE, self.name, 1)
    live_metrics.step_count(self.step, 'in' if self.name.endswith('_in')
                            else 'out')
    return row


class _ErrorRow:
  def __init__(self, step: str = 'MLTransform'):
    self.step = step

  def __call__(self, bad):
    element = getattr(bad, 'element', bad)
    msg = str(getattr(bad, 'msg', ''))
    live_metrics.counter_inc(_NAMESPACE, 'dead_letters', 1)
    live_metrics.error_sample(self.step, msg, repr(element))
    return beam.Row(element=element, msg=msg,
                    stack=str(getattr(bad, 'stack', '')))


class MLTransform(beam.PTransform):
  """Beam YAML ``MLTransform`` over runinference's TensorFlow-free
  implementation; ``error_handling: {output: name}`` sends failing rows
  there."""

  def __init__(self, write_artifact_location: Optional[str] = None,
               read_artifact_location: Optional[str] = None,
               transforms: Optional[list] = None,
               error_handling: Optional[Any] = None, **unknown):
    super().__init__()
    reject_unknown(unknown, ('write_artifact_location', 'read_artifact_location',
                    'transforms', 'error_handling'),
                   [], 'MLTransform config')
    if transforms is not None and not isinstance(transforms, list):
      raise YamlConfigError(['transforms'], 'must be a list of '
                            '{type: ..., config: {...}}')
    ops = [build_operation(t, ['transforms', i])
           for i, t in enumerate(transforms or [])]
    from runinference.transforms.base import MLTransform as _MLTransform
    try:
      self._inner = _MLTransform(
          write_artifact_location=write_artifact_location,
          read_artifact_location=read_artifact_location, transforms=ops)
    except ValueError as e:
      raise YamlConfigError([], str(e)) from e
    self._errors = None
    if error_handling is not None:
      error_handling = expect_mapping(error_handling, ['error_handling'],
                                      'error_handling')
      reject_unknown(error_handling, ('output',), ['error_handling'],
                     'error_handling')
      if not error_handling.get('output'):
        raise YamlConfigError(['error_handling', 'output'], 'required: the '
                              'name of the dead-letter output')
      self._errors = error_handling['output']

  def expand(self, pcoll):
    rows = pcoll | 'CountIn' >> beam.Map(_Count('mltransform_rows_in', self.label)
                                         ).with_output_types(pcoll.element_type)
    if self._errors is None:
      out = rows | 'MLTransform' >> self._inner
      return out | 'CountOut' >> beam.Map(_Count('mltransform_rows_out',
                                                 self.label)
                                          ).with_output_types(out.element_type)
    good, bad = rows | 'MLTransform' >> self._inner.with_exception_handling()
    good = good | 'CountOut' >> beam.Map(_Count('mltransform_rows_out',
                                                self.label)
                                         ).with_output_types(good.element_type)
    errors = bad | 'ErrorRows' >> beam.Map(_ErrorRow(self.label)
                                           ).with_output_types(
        RowTypeConstraint.from_fields([('element', pcoll.element_type),
                                       ('msg', str), ('stack', str)]))
    return {'good': good, self._errors: errors}

