"""Transform steps <-> JSON: ``{class, args, kwargs}`` with plain values, and
classes or functions as ``{"ref": name}``. Names resolve through
``_registry`` only (nothing named in an artifact is imported), and a spec is
checked whole before anything is built from it."""
from __future__ import annotations

from typing import Any

import numpy as np

from . import _registry
from ._errors import ArtifactFormatError


def encode_value(value: Any, where: str) -> Any:
  if value is None or isinstance(value, (bool, int, float, str)):
    return value
  if isinstance(value, np.generic):
    return value.item()
  if isinstance(value, list):
    return [encode_value(v, where) for v in value]
  if isinstance(value, tuple):
    return {'tuple': [encode_value(v, where) for v in value]}
  if isinstance(value, bytes):
    return {'bytes': value.decode('latin-1')}
  if isinstance(value, np.ndarray):
    return {'ndarray': value.tolist(), 'dtype': str(value.dtype)}
  if isinstance(value, dict) and all(isinstance(k, str) for k in value):
    return {'dict': {k: encode_value(v, where) for k, v in value.items()}}
  if isinstance(value, type) or callable(value) and hasattr(value, '__qualname__'):
    name = _registry.name_of(value)
    if name is None:
      raise ArtifactFormatError(
          f'{where}: {value!r:.80} cannot be named in MLTransform artifacts: '
          'it is not registered. Decorate it with runinference.transforms.'
          'register_artifact_class where it is defined (a module-level class '
          'or function), so that both writing and reading processes know it.')
    return {'ref': name}
  raise ArtifactFormatError(
      f'{where}: {type(value).__name__} value {value!r:.80} cannot be written '
      'to the JSON artifacts. Use plain values (numbers, strings, lists, '
      'dicts) or registered module-level functions/classes as constructor '
      'arguments.')


def _resolve(name: Any, where: str, what: str) -> Any:
  obj = _registry.lookup(name) if isinstance(name, str) else None
  if obj is None:
    raise ArtifactFormatError(
        f'{where} {name!r:.120} is not a registered {what}; '
        f'{_registry.HOW_TO_REGISTER}. Nothing named in artifacts is imported.')
  return obj


def check_value(value: Any, where: str) -> None:
  """Raises unless ``value`` is an encoded argument whose refs are registered."""
  if value is None or isinstance(value, (bool, int, float, str)):
    return
  if isinstance(value, list):
    for i, v in enumerate(value):
      check_value(v, f'{where}[{i}]')
    return
  keys = set(value) if isinstance(value, dict) else None
  if keys == {'tuple'} and isinstance(value['tuple'], list):
    check_value(value['tuple'], f'{where}.tuple')
  elif keys == {'dict'} and isinstance(value['dict'], dict):
    for k, v in value['dict'].items():
      check_value(v, f'{where}.dict.{k}')
  elif keys == {'ref'}:
    _resolve(value['ref'], f'{where}.ref', 'MLTransform class or function')
  elif not (keys == {'bytes'} and isinstance(value['bytes'], str) or
            keys == {'ndarray', 'dtype'} and isinstance(value['dtype'], str)):
    raise ArtifactFormatError(f'{where}: unreadable value {value!r:.80}.')


def check_spec(spec: Any, where: str) -> None:
  """Raises unless ``spec`` is ``{class, args, kwargs}`` naming a registered
  ``MLTransformProvider`` with readable, registered arguments."""
  if not (isinstance(spec, dict) and set(spec) <= {'class', 'args', 'kwargs'}
          and isinstance(spec.get('args', []), list)
          and isinstance(spec.get('kwargs', {}), dict)):
    raise ArtifactFormatError(
        f'{where}: expected {{"class": ..., "args": [...], "kwargs": {{...}}}}'
        f', got {spec!r:.120}.')
  cls = _resolve(spec.get('class'), f'{where}.class', 'MLTransform class')
  if not _registry.is_step(cls):
    raise ArtifactFormatError(
        f'{where}.class {spec["class"]!r} is registered but is not an '
        'MLTransformProvider, so it cannot be a step.')
  check_value(spec.get('args', []), f'{where}.args')
  for k, v in spec.get('kwargs', {}).items():
    check_value(v, f'{where}.kwargs.{k}')


def decode_value(value: Any) -> Any:
  if isinstance(value, list):
    return [decode_value(v) for v in value]
  if not isinstance(value, dict):
    return value
  if 'tuple' in value:
    return tuple(decode_value(v) for v in value['tuple'])
  if 'bytes' in value:
    return value['bytes'].encode('latin-1')
  if 'ndarray' in value:
    return np.asarray(value['ndarray'], dtype=value['dtype'])
  if 'dict' in value:
    return {k: decode_value(v) for k, v in value['dict'].items()}
  if 'ref' in value:
    return _resolve(value['ref'], 'MLTransform artifacts: ref',
                    'MLTransform class or function')
  raise ArtifactFormatError(f'unreadable value in artifacts: {value!r:.80}')


def encode_object(obj: Any, init_args: tuple[tuple, dict]) -> dict:
  """A transform as {class, args, kwargs} (the arguments it was built with)."""
  cls = type(obj)
  where = cls.__name__
  name = _registry.name_of(cls)
  if name is None or '<locals>' in name:
    raise ArtifactFormatError(
        f'{where} cannot be named in MLTransform artifacts: '
        + ('it is defined inside a function; define it at module level (or '
           'register it with runinference.transforms.register_artifact_class'
           "(cls, name='...'))." if name else
           'register it with runinference.transforms.register_artifact_class.'))
  args, kwargs = init_args
  return {
      'class': name,
      'args': [encode_value(a, where) for a in args],
      'kwargs': {k: encode_value(v, f'{where}({k}=...)')
                 for k, v in kwargs.items()},
  }


def decode_object(spec: dict, where: str = 'MLTransform artifacts') -> Any:
  """Rebuilds a transform; nothing is built unless all of ``spec`` checks."""
  check_spec(spec, where)
  cls = _registry.lookup(spec['class'])
  args = [decode_value(a) for a in spec.get('args', [])]
  kwargs = {k: decode_value(v) for k, v in spec.get('kwargs', {}).items()}
  try:
    return cls(*args, **kwargs)
  except Exception as e:  # pylint: disable=broad-except
    raise ArtifactFormatError(
        f'{where}: {spec["class"]} cannot be rebuilt from its saved '
        f'arguments: {type(e).__name__}: {e}') from e
