"""Tokenizing for the Hugging Face handlers: ``Tokenize`` (text -> unpadded
tensors, a picklable preprocess fn), ``input_length`` (for length-aware
batching) and token counts of raw texts (for length-aware execution)."""
from __future__ import annotations

from typing import Any, Optional, Sequence

from ..exceptions import InvalidInputTypeError
from .._core.naming import publish
from .common import describe_value, require

__all__ = ['Tokenize', 'input_length']


class Tokenize:
  """A picklable preprocess fn: text -> ``{name: 1-D torch.Tensor}`` with no
  padding (the keyed handler pads per batch).

  Example::

    handler = HuggingFaceModelHandlerKeyedTensor(
        path, AutoModel, framework='pt',
        batch_length_fn=input_length, batch_bucket_boundaries=[16, 32, 64],
    ).with_preprocess_fn(Tokenize(path, max_length=256))
  """
  def __init__(self, tokenizer: Any, **tokenizer_kwargs):
    """
    Args:
      tokenizer: a tokenizer, or the path / Hub id to load one from with
        ``AutoTokenizer.from_pretrained`` (loaded once per process).
      tokenizer_kwargs: extra arguments of the tokenizer call (truncation is
        on by default, at ``max_length`` if given).
    """
    self._source = tokenizer if isinstance(tokenizer, str) else None
    self._tokenizer = None if isinstance(tokenizer, str) else tokenizer
    self._kwargs = {'truncation': True, **tokenizer_kwargs}

  def __getstate__(self):
    state = self.__dict__.copy()
    if self._source is not None:
      state['_tokenizer'] = None
    return state

  @property
  def tokenizer(self):
    if self._tokenizer is None:
      transformers = require('transformers', 'Tokenize')
      self._tokenizer = transformers.AutoTokenizer.from_pretrained(
          self._source)
    return self._tokenizer

  def __call__(self, text: str) -> dict:
    if not isinstance(text, str):
      raise InvalidInputTypeError(
          f'Tokenize expects a str, got {describe_value(text)}.')
    encoded = self.tokenizer(text, return_tensors='pt', **self._kwargs)
    return {k: v[0] for k, v in encoded.items()}


def input_length(example: Any) -> int:
  """Length of an example for ``batch_length_fn``: tokens for a tokenized
  dict or a 1-D tensor, characters for a string; a ``(key, example)`` pair
  (a KeyedModelHandler's element) measures its example."""
  if isinstance(example, tuple) and len(example) == 2:
    example = example[1]
  if isinstance(example, dict):
    ids = example.get('input_ids')
    if ids is None:
      ids = next(iter(example.values()))
    return int(ids.shape[-1])
  if isinstance(example, str):
    return len(example)
  shape = getattr(example, 'shape', None)
  if shape is not None and len(shape):
    return int(shape[0])
  return len(example)


def token_lengths(tokenizer: Any, texts: Sequence[str],
                  tokenize_kwargs: Optional[dict] = None) -> list[int]:
  """Tokens per text as ``tokenizer`` counts them (special tokens included),
  in one batched tokenizer call."""
  kwargs = dict(tokenize_kwargs or {})
  kwargs.pop('return_tensors', None)
  kwargs.pop('padding', None)
  encoded = tokenizer(list(texts), **kwargs)
  return [len(ids) for ids in encoded['input_ids']]


publish(globals(), 'runinference.huggingface_inference')
