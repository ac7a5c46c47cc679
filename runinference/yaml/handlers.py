"""``model_handler: {type: ..., config: {...}}`` -> one of our handlers.

``type`` is a handler class name of a framework module
(``SklearnModelHandlerNumpy``, ``PytorchModelHandlerTensor``,
``OnnxModelHandlerNumpy``, ``XGBoostModelHandlerPandas``, ``TFModelHandlerNumpy``,
``HuggingFacePipelineModelHandler``, ...) or the fully qualified name of any
``ModelHandler`` subclass (your own). ``config`` holds the class's own
arguments, checked against its signature, plus ``preprocess`` /
``postprocess`` (YAML functions, see ``callables``). Function-valued
arguments (``inference_fn``, ``create_model_fn``, ...) take the same
``{callable: ...}`` form; ``model_class`` takes a qualified class name.
"""
from __future__ import annotations

import dataclasses
import enum
import importlib
import inspect
from typing import Any, Callable, Optional, Sequence

from runinference.base import ModelHandler
from runinference.exceptions import InvalidInputError

from .callables import UserFunction, parse_function
from .errors import PathPart, YamlConfigError, expect_mapping, reject_unknown


def _framework_modules() -> list[str]:
  """The public modules that define handlers: every
  ``runinference.<framework>_inference``, and ``runinference.remote``
  (models behind a server)."""
  import pkgutil

  import runinference
  return sorted(f'runinference.{m.name}'
                for m in pkgutil.iter_modules(runinference.__path__)
                if m.name.endswith('_inference')) + ['runinference.remote']


def _spelled_modules(type_name: str) -> list[str]:
  """Framework modules whose framework ``type_name`` spells
  (``SklearnModelHandlerNumpy`` -> sklearn_inference)."""
  lowered = type_name.lower()
  return [m for m in _framework_modules() if m.endswith('_inference') and
          m.rsplit('.', 1)[1][:-len('_inference')].replace('_', '') in lowered]


_PROCESSING = ('preprocess', 'postprocess')


def _public_handlers(module_name: str) -> dict[str, type]:
  """The handler classes a public framework module defines (by their
  public ``__module__``; the module object may be an alias)."""
  module = importlib.import_module(module_name)
  return {
      name: obj for name, obj in vars(module).items()
      if isinstance(obj, type) and issubclass(obj, ModelHandler) and
      not name.startswith('_') and obj.__module__ == module_name
  }


def known_handler_types() -> list[str]:
  """Every handler type name usable in YAML (imports each framework module
  that imports; frameworks that are not installed are left out)."""
  names = []
  for module_name in _framework_modules():
    try:
      names += _public_handlers(module_name)
    except ImportError:
      continue
  return sorted(names)


def resolve_handler_class(type_name, path: Sequence[PathPart]) -> type:
  """A handler class from its YAML ``type``."""
  if not isinstance(type_name, str) or not type_name:
    raise YamlConfigError(path, f'must be a handler type name, got '
                          f'{type_name!r}')
  if '.' in type_name:
    module_name, _, attr = type_name.rpartition('.')
    try:
      cls = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as e:
      raise YamlConfigError(path, f'cannot import {type_name!r}: {e}') from e
  else:
    # Look where the name points first; ``TF...`` is found among the rest.
    spelled = _spelled_modules(type_name)
    rest = [m for m in _framework_modules() if m not in spelled]
    cls, missing = None, None
    for module_name in spelled + rest:
      try:
        cls = _public_handlers(module_name).get(type_name)
      except ImportError as e:  # that framework is not installed
        missing = missing or (e if module_name in spelled else None)
        continue
      if cls is not None:
        break
    if cls is None and missing is not None:
      raise YamlConfigError(
          path, f'{type_name} needs a framework that is not installed '
          f'({missing}); install the matching extra, e.g. '
          f"pip install 'runinference[sklearn]'") from missing
    if cls is None:
      raise YamlConfigError(
          path, f'unknown model handler type {type_name!r}; known types: '
          f'{", ".join(known_handler_types())}, or the fully qualified name '
          'of a ModelHandler subclass')
  if not (isinstance(cls, type) and issubclass(cls, ModelHandler)):
    raise YamlConfigError(path, f'{type_name!r} is not a ModelHandler class')
  return cls


def _parameters(cls: type) -> dict[str, inspect.Parameter]:
  """Named parameters the class accepts, following ``**kwargs`` up the MRO."""
  params: dict[str, inspect.Parameter] = {}
  for klass in cls.__mro__:
    init = klass.__dict__.get('__init__')
    if init is None:
      continue
    sig = inspect.signature(init)
    for name, p in list(sig.parameters.items())[1:]:
      if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
        params.setdefault(name, p)
    if not any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values()):
      break
    if klass is ModelHandler:
      params.setdefault('env_vars', inspect.Parameter(
          'env_vars', inspect.Parameter.KEYWORD_ONLY, default=None))
      break
  return params


def _required(cls: type) -> list[str]:
  init = cls.__init__
  return [
      name for name, p in list(inspect.signature(init).parameters.items())[1:]
      if p.default is p.empty and p.kind not in (p.VAR_KEYWORD,
                                                 p.VAR_POSITIONAL)
  ]


