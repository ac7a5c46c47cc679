"""``RunInference`` for Beam YAML: rows in, rows out.

Each output row is the input row plus one field (``inference_tag``, default
``inference``) holding the prediction after ``postprocess`` (by default the
``PredictionResult``), exactly as Beam's own YAML RunInference. Beyond it:
every handler of ours, ``key:`` to route rows to models by a field's value,
and dead letters through YAML ``error_handling``.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Optional

import apache_beam as beam
from apache_beam.typehints.row_type import RowTypeConstraint
from apache_beam.typehints.schemas import named_fields_from_element_type

from runinference.report import live as live_metrics
from runinference.base import KeyedModelHandler, KeyModelMapping, ModelHandler
from runinference.base import RunInference as _CoreRunInference

from runinference._core.contract import forwarding
from runinference.exceptions import ConfigurationError

from .errors import YamlConfigError, expect_mapping, reject_unknown
from .handlers import HandlerSpec, build_handler

_NAMESPACE = 'runinference_yaml'


# What _RowHandler hands on unchanged to the handler it wraps.
_FORWARDED = (
    'load_model',
    'model_location',
    'model_sha256',
    'get_metrics_namespace',
    'get_resource_hints',
    'batch_elements_kwargs',
    'validate_inference_args',
    'update_model_path',
    'update_model_paths',
    'set_environment_vars',
    'share_model_across_processes',
    'overlap_by_default',
    'model_copies',
    'override_metrics',
    'should_garbage_collect_on_timeout',
)


class _RowHandler(forwarding('_inner', _FORWARDED, module=__name__),
                  ModelHandler):
  """Runs a handler on rows: converts each row to the model's input, runs the
  wrapped handler, and returns the row with the prediction appended. Row
  conversion and postprocessing run inside the batch, so a row that fails
  either is bisected out into the dead letters like a failed inference."""

  def __init__(self, spec: HandlerSpec, inference_tag: str):
    self._inner = spec.handler
    self._to_input = spec.to_input
    self._postprocess = spec.postprocess
    self._tag = inference_tag

  def run_inference(self, batch, model, inference_args=None):
    rows = list(batch)
    results = self._inner.run_inference(
        [self._to_input(r) for r in rows], model, inference_args)
    out = []
    for row, result in zip(rows, results, strict=True):
      value = self._postprocess(result) if self._postprocess else result
      out.append(beam.Row(**row._asdict(), **{self._tag: value}))
    live_metrics.counter_inc(_NAMESPACE, 'rows_inferred', len(out))
    return out

  def get_num_bytes(self, batch) -> int:
    return self._inner.get_num_bytes([self._to_input(r) for r in batch])


@dataclasses.dataclass
class _ErrorRow:
  """A dead-letter record -> Beam YAML's error row (element, msg, stack)."""
  keyed: bool
  step: str = 'RunInference'

  def __call__(self, record):
    element, (_, msg, stack) = record
    if isinstance(element, list) and len(element) == 1:
      element = element[0]  # failed inferences come as one-row batches
    if self.keyed:
      element = element[1]
    live_metrics.counter_inc(_NAMESPACE, 'dead_letters', 1)
    live_metrics.error_sample(self.step, msg, repr(element))
    return beam.Row(element=element, msg=str(msg),
                    stack=''.join(stack) if not isinstance(stack, str) else stack)


@dataclasses.dataclass
class _Count:
  """Counts each row passing into (``'in'``, also ``rows_in``) or out of
  (``'out'``) the step, for the live metrics."""
  step: str
  direction: str

  def __call__(self, row):
    if self.direction == 'in':
      live_metrics.counter_inc(_NAMESPACE, 'rows_in', 1)
    live_metrics.step_count(self.step, self.direction)
    return row


@dataclasses.dataclass
class _KeyBy:
  field: str

  def __call__(self, row):
    return getattr(row, self.field), row


def _parse_error_handling(spec) -> Optional[dict]:
  if spec is None:
    return None
  spec = expect_mapping(spec, ['error_handling'], 'error_handling')
  reject_unknown(spec, ('output', 'threshold'), ['error_handling'],
                 'error_handling')
  if not isinstance(spec.get('output'), str) or not spec['output']:
    raise YamlConfigError(['error_handling', 'output'],
                          'required: the name of the dead-letter output')
  threshold = spec.get('threshold', 1)
  if not isinstance(threshold, (int, float)) or not 0 <= threshold <= 1:
    raise YamlConfigError(['error_handling', 'threshold'],
                          f'must be a number in [0, 1], got {threshold!r}')
  return {'output': spec['output'], 'threshold': threshold}


