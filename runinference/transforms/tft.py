"""Column transforms for ``MLTransform``, import-compatible with
``apache_beam.ml.transforms.tft`` but computed with numpy and Beam combiners
(no TensorFlow). Each returns a configured operation; the work happens when
the pipeline runs. Outputs are numpy arrays per column: float32 for scaled
values, int64 for indices/buckets, object arrays of bytes for text.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any, Optional, Union

import apache_beam as beam
import numpy as np

from . import _ops
from ._stats import DF, MOMENTS, QUANTILES, VOCAB, WORD_COUNT, Analyzer
from .base import BaseOperation

__all__ = [
    'ComputeAndApplyVocabulary', 'ScaleToZScore', 'ScaleTo01',
    'ScaleToGaussian', 'ApplyBuckets', 'ApplyBucketsWithInterpolation',
    'Bucketize', 'TFIDF', 'TFTOperation', 'ScaleByMinMax', 'NGrams',
    'BagOfWords', 'HashStrings', 'DeduplicateTensorPerRow'
]

_LOGGER = logging.getLogger(__name__)
# Declared input type of each transform (the reference's registry).
_EXPECTED_TYPES: dict[str, Union[int, str, float]] = {}


def register_input_dtype(type):  # pylint: disable=redefined-builtin
  def wrapper(fn):
    _EXPECTED_TYPES[fn.__name__] = type
    return fn

  return wrapper


def _as_array(value: Any) -> np.ndarray:
  if isinstance(value, np.ndarray):
    return value
  if isinstance(value, (list, tuple)):
    return np.asarray(value)
  return np.asarray([value])


def analyzer_key(index: int, col_pos: int, kind: str) -> str:
  return f't{index}_c{col_pos}_{kind}'


class TFTOperation(BaseOperation[np.ndarray, np.ndarray]):
  """Base of the column transforms.

  A custom transform subclasses it and implements
  ``apply_transform(data, output_column_name) -> {column: array}``, where
  ``data`` is one row's column as a 1-D numpy array. Built-in transforms that
  need full-pass statistics declare analyzers instead.
  """
  # dtype of the transformed column: 'float32', 'int64' or 'bytes'.
  _output_kind: Optional[str] = None

  def __init__(self, columns: list[str]) -> None:
    super().__init__(columns)
    if not columns:
      raise RuntimeError(
          'Columns are not specified. Please specify the column for the '
          f' op {self.__class__.__name__}')

  def get_ptransform_for_processing(self, **kwargs) -> beam.PTransform:
    from .handlers import TFTProcessHandler
    artifact_location = kwargs.get('artifact_location')
    if not artifact_location:
      raise RuntimeError(
          'artifact_location is not specified. Please specify the '
          f'artifact_location for the op {self.__class__.__name__}')
    params = {}
    if kwargs.get('artifact_mode'):
      params['artifact_mode'] = kwargs['artifact_mode']
    return TFTProcessHandler(artifact_location=artifact_location, **params)

  # -- protocol used by TFTProcessHandler ------------------------------------
  def _analyzers(self, index: int) -> list[Analyzer]:
    """The statistics this transform needs (none by default)."""
    return []

  def _ready(self, stats: dict, index: int) -> Any:
    """Statistics -> whatever ``_apply`` needs, computed once per worker."""
    return None

  def _apply(self, value: Any, column: str, ready: Any,
             index: int) -> dict[str, np.ndarray]:
    return self.apply_transform(_as_array(value), column)

  def apply_transform(self, data, output_column_name):
    raise NotImplementedError(
        f'{type(self).__name__} needs full-pass statistics: use it inside '
        'MLTransform (or subclass TFTOperation and implement apply_transform '
        'for a custom per-row transform).')

  def _numeric(self, value, column):
    return _ops.to_numeric(value, column, type(self).__name__)

  def _strings(self, value, column):
    toks = _ops.to_strings(value, column, type(self).__name__)
    delimiter = getattr(self, 'split_string_by_delimiter', None)
    return _ops.split_strings(toks, delimiter) if delimiter else toks

  def _col_analyzers(self, index, kind, prepare, **params) -> list[Analyzer]:
    name = type(self).__name__
    return [
        Analyzer(analyzer_key(index, j, kind), kind, c, name,
                 (lambda v, c=c: prepare(v, c)), dict(params))
        for j, c in enumerate(self.columns)
    ]

  def _stat(self, stats: dict, index: int, column: str, kind: str):
    return stats[analyzer_key(index, self.columns.index(column), kind)]


@register_input_dtype(str)
class ComputeAndApplyVocabulary(TFTOperation):
  """Maps each token to its index in the vocabulary of the column (most
  frequent first, ties by decreasing token); out-of-vocabulary tokens get
  ``default_value`` or, with ``num_oov_buckets``, a hashed bucket after the
  vocabulary. The vocabulary file is written (one token per line) to
  ``<artifact dir>/transform_fn/assets/<vocab_filename>_<column>``."""
  _output_kind = 'int64'

  def __init__(
      self,
      columns: list[str],
      split_string_by_delimiter: Optional[str] = None,
      *,
      default_value: Any = -1,
      top_k: Optional[int] = None,
      frequency_threshold: Optional[int] = None,
      num_oov_buckets: int = 0,
      vocab_filename: Optional[str] = None,
      name: Optional[str] = None):
    super().__init__(columns)
    if top_k is not None and top_k < 0:
      raise ValueError(f'top_k must be >= 0, got {top_k}.')
    if num_oov_buckets < 0:
      raise ValueError(f'num_oov_buckets must be >= 0, got {num_oov_buckets}.')
    self._default_value = default_value
    self._top_k = top_k
    self._frequency_threshold = frequency_threshold
    self._num_oov_buckets = num_oov_buckets
    self._vocab_filename = vocab_filename
    self._name = name
    self.split_string_by_delimiter = split_string_by_delimiter

  def vocab_file_name(self, index: int, column: str) -> str:
    if self._vocab_filename:
      return f'{self._vocab_filename}_{column}'
    return f'vocab_compute_and_apply_vocabulary_{index}_{column}'

  def _analyzers(self, index):
    out = self._col_analyzers(
        index, VOCAB, self._strings, top_k=self._top_k,
        frequency_threshold=self._frequency_threshold)
    for a in out:
      a.params['filename'] = self.vocab_file_name(index, a.column)
    return out

  def _ready(self, stats, index):
    return {
        c: {t: i for i, t in enumerate(self._stat(stats, index, c, VOCAB))}
        for c in self.columns
    }

  def _apply(self, value, column, ready, index):
    return {
        column: _ops.vocab_lookup(
            self._strings(value, column), ready[column], self._default_value,
            self._num_oov_buckets)
    }

  def vocab_size(self, stats: dict, index: int, column: str) -> int:
    return len(self._stat(stats, index, column, VOCAB)) + self._num_oov_buckets


class _MomentsOp(TFTOperation):
  _output_kind = 'float32'
  elementwise = False

  def _analyzers(self, index):
    return self._col_analyzers(
        index, MOMENTS, self._numeric, elementwise=self.elementwise)

  def _ready(self, stats, index):
    return {c: self._stat(stats, index, c, MOMENTS) for c in self.columns}


@register_input_dtype(float)
class ScaleToZScore(_MomentsOp):
  """(x - mean) / std over the whole column (population variance); a constant
  column is only centred."""
  def __init__(
      self,
      columns: list[str],
      *,
      elementwise: bool = False,
      name: Optional[str] = None):
    super().__init__(columns)
    self.elementwise = elementwise
    self.name = name

  def _apply(self, value, column, ready, index):
    m = ready[column]
    return {column: _ops.z_score(self._numeric(value, column), m['mean'], m['var'])}


@register_input_dtype(float)
class ScaleTo01(_MomentsOp):
  """(x - min) / (max - min); a constant column goes through a sigmoid."""
  def __init__(
      self,
      columns: list[str],
      elementwise: bool = False,
      name: Optional[str] = None):
    super().__init__(columns)
    self.elementwise = elementwise
    self.name = name

  def _apply(self, value, column, ready, index):
    m = ready[column]
    return {
        column: _ops.min_max(
            self._numeric(value, column), m['min'], m['max'], 0.0, 1.0)
    }


@register_input_dtype(float)
class ScaleByMinMax(_MomentsOp):
  """Scales the column linearly to [min_value, max_value]."""
  def __init__(
      self,
      columns: list[str],
      min_value: float = 0.0,
      max_value: float = 1.0,
      name: Optional[str] = None):
    super().__init__(columns)
    self.min_value = min_value
    self.max_value = max_value
    self.name = name
    if self.max_value <= self.min_value:
      raise ValueError('max_value must be greater than min_value')

  def _apply(self, value, column, ready, index):
    m = ready[column]
    return {
        column: _ops.min_max(
            self._numeric(value, column), m['min'], m['max'],
            float(self.min_value), float(self.max_value))
    }


@register_input_dtype(float)
class ScaleToGaussian(TFTOperation):
  """Not available: TensorFlow Transform's Tukey-HH estimate has no
  equivalent here yet."""
  def __init__(self, columns: list[str], elementwise: bool = False,
               name: Optional[str] = None):
    raise NotImplementedError(
        'ScaleToGaussian is not implemented in runinference.transforms (it '
        "needs TensorFlow Transform's Tukey-HH estimator). Use ScaleToZScore, "
        'or Bucketize + ApplyBucketsWithInterpolation for skewed columns.')


@register_input_dtype(float)
class ApplyBuckets(TFTOperation):
  """Index i with ``bucket_boundaries[i-1] <= x < bucket_boundaries[i]``."""
  _output_kind = 'int64'

  def __init__(
      self,
      columns: list[str],
      bucket_boundaries: Iterable[Union[int, float]],
      name: Optional[str] = None):
    super().__init__(columns)
    boundaries = list(bucket_boundaries)
    if boundaries != sorted(boundaries):
      raise ValueError(
          f'bucket_boundaries must be sorted ascending, got {boundaries}.')
    self.bucket_boundaries = [boundaries]
    self.name = name

  def apply_transform(self, data, output_column_name):
    return {
        output_column_name: _ops.apply_buckets(
            self._numeric(data, output_column_name), self.bucket_boundaries[0])
    }


@register_input_dtype(float)
class ApplyBucketsWithInterpolation(TFTOperation):
  """Position of x between the given boundaries, normalised to [0, 1]."""
  _output_kind = 'float32'

  def __init__(
      self,
      columns: list[str],
      bucket_boundaries: Iterable[Union[int, float]],
      name: Optional[str] = None):
    super().__init__(columns)
    boundaries = list(bucket_boundaries)
    if boundaries != sorted(boundaries):
      raise ValueError(
          f'bucket_boundaries must be sorted ascending, got {boundaries}.')
    self.bucket_boundaries = [boundaries]
    self.name = name

  def apply_transform(self, data, output_column_name):
    return {
        output_column_name: _ops.buckets_with_interpolation(
            self._numeric(data, output_column_name), self.bucket_boundaries[0])
    }


@register_input_dtype(float)
class Bucketize(TFTOperation):
  """Buckets of equal population: boundaries are the column's quantiles."""
  _output_kind = 'int64'

  def __init__(
      self,
      columns: list[str],
      num_buckets: int,
      *,
      epsilon: Optional[float] = None,
      elementwise: bool = False,
      name: Optional[str] = None):
    super().__init__(columns)
    if not isinstance(num_buckets, int) or num_buckets < 1:
      raise ValueError(f'num_buckets must be a positive int, got {num_buckets!r}.')
    if elementwise:
      raise NotImplementedError(
          'Bucketize(elementwise=True) is not supported; bucketize each '
          'position as its own column instead.')
    self.num_buckets = num_buckets
    self.epsilon = epsilon
    self.elementwise = elementwise
    self.name = name

  def _analyzers(self, index):
    return self._col_analyzers(
        index, QUANTILES, self._numeric, num_buckets=self.num_buckets)

  def _ready(self, stats, index):
    return {c: self._stat(stats, index, c, QUANTILES) for c in self.columns}

  def _apply(self, value, column, ready, index):
    return {column: _ops.apply_buckets(self._numeric(value, column), ready[column])}


