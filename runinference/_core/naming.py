"""Public names for private modules (as httpx does): classes and functions
listed in an implementation module's ``__all__`` report the public module
they are imported from, so reprs, pickles and pipeline annotations never show
a private path."""
from __future__ import annotations

import sys
import types


def publish(namespace: dict, public_module: str, *, alias: bool = False) -> None:
  """Relabels ``namespace``'s ``__all__`` with ``public_module``.

  With ``alias`` the implementation module is also registered under the
  public name, so ``import <public_module>`` gives this very module (and a
  test that patches one of its attributes patches the running code).
  """
  impl = namespace['__name__']
  for name in namespace.get('__all__', ()):
    obj = namespace.get(name)
    if isinstance(obj, (type, types.FunctionType)) and obj.__module__ == impl:
      obj.__module__ = public_module
  if alias:
    sys.modules.setdefault(public_module, sys.modules[impl])


def _private(module: str) -> bool:
  return module.split('.')[0] == 'runinference' and any(
      part.startswith('_') for part in module.split('.'))


def relabel(namespace: dict, *extra) -> None:
  """The one relabelling loop of a public module (as httpx's ``__init__``):
  every class and function in its ``__all__`` -- and ``extra`` objects it
  hands out under other names -- that a private module defines reports this
  module. One re-exported by two public modules keeps the first."""
  public = namespace['__name__']
  for obj in [namespace[n] for n in namespace.get('__all__', ())] + list(extra):
    if (isinstance(obj, (type, types.FunctionType)) and
        _private(obj.__module__)):
      obj.__module__ = public


def label(public_module: str, *objects) -> None:
  """Gives ``objects`` (re-exported by ``public_module``) that module's name."""
  for obj in objects:
    obj.__module__ = public_module
