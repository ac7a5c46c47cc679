"""numpy operations behind the ``tft`` transforms.

The numeric ones take any array of values (a whole column of a block, or one
row's cell) plus the statistics they need; the text ones below take one row's
tokens (the row-by-row transforms); the whole-column ones at the end work on
a block's flat values. Outputs follow TensorFlow Transform's dtypes: float32
for scaled values, int64 for indices and buckets, bytes for text.
"""
from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from typing import Any, Optional

import numpy as np

from ._errors import ColumnTypeError
from ._hashing import fingerprint64, hash_buckets

_NUMERIC_KINDS = 'biuf'


def to_strings(value: Any, column: str, transform: str) -> np.ndarray:
  """A column value (str/bytes or a list of them) as an object array of bytes."""
  if type(value) is str:
    out = np.empty(1, dtype=object)
    out[0] = value.encode('utf-8')
    return out
  if isinstance(value, (str, bytes)):
    items = [value]
  elif isinstance(value, (list, tuple, np.ndarray)):
    items = list(np.asarray(value, dtype=object).reshape(-1))
  else:
    items = [value]
  out = np.empty(len(items), dtype=object)
  for i, v in enumerate(items):
    if isinstance(v, bytes):
      out[i] = v
    elif isinstance(v, (str, np.str_)):
      out[i] = str(v).encode('utf-8')
    elif isinstance(v, np.bytes_):
      out[i] = bytes(v)
    else:
      raise ColumnTypeError(
          f'{transform} needs text (str or bytes) in column {column!r}, got '
          f'{_describe(value)}. Convert the column to strings first.')
  return out


def _describe(value: Any) -> str:
  if isinstance(value, np.ndarray):
    return f'a numpy array of dtype {value.dtype}'
  if isinstance(value, (list, tuple)) and value:
    return f'a {type(value).__name__} of {type(value[0]).__name__}'
  return f'{type(value).__name__} {value!r:.60}'


@functools.lru_cache(maxsize=64)
def _splitter(delimiters: str):
  delims = delimiters.encode('utf-8')
  if len(delims) == 1:
    return lambda t: t.split(delims)
  return re.compile(b'[' + re.escape(delims) + b']').split


def split_strings(tokens: np.ndarray, delimiters: str) -> np.ndarray:
  """Splits each string on any of the characters in ``delimiters`` (empty
  pieces dropped, as TensorFlow's string_split does)."""
  split = _splitter(delimiters)
  out = []
  for t in tokens:
    out.extend(p for p in split(t) if p)
  return _object_array(out)


def _object_array(items: Sequence[Any]) -> np.ndarray:
  arr = np.empty(len(items), dtype=object)
  arr[:] = items
  return arr


# -- numeric -------------------------------------------------------------------


def z_score(x: np.ndarray, mean, var) -> np.ndarray:
  mean = np.asarray(mean, dtype=np.float32)
  var = np.asarray(var, dtype=np.float32)
  centered = x - mean
  # A constant column (var 0) is centred only, as TensorFlow Transform does.
  if var.ndim == 0:
    return centered / np.sqrt(var) if var > 0 else centered
  std = np.sqrt(np.where(var > 0, var, np.float32(1)))
  return np.where(var > 0, centered / std, centered).astype(np.float32)


def min_max(x: np.ndarray, lo, hi, out_min: float, out_max: float) -> np.ndarray:
  lo = np.asarray(lo, dtype=np.float32)
  hi = np.asarray(hi, dtype=np.float32)
  span = np.float32(out_max - out_min)
  # A constant column is squashed with a sigmoid, as TensorFlow Transform does.
  if lo.ndim == 0 and lo < hi:
    unit = (x - lo) / (hi - lo)
  else:
    width = np.where(lo < hi, hi - lo, np.float32(1))
    with np.errstate(over='ignore'):  # exp(-x) -> inf gives 0, as it should
      squashed = np.float32(1) / (np.float32(1) + np.exp(-x))
    unit = np.where(lo < hi, (x - lo) / width, squashed).astype(np.float32)
  if out_min == 0.0 and out_max == 1.0:
    return unit
  return (unit * span + np.float32(out_min)).astype(np.float32)


def apply_buckets(x: np.ndarray, boundaries: Sequence[float]) -> np.ndarray:
  """Index i with ``b[i-1] <= x < b[i]``; NaN goes to ``len(b)``."""
  b = np.asarray(boundaries, dtype=np.float32)
  idx = np.searchsorted(b, x, side='right').astype(np.int64)
  # NaN already sorts after every boundary: index len(b).
  return idx


