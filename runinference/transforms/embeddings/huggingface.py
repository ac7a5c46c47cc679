"""Embeddings as ``MLTransform`` steps, import-compatible with
``apache_beam.ml.transforms.embeddings.huggingface``. They run through
``runinference``'s RunInference: adaptive batches of rows of similar text
length, one model per process shared by all threads, dead letters per row."""
from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any, Callable, Optional

import apache_beam as beam

from runinference._handlers import sub_batches
from runinference.base import ModelHandler, RunInference

from .._contract import EmbeddingsManager
from .._embedding_handlers import _ImageEmbeddingHandler, _TextEmbeddingHandler
from . import _length_aware
from ...exceptions import ConfigurationError, MissingDependencyError

__all__ = ['SentenceTransformerEmbeddings', 'InferenceAPIEmbeddings']

_LOGGER = logging.getLogger(__name__)


def _sentence_transformer_class():
  try:
    from sentence_transformers import SentenceTransformer
  except ImportError as e:
    raise MissingDependencyError(
        'sentence-transformers is required to use '
        'SentenceTransformerEmbeddings. Please install it with '
        "`pip install 'runinference[huggingface]'`.") from e
  return SentenceTransformer


class _SentenceTransformerModelHandler(ModelHandler):
  """Loads a ``SentenceTransformer`` and encodes batches of texts/images;
  texts run shortest first in sub-batches under ``max_tokens_per_batch``
  padded tokens (see ``_length_aware``)."""
  def __init__(
      self,
      model_name: str,
      model_class: Optional[Callable] = None,
      load_model_args: Optional[dict] = None,
      min_batch_size: Optional[int] = None,
      max_batch_size: Optional[int] = None,
      max_seq_length: Optional[int] = None,
      large_model: bool = False,
      max_tokens_per_batch: Optional[int] = None,
      **kwargs):
    super().__init__(
        min_batch_size=min_batch_size, max_batch_size=max_batch_size,
        large_model=large_model, **kwargs)
    if importlib.util.find_spec('sentence_transformers') is None:
      _sentence_transformer_class()  # raises the install hint
    self.model_name = model_name
    self._model_class = model_class
    self._load_model_args = load_model_args or {}
    self._max_seq_length = max_seq_length
    self._budget = sub_batches.TokenBudget(
        max_tokens_per_batch,
        start={'CPU': _length_aware.CPU_TOKENS_PER_CALL})

  def load_model(self):
    cls = self._model_class or _sentence_transformer_class()
    model = cls(self.model_name, **self._load_model_args)
    if self._max_seq_length:
      model.max_seq_length = self._max_seq_length
    return model

  def run_inference(self, batch: Sequence[Any], model: Any,
                    inference_args: Optional[dict[str, Any]] = None):
    return _length_aware.encode(
        model, batch, dict(inference_args or {}), self._budget)

  def get_metrics_namespace(self) -> str:
    return 'BeamML_SentenceTransformerEmbeddings'

  def __repr__(self) -> str:
    return 'SentenceTransformerEmbeddings'