def _is_function_spec(value) -> bool:
  """``{callable: ...}``, ``{expression: ...}`` or ``{path: ..., name: ...}``
  (and nothing else): a dict argument such as ``load_model_args`` is not."""
  if not isinstance(value, dict) or not value:
    return False
  keys = set(value)
  return keys <= {'callable', 'expression', 'path', 'name'} and bool(
      keys & {'callable', 'expression'} or keys == {'path', 'name'})


def _convert(name: str, value, param: inspect.Parameter,
             path: Sequence[PathPart]):
  if _is_function_spec(value):
    return parse_function(value, path, name)
  if name.endswith('_class') and isinstance(value, str):
    module_name, _, attr = value.rpartition('.')
    try:
      return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError) as e:
      raise YamlConfigError(
          path, f'{name} must be the fully qualified name of a class, '
          f'cannot import {value!r}: {e}') from e
  default = param.default
  if isinstance(default, enum.Enum) and isinstance(value, str):
    enum_type = type(default)
    for member in enum_type:
      if value in (member.name, member.value):
        return member
    raise YamlConfigError(
        path, f'unknown {name} {value!r}; expected one of '
        f'{[m.name for m in enum_type]}')
  return value


@dataclasses.dataclass
class HandlerSpec:
  """A handler built from YAML and the row functions that go with it."""
  handler: ModelHandler
  to_input: Callable[[Any], Any]
  postprocess: Optional[UserFunction]


def build_handler(spec, path: Sequence[PathPart]) -> HandlerSpec:
  """``{type, config}`` -> ``HandlerSpec``; errors name the field's path."""
  spec = expect_mapping(spec, path, 'model_handler')
  reject_unknown(spec, ('type', 'config'), path, 'model_handler')
  if 'type' not in spec:
    raise YamlConfigError([*path, 'type'], 'required field missing '
                          '(the handler class, e.g. SklearnModelHandlerNumpy)')
  cls = resolve_handler_class(spec['type'], [*path, 'type'])
  config = dict(expect_mapping(spec.get('config', {}),
                               [*path, 'config'], 'model_handler config'))
  cpath = [*path, 'config']
  processing = {k: parse_function(config.pop(k), [*cpath, k], k)
                for k in _PROCESSING if k in config}
  params = _parameters(cls)
  reject_unknown(config, [*params, *_PROCESSING], cpath,
                 f'{cls.__name__} config')
  missing = [n for n in _required(cls) if n not in config]
  if missing:
    raise YamlConfigError([*cpath, missing[0]],
                          f'required field of {cls.__name__} missing')
  kwargs = {
      name: _convert(name, value, params[name], [*cpath, name])
      for name, value in config.items()
  }
  try:
    handler = cls(**kwargs)
  except Exception as e:  # the handler's own validation of its arguments
    raise YamlConfigError(cpath, f'{cls.__name__}: {type(e).__name__}: '
                          f'{e}') from e
  return HandlerSpec(handler, ModelInput(input_kind(cls),
                                         processing.get('preprocess')),
                     processing.get('postprocess'))


def input_kind(cls: type) -> str:
  """What the handler's ``run_inference`` takes, from its class name."""
  name = cls.__name__
  if name.endswith('KeyedTensor'):
    return 'keyed_tensor'
  if name.endswith('Tensor'):
    return 'tf_tensor' if name.startswith('TF') else 'tensor'
  if name.lower().endswith('numpy'):
    return 'numpy'
  if name.endswith('Pandas'):
    return 'pandas'
  return 'raw'


def _as_array(x):
  import numpy as np
  if isinstance(x, (list, tuple)) or np.isscalar(x):
    return np.asarray(x, dtype=np.float32)
  return x


def _to_kind(kind: str, x):
  if kind == 'numpy':
    return _as_array(x)
  if kind == 'tensor':
    import torch
    return x if isinstance(x, torch.Tensor) else torch.as_tensor(_as_array(x))
  if kind == 'keyed_tensor' and isinstance(x, dict):
    import torch
    return {k: v if isinstance(v, torch.Tensor) else torch.as_tensor(
        _as_array(v)) for k, v in x.items()}
  if kind == 'tf_tensor':
    import tensorflow as tf
    return x if isinstance(x, tf.Tensor) else tf.convert_to_tensor(_as_array(x))
  if kind == 'pandas' and isinstance(x, dict):
    import pandas as pd
    return pd.DataFrame([x])
  return x


@dataclasses.dataclass
class ModelInput:
  """Row -> the handler's example: ``preprocess`` (or the default: the row's
  fields in order, as a vector / one-row DataFrame / the single field's
  value), then lists become the handler's array type."""
  kind: str
  preprocess: Optional[UserFunction] = None

  def __call__(self, row):
    if self.preprocess is not None:
      return _to_kind(self.kind, self.preprocess(row))
    fields = row._asdict() if hasattr(row, '_asdict') else None
    if fields is None:
      return _to_kind(self.kind, row)
    if self.kind in ('numpy', 'tensor', 'tf_tensor'):
      try:
        return _to_kind(self.kind, list(fields.values()))
      except (TypeError, ValueError) as e:
        raise InvalidInputError(
            f'the row {fields} is not all numbers, so it cannot be the '
            f'model\'s input vector as it is ({e}); give the handler a '
            'preprocess, e.g. {expression: "[x, y]"}') from e
    if self.kind in ('pandas', 'keyed_tensor'):
      return _to_kind(self.kind, dict(fields))
    return next(iter(fields.values())) if len(fields) == 1 else dict(fields)