def _parse_routes(spec, key: str, tag: str) -> KeyedModelHandler:
  if not isinstance(spec, list) or not spec:
    raise YamlConfigError(['model_handler'], (
        f'with key: {key}, model_handler must be a list of '
        '{keys: [...], type: ..., config: {...}} (one entry per model)'))
  mappings = []
  for i, entry in enumerate(spec):
    entry = dict(expect_mapping(entry, ['model_handler', i], 'route'))
    keys = entry.pop('keys', None)
    if not isinstance(keys, list) or not keys:
      raise YamlConfigError(['model_handler', i, 'keys'],
                            f'required: the values of {key} this model serves')
    handler = _RowHandler(build_handler(entry, ['model_handler', i]), tag)
    mappings.append(KeyModelMapping(keys, handler))
  try:
    return KeyedModelHandler(mappings)
  except ValueError as e:
    raise YamlConfigError(['model_handler'], str(e)) from e


class RunInference(beam.PTransform):
  """Beam YAML ``RunInference`` over any runinference model handler.

  Args:
    model_handler: ``{type: <handler class>, config: {...}}``; with ``key``
      a list of ``{keys: [...], type: ..., config: {...}}``.
    inference_tag: name of the appended field (default ``inference``).
    inference_args: extra keyword arguments for every model call.
    key: a field whose value picks the model (keyed multi-model use).
    error_handling: ``{output: <name>}`` sends failed rows there as
      ``(element, msg, stack)`` rows instead of failing the pipeline.
  """

  def __init__(self, model_handler: Any = None, inference_tag: str = 'inference',
               inference_args: Optional[Mapping[str, Any]] = None,
               key: Optional[str] = None, error_handling: Optional[Any] = None,
               **unknown):
    super().__init__()
    reject_unknown(unknown, ('model_handler', 'inference_tag', 'inference_args', 'key',
                    'error_handling'),
                   [], 'RunInference config')
    if model_handler is None:
      raise YamlConfigError(['model_handler'], 'required field missing')
    if not isinstance(inference_tag, str) or not inference_tag.isidentifier():
      raise YamlConfigError(['inference_tag'],
                            f'must be a field name, got {inference_tag!r}')
    if inference_args is not None:
      expect_mapping(inference_args, ['inference_args'], 'inference_args')
    if key is not None and not isinstance(key, str):
      raise YamlConfigError(['key'], f'must be a field name, got {key!r}')
    self._tag = inference_tag
    self._key = key
    self._inference_args = dict(inference_args) if inference_args else None
    self._errors = _parse_error_handling(error_handling)
    if key is None:
      self._handler = _RowHandler(
          build_handler(model_handler, ['model_handler']), inference_tag)
    else:
      self._handler = _parse_routes(model_handler, key, inference_tag)

  def _output_schema(self, pcoll) -> Any:
    try:
      fields = named_fields_from_element_type(pcoll.element_type)
    except (TypeError, ValueError) as e:
      raise ConfigurationError(
          'RunInference in YAML needs rows with a schema as input (what '
          f'Beam YAML transforms produce), got {pcoll.element_type}') from e
    names = [n for n, _ in fields]
    if self._key is not None and self._key not in names:
      raise YamlConfigError(['key'], f'no field {self._key!r} in the input '
                            f'rows (fields: {names})')
    if self._tag in names:
      raise YamlConfigError(['inference_tag'], f'{self._tag!r} is already a '
                            'field of the input rows; choose another name')
    return RowTypeConstraint.from_fields(fields + [(self._tag, Any)])

  def expand(self, pcoll):
    schema = self._output_schema(pcoll)
    rows = pcoll | 'CountIn' >> beam.Map(_Count(self.label, 'in'))
    if self._key is not None:
      rows = rows | 'KeyBy' >> beam.Map(_KeyBy(self._key))
    inference = _CoreRunInference(self._handler, inference_args=self._inference_args)
    if self._errors:
      inference = inference.with_exception_handling(
          threshold=self._errors['threshold'])
      main, dlq = rows | 'RunInference' >> inference
    else:
      main = rows | 'RunInference' >> inference
    if self._key is not None:
      main = main | 'DropKey' >> beam.Map(lambda kv: kv[1])
    main = main | 'ToRows' >> beam.Map(_Count(self.label, 'out')).with_output_types(
        schema)
    if not self._errors:
      return main
    failed = ([dlq.failed_inferences, *dlq.failed_preprocessing,
               *dlq.failed_postprocessing] | 'AllFailures' >> beam.Flatten())
    errors = failed | 'ErrorRows' >> beam.Map(
        _ErrorRow(self._key is not None, self.label)).with_output_types(
            RowTypeConstraint.from_fields([('element', pcoll.element_type),
                                           ('msg', str), ('stack', str)]))
    return {'good': main, self._errors['output']: errors}

