"""The classes and functions MLTransform artifacts may name.

Artifacts (``attributes.json``, ``transforms.json``) name each step's class,
and each class or function given as a constructor argument, by a string.
Reading them resolves these strings through this registry only: nothing named
in an artifact is ever imported. Every ``MLTransformProvider`` subclass (the
``tft`` transforms, the embeddings, your own) registers itself when its class
is defined; any other class or function passed to a step's constructor is
registered with ``register_artifact_class``.
"""
from __future__ import annotations

from typing import Any, Callable, Optional

from ..exceptions import ConfigurationError, ConfigurationTypeError

# Registered object -> the name given at registration (None: its current
# ``module:qualname``, looked up lazily since public classes are re-labelled
# with their public module after they are defined).
_ENTRIES: dict[Any, Optional[str]] = {}
_builtins_loaded = False
# The MLTransformProvider subclasses among the entries (steps of MLTransform).
_STEPS: set = set()

HOW_TO_REGISTER = (
    'register it with runinference.transforms.register_artifact_class (or, '
    'for an MLTransformProvider subclass, import the module that defines '
    'it) in the process that reads the artifacts')


def default_name(obj: Any) -> str:
  return f'{obj.__module__}:{obj.__qualname__}'


def _add(obj: Any, name: Optional[str]) -> None:
  _ENTRIES.pop(obj, None)  # re-registered: now the latest
  _ENTRIES[obj] = name


def register_artifact_class(obj: Any = None, *, name: Optional[str] = None):
  """Lets MLTransform artifacts name ``obj``, a class or a module-level
  function used as a step's constructor argument (``MLTransformProvider``
  subclasses need no registration: they are registered when defined).

  Artifacts name it ``'module:qualname'``, or ``name`` when given (a name
  that stays valid if the code moves). Register it in every process that
  writes or reads the artifacts, e.g. as a decorator where it is defined::

    @register_artifact_class
    def my_tokenizer(text): ...

    @register_artifact_class(name='myorg.MyOp')
    class MyOp(TFTOperation): ...

  Returns ``obj`` (or, without ``obj``, a decorator).
  """
  if name is not None and (not isinstance(name, str) or not name.strip()):
    raise ConfigurationError(f'name must be a non-empty string, got {name!r}.')

  def register(target: Any) -> Any:
    if not callable(target) or not hasattr(target, '__qualname__'):
      raise ConfigurationTypeError(
          'register_artifact_class takes a class or a module-level function, '
          f'got {type(target).__name__}.')
    if name is None and '<' in target.__qualname__:
      raise ConfigurationError(
          f'{target.__qualname__} is a lambda or defined inside a function, '
          'so artifacts cannot name it by module and qualname: define it at '
          'module level or register it with name=...')
    _add(target, name)
    return target

  return register if obj is None else register(obj)


def auto_register(cls: type) -> None:
  """Registers an ``MLTransformProvider`` subclass as it is defined."""
  _STEPS.add(cls)
  _add(cls, None)


def is_step(obj: Any) -> bool:
  """Whether ``obj`` is a registered ``MLTransformProvider`` subclass."""
  return isinstance(obj, type) and obj in _STEPS


def name_of(obj: Any) -> Optional[str]:
  """The name artifacts give ``obj``; None when it is not registered."""
  _load_builtins()
  try:
    if obj not in _ENTRIES:
      return None
  except TypeError:  # unhashable
    return None
  return _ENTRIES[obj] or default_name(obj)


def lookup(name: str) -> Any:
  """The registered object named ``name``; None when there is none."""
  _load_builtins()
  for obj, explicit in reversed(_ENTRIES.items()):
    if (explicit or default_name(obj)) == name:
      return obj
  return None


def _load_builtins() -> None:
  """Plain data types (our own steps register themselves as they are
  defined; ``base`` imports their modules before reading artifacts)."""
  global _builtins_loaded
  if _builtins_loaded:
    return
  import numpy as np

  data_types: list[Callable] = [bool, int, float, str, bytes]
  data_types += [
      np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16,
      np.uint32, np.uint64, np.float16, np.float32, np.float64, np.str_,
      np.bytes_
  ]
  for t in data_types:
    _ENTRIES.setdefault(t, None)
  _builtins_loaded = True