@register_input_dtype(float)
class TFIDF(TFTOperation):
  """tf-idf of vocabulary indices (e.g. after ComputeAndApplyVocabulary):
  adds ``<column>_vocab_index`` (unique indices of the row) and
  ``<column>_tfidf_weight``; the column itself is left as is."""
  def __init__(
      self,
      columns: list[str],
      vocab_size: Optional[int] = None,
      smooth: bool = True,
      name: Optional[str] = None,
  ):
    super().__init__(columns)
    self.vocab_size = vocab_size
    self.smooth = smooth
    self.name = name
    self.tfidf_weight = None

  def _indices(self, value, column):
    return _ops.to_indices(value, column, type(self).__name__)

  def _analyzers(self, index):
    return self._col_analyzers(index, DF, self._indices)

  def _ready(self, stats, index):
    out = {}
    for c in self.columns:
      df = dict(self._stat(stats, index, c, DF))
      n_docs = df.pop(-1, 0)
      out[c] = (df, n_docs)
    return out

  def _apply(self, value, column, ready, index):
    df, n_docs = ready[column]
    idx, weight = _ops.tfidf(self._indices(value, column), df, n_docs, self.smooth)
    return {column + '_vocab_index': idx, column + '_tfidf_weight': weight}


@register_input_dtype(str)
class NGrams(TFTOperation):
  """The n-grams of each row's tokens, by start position then length."""
  _output_kind = 'bytes'

  def __init__(
      self,
      columns: list[str],
      split_string_by_delimiter: Optional[str] = None,
      *,
      ngram_range: tuple[int, int] = (1, 1),
      ngrams_separator: Optional[str] = None,
      name: Optional[str] = None):
    super().__init__(columns)
    self.ngram_range = tuple(ngram_range)
    self.ngrams_separator = ngrams_separator
    self.name = name
    self.split_string_by_delimiter = split_string_by_delimiter
    _check_ngrams(self.ngram_range, ngrams_separator)

  def apply_transform(self, data, output_column_name):
    toks = self._strings(data, output_column_name)
    return {
        output_column_name: _ops.ngrams(
            toks, self.ngram_range, self.ngrams_separator)
    }