class SentenceTransformerEmbeddings(EmbeddingsManager):
  """Embeds text (or, with ``image_model=True``, image) columns with a
  sentence-transformers model (a hub name or a local directory).

  Args:
    model_name: the model, e.g. ``'sentence-transformers/all-MiniLM-L6-v2'``
      or a path to a saved model.
    columns: columns to embed (each is replaced by its embedding, a list of
      floats).
    max_seq_length: truncate inputs to this many tokens.
    image_model: the model embeds images (PIL) instead of text.
    max_tokens_per_batch: most padded tokens (rows x longest) in one model
      call; each batch of texts runs shortest first in such sub-batches.
      Default None: learned from the calls' times (per batch, the budget
      whose plan a fitted per-call cost predicts fastest), starting at 1024
      on the CPU, 65536 on a GPU. Passing ``batch_size`` in
      ``inference_args`` runs ``encode`` on the whole batch instead.
    min_batch_size, max_batch_size, large_model, load_model_args,
    inference_args: as for every ``EmbeddingsManager``.
  """
  length_aware_batching = True

  def __init__(
      self,
      model_name: str,
      columns: list[str],
      max_seq_length: Optional[int] = None,
      image_model: bool = False,
      max_tokens_per_batch: Optional[int] = None,
      **kwargs):
    super().__init__(columns=columns, **kwargs)
    self.model_name = model_name
    self.max_seq_length = max_seq_length
    self.image_model = image_model
    self.max_tokens_per_batch = sub_batches.check_budget(max_tokens_per_batch)
    self.length_aware_batching = not image_model

  def get_model_handler(self):
    return _SentenceTransformerModelHandler(
        model_name=self.model_name,
        max_seq_length=self.max_seq_length,
        load_model_args=self.load_model_args,
        min_batch_size=self.min_batch_size,
        max_batch_size=self.max_batch_size,
        large_model=self.large_model,
        max_tokens_per_batch=self.max_tokens_per_batch)

  def get_ptransform_for_processing(self, **kwargs) -> beam.PTransform:
    handler_cls = (_ImageEmbeddingHandler
                   if self.image_model else _TextEmbeddingHandler)
    return RunInference(
        model_handler=handler_cls(self), inference_args=self.inference_args)


class _InferenceAPIHandler(ModelHandler):
  """POSTs batches of texts to a Hugging Face feature-extraction endpoint."""
  def __init__(self, config: 'InferenceAPIEmbeddings'):
    super().__init__()
    self._config = config

  def load_model(self):
    import requests
    session = requests.Session()
    token = self._config.hf_token or os.environ.get('HF_TOKEN')
    if not token:
      raise ConfigurationError(
          'HF_TOKEN environment variable not set. '
          'Please set the environment variable or pass the token as an '
          'argument.')
    session.headers.update({'Authorization': f'Bearer {token}'})
    return session

  def run_inference(self, batch, session, inference_args=None):
    response = session.post(
        self._config.api_url,
        json={'inputs': list(batch), 'options': inference_args or {}},
        timeout=self._config.timeout)
    response.raise_for_status()
    return response.json()

  def __repr__(self):
    return 'InferenceAPIEmbeddings'


class InferenceAPIEmbeddings(EmbeddingsManager):
  """Feature extraction with Hugging Face's Inference API (or any endpoint
  that takes ``{"inputs": [...]}`` and returns one vector per input).

  Args:
    hf_token: the API token (or set ``HF_TOKEN`` on the workers).
    columns: columns to embed.
    model_name: model used for feature extraction (builds the default URL).
    api_url: endpoint to call instead of the default one.
    timeout: seconds one request may take.
  """
  def __init__(
      self,
      hf_token: Optional[str],
      columns: list[str],
      model_name: Optional[str] = None,
      api_url: Optional[str] = None,
      timeout: float = 60.0,
      **kwargs,
  ):
    super().__init__(columns=columns, **kwargs)
    self.hf_token = hf_token
    self._model_name = model_name
    self.timeout = timeout
    if not api_url:
      if not model_name:
        raise ConfigurationError('Either api_url or model_name must be provided.')
      api_url = ('https://router.huggingface.co/hf-inference/models/'
                 f'{model_name}/pipeline/feature-extraction')
    self._api_url = api_url

  def get_token(self):
    return os.environ.get('HF_TOKEN')

  @property
  def api_url(self):
    return self._api_url

  @property
  def authorization_token(self):
    return {'Authorization': f'Bearer {self.hf_token}'}

  def get_model_handler(self):
    return _InferenceAPIHandler(self)

  def get_ptransform_for_processing(self, **kwargs) -> beam.PTransform:
    args = {'wait_for_model': True, 'use_cache': True, **self.inference_args}
    return RunInference(
        model_handler=_TextEmbeddingHandler(self), inference_args=args)

