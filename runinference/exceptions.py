"""Every error runinference raises derives from ``RunInferenceError``.

Each class also keeps the builtin base it has always had (a missing model file
is still a ``FileNotFoundError`` and a ``RuntimeError``), so existing
``except`` clauses keep working.
"""
from __future__ import annotations

__all__ = [
    'RunInferenceError',
    'ConfigurationError',
    'ConfigurationTypeError',
    'InvalidInputError',
    'InvalidInputTypeError',
    'MissingDependencyError',
    'ModelFileNotFoundError',
    'UnsupportedModelFileType',
    'MissingColumnsError',
    'RateLimitExceeded',
    'InferenceTimeoutError',
    'ResultCountError',
    'FailureThresholdExceeded',
    'BatchFailedError',
    'ModelIntegrityError',
    'ElementFunctionError',
    'UnknownModelKeyError',
    'ModelUpdateError',
    'ModelRefreshRejected',
    'TooManyHungCalls',
    'UnsupportedOptionError',
    'UntrustedModelTypesError',
]


class RunInferenceError(Exception):
  """Base of every runinference error."""


class ConfigurationError(RunInferenceError, ValueError):
  """An option of a handler or transform is missing, unknown or invalid."""


class ConfigurationTypeError(RunInferenceError, TypeError):
  """An option of a handler or transform has the wrong type."""


class InvalidInputError(RunInferenceError, ValueError):
  """An example (or batch) cannot be run: wrong shape, keys or values."""


class InvalidInputTypeError(RunInferenceError, TypeError):
  """An example has the wrong type for the handler (e.g. unkeyed data given
  to a keyed handler)."""


class MissingDependencyError(RunInferenceError, ImportError):
  """An optional framework a handler needs is not installed."""


class ModelFileNotFoundError(RunInferenceError, FileNotFoundError,
                             RuntimeError):
  """A model file is missing (a RuntimeError too, as the reference raises)."""


class UnsupportedModelFileType(RunInferenceError, ValueError, AssertionError):
  """``model_file_type`` is not a ModelFileType (an AssertionError too, as
  the reference raises)."""


class MissingColumnsError(RunInferenceError, ValueError):
  """A chunk lacks some of the feature columns."""


class RateLimitExceeded(RunInferenceError, RuntimeError):
  """The shared rate limit does not allow this batch now."""


class InferenceTimeoutError(RunInferenceError, TimeoutError):
  """A model load or batch ran past ``with_exception_handling(timeout=...)``."""


class ResultCountError(RunInferenceError, ValueError):
  """A model returned a different number of results than it got examples."""


class FailureThresholdExceeded(RunInferenceError, RuntimeError):
  """More elements failed than ``with_exception_handling(threshold=...)``
  allows."""


class BatchFailedError(RunInferenceError, RuntimeError):
  """A batch failed for a reason that is not about any one of its rows (a
  server error, throttling, a timeout, a lost connection): its rows fail once,
  together, and the batch is not bisected."""


class ModelIntegrityError(RunInferenceError, ValueError):
  """A model file's digest is not one of the allowed ``model_sha256``."""


class ElementFunctionError(RunInferenceError, ValueError):
  """An element's ``element_size_fn`` or ``batch_length_fn`` raised (the
  original error is its ``__cause__``); that element alone fails."""


class UnknownModelKeyError(RunInferenceError, KeyError):
  """A multi-model KeyedModelHandler got a key no KeyModelMapping names."""


class ModelUpdateError(RunInferenceError, RuntimeError):
  """A model update does not fit the handler (e.g. one path for a
  multi-model KeyedModelHandler)."""


class ModelRefreshRejected(RunInferenceError, RuntimeError):
  """A new model loaded but failed its warm-up call; the current model
  keeps serving."""


class TooManyHungCalls(InferenceTimeoutError):
  """Earlier model calls that timed out are still running; no new call is
  started (nor another model copy loaded)."""


class UnsupportedOptionError(RunInferenceError, NotImplementedError):
  """An option of the reference that runinference does not support."""


class UntrustedModelTypesError(ModelIntegrityError):
  """A skops model file holds types that are not trusted (``trusted_types``);
  it was not loaded."""
