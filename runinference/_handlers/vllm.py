"""vLLM handlers with the reference's names: each worker starts an
OpenAI-compatible server process (``vllm serve`` by default, or any command
given) and sends it completions or chat requests, restarting it if it dies."""
from __future__ import annotations

import dataclasses
import shutil
from typing import Any, Optional, Sequence

from ..exceptions import ConfigurationError, MissingDependencyError
from .._core.naming import publish
from .._core.types import PredictionResult
from .http_client import HttpClient, HttpSettings
from .openai_compat import chat_messages, one_per_request
from .remote import RemoteModelHandler
from .remote_errors import RemoteConnectionError
from .server_process import ServerProcess, ServerStartError

__all__ = [
    'OpenAIChatMessage',
    'VLLMCompletionsModelHandler',
    'VLLMChatModelHandler',
    'ServerStartError',
]


@dataclasses.dataclass(frozen=True)
class OpenAIChatMessage:
  """One message of a conversation: ``role`` ('system', 'user',
  'assistant') and ``content``."""
  role: str
  content: str


@dataclasses.dataclass
class _ServedModel:
  server: ServerProcess
  client: HttpClient


class _VLLMHandler(RemoteModelHandler):
  _PATH = ''

  def __init__(
      self,
      model_name: str,
      vllm_server_kwargs: Optional[dict[str, Optional[str]]] = None,
      *,
      server_command: Optional[Sequence[str]] = None,
      startup_timeout_secs: float = 600.0,
      max_server_restarts: int = 3,
      request_timeout_secs: float = 120.0,
      max_concurrent_requests: int = 8,
      **kwargs):
    for unsupported in ('use_dynamo', 'dynamo_frontend_kwargs'):
      if kwargs.pop(unsupported, None):
        raise ConfigurationError(
            f'{unsupported} is not supported here: this handler runs one '
            'OpenAI-compatible server per worker.')
    one_per_request(type(self).__name__, kwargs)
    super().__init__(
        namespace=kwargs.pop('namespace', ''),
        request_timeout_secs=request_timeout_secs,
        max_concurrent_requests=max_concurrent_requests, **kwargs)
    self._model_name = model_name
    self._vllm_server_kwargs = dict(vllm_server_kwargs or {})
    self._server_command = list(server_command) if server_command else None
    self._startup_timeout_secs = startup_timeout_secs
    self._max_server_restarts = max_server_restarts

  def server_command(self) -> list[str]:
    """The command that starts the server; ``{port}`` and ``{model}`` in
    an overriding ``server_command`` are filled in."""
    if self._server_command is not None:
      cmd = [a.replace('{model}', self._model_name)
             for a in self._server_command]
    elif shutil.which('vllm'):
      cmd = ['vllm', 'serve', self._model_name, '--host', '127.0.0.1',
             '--port', '{port}']
    else:
      raise MissingDependencyError(
          f'{type(self).__name__} starts `vllm serve`, and vllm is not '
          'installed: pip install vllm, or pass server_command=[...] (any '
          'OpenAI-compatible server; {port} and {model} are filled in).')
    for key, value in self._vllm_server_kwargs.items():
      cmd.append(f'--{key}')
      if value is not None:
        cmd.append(str(value))
    return cmd

  def create_client(self) -> _ServedModel:
    server = ServerProcess(
        self.server_command(), ready_path='/v1/models',
        startup_timeout_secs=self._startup_timeout_secs,
        max_restarts=self._max_server_restarts)
    server.start()
    client = HttpClient(HttpSettings(
        base_url=server.url + '/v1',
        timeout_secs=self.request_timeout_secs,
        max_connections=self.max_concurrent_requests))
    return _ServedModel(server, client)

  def request(self, batch, model: _ServedModel, inference_args=None):
    model.server.ensure_running()
    body = {**(inference_args or {}), 'model': self._model_name,
            **self.encode(batch)}
    try:
      answer = model.client.post_json(self._PATH, body)
    except RemoteConnectionError:
      # A dead server is restarted here; the retry loop resends.
      model.server.ensure_running()
      raise
    return [PredictionResult(x, answer) for x in batch]

  def encode(self, batch) -> dict:
    raise NotImplementedError

  def validate_inference_args(self, inference_args):
    pass


class VLLMCompletionsModelHandler(_VLLMHandler):
  """Completes string prompts; a prediction is
  ``PredictionResult(prompt, completion)``, the completion being the
  server's JSON answer (``completion['choices'][0]['text']``)."""
  _PATH = '/completions'

  def encode(self, batch):
    (prompt,) = batch
    return {'prompt': prompt}


class VLLMChatModelHandler(_VLLMHandler):
  """Answers conversations (sequences of ``OpenAIChatMessage``); a
  prediction is ``PredictionResult(conversation, completion)``, the
  completion being the server's JSON answer
  (``completion['choices'][0]['message']['content']``)."""
  _PATH = '/chat/completions'

  def __init__(
      self,
      model_name: str,
      chat_template_path: Optional[str] = None,
      vllm_server_kwargs: Optional[dict[str, Optional[str]]] = None,
      **kwargs):
    server_kwargs = dict(vllm_server_kwargs or {})
    if chat_template_path:
      server_kwargs['chat-template'] = chat_template_path
    super().__init__(model_name, server_kwargs, **kwargs)

  def encode(self, batch):
    (conversation,) = batch
    return {'messages': chat_messages(conversation)}


publish(globals(), 'runinference.vllm_inference', alias=True)