def buckets_with_interpolation(x: np.ndarray,
                               boundaries: Sequence[float]) -> np.ndarray:
  """Position of x between the boundaries, in [0, 1]; NaN gives 0.5."""
  b = np.asarray(boundaries, dtype=np.float64)
  xs = x.astype(np.float64)
  if len(b) < 2:
    out = np.where(xs < b[0], 0.0, 1.0) if len(b) else np.full_like(xs, 0.5)
  else:
    i = np.clip(np.searchsorted(b, xs, side='right') - 1, 0, len(b) - 2)
    lo, hi = b[i], b[i + 1]
    with np.errstate(divide='ignore', invalid='ignore'):
      frac = np.where(hi > lo, (xs - lo) / (hi - lo), 0.0)
    out = np.clip((i + np.clip(frac, 0.0, 1.0)) / (len(b) - 1), 0.0, 1.0)
  return np.where(np.isnan(xs), 0.5, out).astype(np.float32)


# -- text ----------------------------------------------------------------------


def ngrams(tokens: np.ndarray, ngram_range: tuple[int, int],
           separator: Optional[str]) -> np.ndarray:
  """All n-grams, by start position, then by length (TFT's order)."""
  lo, hi = ngram_range
  sep = (separator or '').encode('utf-8')
  toks = list(tokens)
  out = []
  for start in range(len(toks)):
    for n in range(lo, hi + 1):
      if start + n <= len(toks):
        out.append(sep.join(toks[start:start + n]))
  return _object_array(out)


def dedupe(values: np.ndarray) -> np.ndarray:
  """Unique values in order of first occurrence."""
  seen = dict.fromkeys(values.tolist())
  if values.dtype == object:
    return _object_array(list(seen))
  return np.asarray(list(seen), dtype=values.dtype)


def hash_strings(tokens: np.ndarray, num_buckets: int, key=None) -> np.ndarray:
  return np.asarray(hash_buckets(tokens, num_buckets, key), dtype=np.int64)


# -- whole columns -------------------------------------------------------------


def row_unique(values: np.ndarray, lengths: np.ndarray):
  """Distinct values of each row, sorted: (row of each, value, its count)."""
  rows = np.repeat(np.arange(len(lengths)), lengths)
  order = np.lexsort((values, rows))
  r, v = rows[order], values[order]
  change = np.ones(len(r), dtype=bool)
  if len(r) > 1:
    change[1:] = (r[1:] != r[:-1]) | (v[1:] != v[:-1])
  starts = np.flatnonzero(change)
  counts = np.diff(np.append(starts, len(r)))
  return r[starts], v[starts], counts


def tfidf_column(values: np.ndarray, lengths: np.ndarray, df: dict,
                 num_docs: int, smooth: bool):
  """tf-idf of every row at once: (row of each entry, index, weight), the
  indices of each row sorted (as ``tfidf`` does per row)."""
  rows, idx, counts = row_unique(values.astype(np.int64), lengths)
  tf = counts / np.maximum(lengths[rows], 1)
  keys = np.fromiter(df.keys(), np.int64, len(df))
  freq = np.fromiter(df.values(), np.float64, len(df))
  order = np.argsort(keys)
  keys, freq = keys[order], freq[order]
  pos = np.minimum(np.searchsorted(keys, idx), max(len(keys) - 1, 0))
  dfs = (np.where(keys[pos] == idx, freq[pos], 0.0) if len(keys) else
         np.zeros(len(idx)))
  if smooth:
    idf = np.log((1.0 + num_docs) / (1.0 + dfs)) + 1.0
  else:
    with np.errstate(divide='ignore'):
      idf = np.log(num_docs / dfs) + 1.0
  return rows, idx, (tf * idf).astype(np.float32)


class Vocabulary:
  """A vocabulary ready for lookups of whole token arrays."""
  def __init__(self, tokens: list, default_value: int, num_oov_buckets: int):
    import pyarrow as pa
    self.tokens = pa.array(list(tokens), pa.binary())
    self.default_value = default_value
    self.num_oov_buckets = num_oov_buckets
    self._index: Optional[dict] = None

  def __len__(self) -> int:
    return len(self.tokens)

  @property
  def index(self) -> dict:
    if self._index is None:
      self._index = {t: i for i, t in enumerate(self.tokens.to_pylist())}
    return self._index

  def lookup(self, tokens) -> np.ndarray:
    """Indices of a pyarrow binary array of tokens (out-of-vocabulary ones:
    a hashed bucket after the vocabulary, or ``default_value``)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    if len(self.tokens) > 4 * len(tokens) + 4096:
      # Hashing a large vocabulary for each block would cost more than
      # looking each token up in a dict built once.
      get = self.index.get
      out = np.fromiter((get(t, -1) for t in tokens.to_pylist()), np.int64,
                        len(tokens))
    else:
      out = np.asarray(
          pc.index_in(tokens, value_set=self.tokens).fill_null(-1),
          dtype=np.int64)
    missing = out < 0
    if missing.any():
      if self.num_oov_buckets > 0:
        size = len(self.tokens)
        oov = [size + fingerprint64(t) % self.num_oov_buckets
               for t in tokens.filter(pa.array(missing)).to_pylist()]
        out[missing] = oov
      else:
        out[missing] = self.default_value
    return out