def _check_ngrams(ngram_range, separator):
  lo, hi = ngram_range
  if not 1 <= lo <= hi:
    raise ValueError(f'ngram_range must be (min, max) with 1 <= min <= max, '
                     f'got {ngram_range}.')
  if ngram_range != (1, 1) and not separator:
    raise ValueError(
        'ngrams_separator must be specified when ngram_range is not (1, 1)')


@register_input_dtype(str)
class BagOfWords(TFTOperation):
  """The distinct n-grams of each row, in order of first occurrence; with
  ``compute_word_count`` the count of every token over the dataset is written
  to ``<artifact dir>/transform_fn/assets/<key_vocab_filename>_<column>``."""
  _output_kind = 'bytes'

  def __init__(
      self,
      columns: list[str],
      split_string_by_delimiter: Optional[str] = None,
      *,
      ngram_range: tuple[int, int] = (1, 1),
      ngrams_separator: Optional[str] = None,
      compute_word_count: bool = False,
      key_vocab_filename: Optional[str] = None,
      name: Optional[str] = None,
  ):
    super().__init__(columns)
    self.ngram_range = tuple(ngram_range)
    self.ngrams_separator = ngrams_separator
    self.name = name
    self.split_string_by_delimiter = split_string_by_delimiter
    self.key_vocab_filename = key_vocab_filename
    self.compute_word_count = compute_word_count
    _check_ngrams(self.ngram_range, ngrams_separator)

  def _analyzers(self, index):
    if not self.compute_word_count:
      return []
    out = self._col_analyzers(index, WORD_COUNT, self._strings)
    for a in out:
      a.params['filename'] = (
          f'{self.key_vocab_filename}_{a.column}' if self.key_vocab_filename
          else f'word_count_{index}_{a.column}')
    return out

  def _apply(self, value, column, ready, index):
    return self.apply_transform(value, column)

  def apply_transform(self, data, output_column_name):
    toks = self._strings(data, output_column_name)
    return {
        output_column_name: _ops.dedupe(
            _ops.ngrams(toks, self.ngram_range, self.ngrams_separator))
    }


