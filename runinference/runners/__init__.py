"""Runners for scaling the same pipeline out beyond one process.

``DaskRunner``: Beam's Dask runner with its data-loss defects fixed
(docs/dask_runner_fixes.md). Needs the ``dask`` extra:
``pip install 'runinference[dask]'``. See docs/scaling.md.
"""
from __future__ import annotations

import importlib

from ..exceptions import MissingDependencyError

__all__ = ['DaskRunner', 'UnsupportedOnDaskError']

_LAZY = {
    'DaskRunner': '._dask_runner',
    'UnsupportedOnDaskError': '._dask_ops',
}


def __getattr__(name: str):
  if name not in _LAZY:
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
  try:
    module = importlib.import_module(_LAZY[name], __name__)
  except ImportError as e:
    raise MissingDependencyError(
        f'runinference.runners.{name} needs dask.distributed ({e}). Install '
        "it with: pip install 'runinference[dask]'") from e
  value = getattr(module, name)
  value.__module__ = __name__
  return value
