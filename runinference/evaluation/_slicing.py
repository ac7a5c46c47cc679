"""Slicing: overall, by one feature, by feature crosses, by value buckets.

A slice key is a tuple of ``(feature, value)`` pairs (``()`` is the whole
data set). A block is cut into its slices with one sort of the combined
slice codes per spec -- no Python work per example.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Iterable, Optional, Sequence, Union

import numpy as np

from ..exceptions import ConfigurationError, ConfigurationTypeError
from ._blocks import Block


@dataclasses.dataclass(frozen=True)
class Bucket:
  """Slices a numeric feature by value ranges: ``boundaries`` [b0, b1, ...]
  give the buckets (-inf, b0), [b0, b1), ..., [bn, inf), named as such."""
  feature: str
  boundaries: tuple

  def __init__(self, feature: str, boundaries: Sequence[float]):
    bounds = tuple(float(b) for b in boundaries)
    if not bounds or list(bounds) != sorted(set(bounds)):
      raise ConfigurationError(
          f'Bucket({feature!r}) needs increasing boundaries, got {boundaries!r}.')
    object.__setattr__(self, 'feature', feature)
    object.__setattr__(self, 'boundaries', bounds)

  def labels(self) -> list:
    edges = ['-inf', *(f'{b:g}' for b in self.boundaries), 'inf']
    return [f'[{lo}, {hi})' for lo, hi in zip(edges[:-1], edges[1:])]

  def values(self, column: np.ndarray) -> np.ndarray:
    ids = np.searchsorted(np.asarray(self.boundaries), column.astype(float),
                          side='right')
    return np.asarray(self.labels())[ids]


Column = Union[str, Bucket]


@dataclasses.dataclass(frozen=True)
class SliceSpec:
  """The columns of one slicing: ``()`` overall, ``('a',)`` one feature,
  ``('a', 'b')`` a cross; a column may be a ``Bucket``."""
  columns: tuple = ()

  @property
  def features(self) -> list:
    return [c.feature if isinstance(c, Bucket) else c for c in self.columns]

  def describe(self) -> str:
    return ' x '.join(
        f'{c.feature} (buckets)' if isinstance(c, Bucket) else c
        for c in self.columns) or 'Overall'

  def cut(self, block: Block, codes_cache: Optional[dict] = None
          ) -> Iterable:
    """``(slice key, sub-block)`` for each slice of ``block``
    (``codes_cache`` shares each column's codes between specs)."""
    if not self.columns:
      yield (), block
      return
    cache = {} if codes_cache is None else codes_cache
    codes = np.zeros(len(block), dtype=np.int64)
    uniques = []
    for col in self.columns:
      if col not in cache:
        vals = (col.values(block.features[col.feature])
                if isinstance(col, Bucket) else block.features[col])
        cache[col] = _factorize(vals)
      inv, u = cache[col]
      codes = codes * len(u) + inv
      uniques.append(u)
    sizes = [len(u) for u in uniques]
    total = int(np.prod(sizes))
    # Few distinct slices: a radix sort of small integers (linear time).
    small = codes.astype(np.int16) if total < 2**15 else codes
    order = np.argsort(small, kind='stable')
    sorted_codes = codes[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_codes)) + 1]
    ends = np.r_[starts[1:], len(order)]
    names = [c.feature if isinstance(c, Bucket) else c for c in self.columns]
    for s, e in zip(starts, ends):
      idx = np.unravel_index(sorted_codes[s], sizes)
      key = tuple((n, _py(u[i])) for n, u, i in zip(names, uniques, idx))
      yield key, block.take(order[s:e])


def _factorize(values: np.ndarray) -> tuple:
  """(codes, uniques) of a column: by hashing (pandas) where available,
  else by sorting."""
  try:
    import pandas as pd
  except ImportError:  # pragma: no cover
    u, inv = np.unique(values, return_inverse=True)
    return inv.reshape(-1).astype(np.int64), u
  codes, uniques = pd.factorize(values, sort=True, use_na_sentinel=False)
  return codes.astype(np.int64), np.asarray(uniques)


def cut_all(block: Block, specs: Sequence['SliceSpec']) -> Iterable:
  """``(slice key, sub-block)`` for every spec, each column coded once."""
  cache: dict = {}
  for spec in specs:
    yield from spec.cut(block, cache)


def _py(v: Any):
  return v.item() if hasattr(v, 'item') else v


def slice_specs(slices: Any) -> list[SliceSpec]:
  """Specs from what users write: None (overall only); or a list whose items
  are ``()`` / ``[]`` (overall), a feature name, a ``Bucket``, or a
  tuple/list of those (a cross)."""
  if slices is None:
    return [SliceSpec()]
  if isinstance(slices, (str, Bucket, SliceSpec)):
    slices = [slices]
  out = []
  for s in slices:
    if isinstance(s, SliceSpec):
      spec = s
    elif isinstance(s, (str, Bucket)):
      spec = SliceSpec((s,))
    elif isinstance(s, (tuple, list)) and all(
        isinstance(c, (str, Bucket)) for c in s):
      spec = SliceSpec(tuple(s))
    else:
      raise ConfigurationTypeError(
          'Each slicing spec must be () for overall, a feature name, a '
          f'Bucket, or a list of those (a cross); got {s!r:.100}.')
    if len(set(spec.features)) != len(spec.features):
      raise ConfigurationError(f'Slicing spec {s!r} names a feature twice.')
    if spec not in out:
      out.append(spec)
  return out


def slice_name(key: tuple) -> str:
  return ', '.join(f'{k}={v}' for k, v in key) or 'Overall'


__all__ = ['Bucket', 'SliceSpec']