@register_input_dtype(str)
class HashStrings(TFTOperation):
  """Hashes each string into ``hash_buckets`` buckets (FarmHash Fingerprint64,
  or keyed SipHash-2-4 with ``key``; the same buckets as TensorFlow)."""
  _output_kind = 'int64'

  def __init__(
      self,
      columns: list[str],
      hash_buckets: int,
      key: Optional[tuple[int, int]] = None,
      name: Optional[str] = None):
    self.hash_buckets = hash_buckets
    self.key = key
    self.name = name
    if hash_buckets < 1:
      raise ValueError(
          'number of hash buckets must be positive, got ', hash_buckets)
    if key is not None and len(key) != 2:
      raise ValueError(f'key must be two uint64 integers, got {key!r}.')
    super().__init__(columns)

  def apply_transform(self, data, output_column_name):
    toks = _ops.to_strings(data, output_column_name, type(self).__name__)
    return {
        output_column_name: _ops.hash_strings(toks, self.hash_buckets, self.key)
    }


@register_input_dtype(str)
class DeduplicateTensorPerRow(TFTOperation):
  """Drops repeated values within each row, keeping first occurrences."""
  def __init__(self, columns: list[str], name: Optional[str] = None):
    self.name = name
    super().__init__(columns)

  def apply_transform(self, data, output_column_name):
    arr = _as_array(data)
    if arr.dtype.kind in 'US':
      arr = _ops.to_strings(arr, output_column_name, type(self).__name__)
    return {output_column_name: _ops.dedupe(arr.reshape(-1))}
