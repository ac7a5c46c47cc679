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


def _claimable(module: str, public: str) -> bool:
  """A home a public module takes its names from: a private module, or one
  of its own submodules."""
  parts = module.split('.')
  return parts[0] == 'runinference' and (
      any(part.startswith('_') for part in parts) or
      module.startswith(public + '.'))


def relabel(namespace: dict, *extra) -> None:
  """The one relabelling loop of a public module (as httpx's ``__init__``):
  every class and function in its ``__all__`` -- and ``extra`` objects it
  hands out under other names -- defined in a private module or in one of
  its own submodules reports this module. One re-exported by two public
  modules keeps the first; names not loaded yet (lazy) are skipped."""
  public = namespace['__name__']
  objects = [namespace[n] for n in namespace.get('__all__', ())
             if n in namespace]
  for obj in objects + list(extra):
    if (isinstance(obj, (type, types.FunctionType)) and
        _claimable(obj.__module__, public)):
      obj.__module__ = public
