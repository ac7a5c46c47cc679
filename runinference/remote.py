"""Handlers for models behind a server: MLflow scoring, KServe V1/V2 (Triton,
MLServer), OpenAI-compatible embeddings/completions/chat, and the base
classes to write another protocol on (``RemoteModelHandler``,
``HttpModelHandler``). See docs/remote.md."""
from ._core.naming import relabel
from ._handlers.http_handler import HttpModelHandler
from ._handlers.kserve import KServeV1ModelHandler, KServeV2ModelHandler
from ._handlers.mlflow import MLflowModelHandler
from ._handlers.openai_compat import (OpenAIChatModelHandler,
                                      OpenAICompletionsModelHandler,
                                      OpenAIEmbeddingsModelHandler)
from ._handlers.remote import RateLimitedBatchError, RemoteModelHandler
from ._handlers.remote_errors import (AnswerFormatError, BisectionBudgetSpent,
                                      RemoteConnectionError,
                                      RemoteProtocolError,
                                      RemoteRedirectError,
                                      RemoteRequestError,
                                      RemoteRequestRejected,
                                      RemoteResultCountError,
                                      RemoteServerError, RemoteTimeoutError,
                                      is_transient, retry_on_transient)
from .exceptions import BatchFailedError, RateLimitExceeded


__all__ = [
    'AnswerFormatError',
    'BatchFailedError',
    'BisectionBudgetSpent',
    'HttpModelHandler',
    'KServeV1ModelHandler',
    'KServeV2ModelHandler',
    'MLflowModelHandler',
    'OpenAIChatModelHandler',
    'OpenAICompletionsModelHandler',
    'OpenAIEmbeddingsModelHandler',
    'RateLimitExceeded',
    'RateLimitedBatchError',
    'RemoteConnectionError',
    'RemoteModelHandler',
    'RemoteProtocolError',
    'RemoteRedirectError',
    'RemoteRequestError',
    'RemoteRequestRejected',
    'RemoteResultCountError',
    'RemoteServerError',
    'RemoteTimeoutError',
    'is_transient',
    'retry_on_transient',
]

relabel(globals())
