"""Text column transforms (vocabulary, tf-idf, n-grams, hashing); public in
``tft``."""
from __future__ import annotations

from typing import Any, Optional

import numpy as np

from . import _ops
from ._columns import INDICES, STRINGS, Column, Reader, offsets_of
from ._stats import DF, VOCAB, WORD_COUNT
from ._tft_base import TFTOperation, _as_array, register_input_dtype
from ..exceptions import ConfigurationError


class _TextOp(TFTOperation):
  """Reads its columns as text, split on ``split_string_by_delimiter``."""
  split_string_by_delimiter: Optional[str] = None

  @property
  def _reader(self):
    return Reader(STRINGS, self.split_string_by_delimiter)

  def _apply_cell(self, cell, column, ready):
    return self._row(cell, column)

  def _row(self, tokens, column):
    raise NotImplementedError

  def _strings(self, value, column):
    toks = _ops.to_strings(value, column, type(self).__name__)
    delimiter = self.split_string_by_delimiter
    return _ops.split_strings(toks, delimiter) if delimiter else toks


@register_input_dtype(str)
class ComputeAndApplyVocabulary(_TextOp):
  """Maps each token to its index in the vocabulary of the column (most
  frequent first, ties by decreasing token); out-of-vocabulary tokens get
  ``default_value`` or, with ``num_oov_buckets``, a hashed bucket after the
  vocabulary. The vocabulary file is written (one token per line) to
  ``<artifact dir>/transform_fn/assets/<vocab_filename>_<column>``."""
  _output_kind = 'int64'

  def _vocabulary_made(self):
    return list(self.columns)

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
      raise ConfigurationError(f'top_k must be >= 0, got {top_k}.')
    if num_oov_buckets < 0:
      raise ConfigurationError(f'num_oov_buckets must be >= 0, got {num_oov_buckets}.')
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
        index, VOCAB, top_k=self._top_k,
        frequency_threshold=self._frequency_threshold)
    for a in out:
      a.params['filename'] = self.vocab_file_name(index, a.column)
    return out

  def _ready(self, stats, index):
    return {
        c: _ops.Vocabulary([t for t, _ in self._stat(stats, index, c, VOCAB)]
                           if _counted(self._stat(stats, index, c, VOCAB))
                           else self._stat(stats, index, c, VOCAB),
                           self._default_value, self._num_oov_buckets)
        for c in self.columns
    }

  def _apply_column(self, col, column, ready, index):
    return {column: Column(ready[column].lookup(col.values), col.offsets)}

  def vocab_size(self, stats: dict, index: int, column: str) -> int:
    return len(self._stat(stats, index, column, VOCAB)) + self._num_oov_buckets


def _counted(vocab) -> bool:
  """Whether a vocabulary statistic holds (token, count) pairs (as computed)
  rather than tokens (as read back from a vocabulary file)."""
  return bool(vocab) and isinstance(vocab[0], tuple)


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

  _reader = Reader(INDICES)

  def _outputs(self, column):
    return [column + '_vocab_index', column + '_tfidf_weight']

  def _output_kinds(self, column, kind):
    return {column + '_vocab_index': 'int64',
            column + '_tfidf_weight': 'float32'}

  def _vocabulary_needed(self):
    return list(self.columns) if self.vocab_size is None else []

  def _analyzers(self, index):
    return self._col_analyzers(index, DF)

  def _ready(self, stats, index):
    out = {}
    for c in self.columns:
      df = dict(self._stat(stats, index, c, DF))
      n_docs = df.pop(-1, 0)
      out[c] = (df, n_docs)
    return out

  def _apply_column(self, col, column, ready, index):
    df, n_docs = ready[column]
    rows, idx, weight = _ops.tfidf_column(col.values, col.lengths(), df,
                                          n_docs, self.smooth)
    offsets = offsets_of(np.bincount(rows, minlength=len(col)))
    return {column + '_vocab_index': Column(idx, offsets),
            column + '_tfidf_weight': Column(weight, offsets)}


class _NGramOp(_TextOp):
  """The n-grams of each row's tokens (``ngram_range``, joined by
  ``ngrams_separator``); subclasses say what a row keeps of them."""
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
    return self._row(self._strings(data, output_column_name),
                     output_column_name)

  def _ngrams(self, tokens):
    return _ops.ngrams(tokens, self.ngram_range, self.ngrams_separator)


@register_input_dtype(str)
class NGrams(_NGramOp):
  """The n-grams of each row's tokens, by start position then length."""

  def _row(self, tokens, column):
    return {column: self._ngrams(tokens)}


def _check_ngrams(ngram_range, separator):
  lo, hi = ngram_range
  if not 1 <= lo <= hi:
    raise ConfigurationError(f'ngram_range must be (min, max) with 1 <= min <= max, '
                     f'got {ngram_range}.')
  if ngram_range != (1, 1) and not separator:
    raise ConfigurationError(
        'ngrams_separator must be specified when ngram_range is not (1, 1)')


@register_input_dtype(str)
class BagOfWords(_NGramOp):
  """The distinct n-grams of each row, in order of first occurrence; with
  ``compute_word_count`` the count of every token over the dataset is written
  to ``<artifact dir>/transform_fn/assets/<key_vocab_filename>_<column>``."""

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
    super().__init__(columns, split_string_by_delimiter,
                     ngram_range=ngram_range,
                     ngrams_separator=ngrams_separator, name=name)
    self.key_vocab_filename = key_vocab_filename
    self.compute_word_count = compute_word_count

  def _analyzers(self, index):
    if not self.compute_word_count:
      return []
    out = self._col_analyzers(index, WORD_COUNT)
    for a in out:
      a.params['filename'] = (
          f'{self.key_vocab_filename}_{a.column}' if self.key_vocab_filename
          else f'word_count_{index}_{a.column}')
    return out

  def _row(self, tokens, column):
    return {column: _ops.dedupe(self._ngrams(tokens))}


@register_input_dtype(str)
class HashStrings(_TextOp):
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
      raise ConfigurationError(
          f'number of hash buckets must be positive, got {hash_buckets}')
    if key is not None and len(key) != 2:
      raise ConfigurationError(f'key must be two uint64 integers, got {key!r}.')
    super().__init__(columns)

  def apply_transform(self, data, output_column_name):
    toks = _ops.to_strings(data, output_column_name, type(self).__name__)
    return self._row(toks, output_column_name)

  def _row(self, tokens, column):
    return {column: _ops.hash_strings(tokens, self.hash_buckets, self.key)}

  def _apply_column(self, col, column, ready, index):
    tokens = col.values.to_pylist()
    return {column: Column(_ops.hash_strings(tokens, self.hash_buckets,
                                             self.key), col.offsets)}


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
