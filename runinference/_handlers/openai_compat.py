"""OpenAI-compatible APIs (vLLM, infinity, text-embeddings-inference,
``transformers serve``, OpenAI itself): embeddings, completions and chat.

``base_url`` is what the OpenAI client takes, e.g. ``http://host:8000/v1``.
"""
from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import numpy as np

from ..exceptions import ConfigurationError, InvalidInputError
from .._core.naming import publish
from .http_handler import HttpModelHandler, by_index, expect_list
from .remote_errors import AnswerFormatError

# Words of an OpenAI-style error that put the blame on the rows sent (a text
# too long for the model, an invalid input), not on the request as a whole.
_ROW_WORDS = ('token', 'input', 'prompt', 'messages', 'context length')

__all__ = [
    'OpenAIEmbeddingsModelHandler',
    'OpenAICompletionsModelHandler',
    'OpenAIChatModelHandler',
]


def _auth(api_key: Optional[str], headers: Optional[Mapping[str, str]]):
  out = dict(headers or {})
  if api_key:
    out.setdefault('Authorization', f'Bearer {api_key}')
  return out


class _OpenAIHandler(HttpModelHandler):
  def __init__(self, base_url: str, model: str, *,
               api_key: Optional[str] = None,
               headers: Optional[Mapping[str, str]] = None,
               request_params: Optional[Mapping[str, Any]] = None,
               **kwargs):
    super().__init__(base_url, headers=_auth(api_key, headers), **kwargs)
    self.model = model
    self.request_params = dict(request_params or {})

  def _params(self, inference_args: dict) -> dict:
    return {**self.request_params, **inference_args, 'model': self.model}

  def row_error(self, status, answer):
    """A 400, 413 or 422 whose error names the input (its ``param``, or its
    message: too many tokens, an invalid input) is about the rows."""
    if status not in (400, 413, 422):
      return False
    error = answer.get('error', answer) if isinstance(answer, dict) else answer
    if isinstance(error, dict):
      if error.get('param') in ('input', 'prompt', 'messages'):
        return True
      error = error.get('message', '')
    return any(w in str(error).lower() for w in _ROW_WORDS)

  def __repr__(self):
    return (f'{type(self).__name__}(base_url={self.base_url!r}, '
            f'model={self.model!r})')


class OpenAIEmbeddingsModelHandler(_OpenAIHandler):
  """Embeds strings with ``POST {base_url}/embeddings``; a prediction is a
  float32 numpy vector. Rows of a batch go in one request."""
  def path(self, inference_args):
    return '/embeddings'

  def encode(self, batch, inference_args):
    bad = [type(x).__name__ for x in batch if not isinstance(x, str)]
    if bad:
      raise InvalidInputError(
          f'OpenAIEmbeddingsModelHandler embeds strings; got {bad[0]}.')
    return {**self._params(inference_args), 'input': list(batch)}

  def decode(self, answer, batch):
    data = by_index(expect_list(answer['data'], '"data"'), '"data"')
    return [_vector(d['embedding'], i) for i, d in enumerate(data)]


class OpenAICompletionsModelHandler(_OpenAIHandler):
  """Completes prompts with ``POST {base_url}/completions``; a prediction is
  the completion's text. One prompt per request, ``max_concurrent_requests``
  of them in flight (set ``request_batch_size`` to send several at once to a
  server that takes a list of prompts)."""
  def __init__(self, base_url: str, model: str, **kwargs):
    kwargs.setdefault('request_batch_size', 1)
    super().__init__(base_url, model, **kwargs)

  def path(self, inference_args):
    return '/completions'

  def encode(self, batch, inference_args):
    bad = [type(x).__name__ for x in batch if not isinstance(x, str)]
    if bad:
      raise InvalidInputError(
          f'{type(self).__name__} completes string prompts; got {bad[0]}.')
    prompt = batch[0] if len(batch) == 1 else list(batch)
    return {**self._params(inference_args), 'prompt': prompt}

  def decode(self, answer, batch):
    return [_text(c['text'], f'choices[{i}].text')
            for i, c in enumerate(self.choices(answer, batch))]

  @staticmethod
  def choices(answer, batch) -> list:
    return by_index(expect_list(answer['choices'], '"choices"'), '"choices"')


def one_per_request(name: str, kwargs: dict) -> None:
  """The chat API takes one conversation per request."""
  if kwargs.setdefault('request_batch_size', 1) != 1:
    raise ConfigurationError(
        f'{name} sends one conversation per request; request_batch_size must '
        f'be 1, got {kwargs["request_batch_size"]!r}. Use '
        'max_concurrent_requests for parallelism.')


def chat_messages(conversation: Any) -> list[dict]:
  """A conversation as the chat API's messages: a string is one user
  message; messages may be dicts or objects with ``role`` and ``content``."""
  if isinstance(conversation, str):
    return [{'role': 'user', 'content': conversation}]
  if not isinstance(conversation, Sequence) or not conversation:
    raise InvalidInputError(
        'A chat row is a string or a non-empty sequence of messages, got '
        f'{type(conversation).__name__}.')
  out = []
  for m in conversation:
    if isinstance(m, Mapping):
      role, content = m.get('role'), m.get('content')
    else:
      role, content = getattr(m, 'role', None), getattr(m, 'content', None)
    if not isinstance(role, str) or content is None:
      raise InvalidInputError(
          f'A chat message needs a role and a content, got {m!r}.')
    out.append({'role': role, 'content': content})
  return out


class OpenAIChatModelHandler(_OpenAIHandler):
  """Answers conversations with ``POST {base_url}/chat/completions``; a
  prediction is the assistant's reply text. The chat API takes one
  conversation per request: ``max_concurrent_requests`` are in flight."""
  def __init__(self, base_url: str, model: str, **kwargs):
    one_per_request(type(self).__name__, kwargs)
    super().__init__(base_url, model, **kwargs)

  def path(self, inference_args):
    return '/chat/completions'

  def encode(self, batch, inference_args):
    (conversation,) = batch
    return {**self._params(inference_args),
            'messages': chat_messages(conversation)}

  def decode(self, answer, batch):
    choices = expect_list(answer['choices'], '"choices"')
    return [_text(choices[0]['message']['content'],
                  'choices[0].message.content')]


def _vector(embedding: Any, i: int) -> np.ndarray:
  """An embedding as a float32 vector; a ValueError unless it is a
  non-empty list of numbers."""
  vector = np.asarray(expect_list(embedding, f'data[{i}].embedding'))
  if vector.ndim != 1 or not vector.size or vector.dtype.kind not in 'iuf':
    raise AnswerFormatError(
        f'expected data[{i}].embedding to be a list of numbers, got '
        f'{str(embedding)[:100]}')
  return vector.astype(np.float32)


def _text(value: Any, what: str) -> str:
  if not isinstance(value, str):
    raise AnswerFormatError(
        f'expected {what} to be a string, got {value!r:.100}')
  return value


publish(globals(), 'runinference.remote')
