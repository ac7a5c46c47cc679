"""Every error runinference raises derives from ``RunInferenceError``.

Each class also keeps the builtin base it has always had (a missing model file
is still a ``FileNotFoundError`` and a ``RuntimeError``), so existing
``except`` clauses keep working.
"""
from __future__ import annotations

from typing import Optional

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
    'MLTransformError',
    'MissingColumnError',
    'ColumnTypeError',
    'UnknownOperationError',
    'ArtifactExistsError',
    'ArtifactNotFoundError',
    'ArtifactFormatError',
    'DuckDBQueryError',
    'DuckDBSchemaError',
    'DuckDBDatabaseNotFoundError',
    'DuckDBLockTimeoutError',
    'RemoteRequestError',
    'RemoteServerError',
    'RemoteConnectionError',
    'RemoteTimeoutError',
    'RateLimitedBatchError',
    'ServerStartError',
    'ConformanceError',
    'SkipCheck',
    'ModelTooLargeError',
    'UnsupportedOnDaskError',
    'ConfigurationRuntimeError',
    'DeviceUnavailableError',
    'ModelLoadError',
    'ModelSourceError',
    'CorruptModelFileError',
    'TensorRTError',
    'InspectError',
    'CliError',
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


# -- MLTransform -----------------------------------------------------------

class MLTransformError(RunInferenceError):
  """Base class of every MLTransform error."""


class MissingColumnError(MLTransformError, KeyError):
  """A row lacks a column that a transform reads."""

  def __str__(self):  # KeyError would quote the whole message
    return str(self.args[0]) if self.args else ''


class ColumnTypeError(MLTransformError, TypeError):
  """A column holds values of the wrong kind (e.g. text for a numeric op)."""


class UnknownOperationError(MLTransformError, KeyError):
  """An operation has no registered input type (``register_input_dtype``)."""

  def __str__(self):  # KeyError would quote the whole message
    return str(self.args[0]) if self.args else ''


class ArtifactExistsError(MLTransformError, FileExistsError):
  """Write mode found artifacts already at ``write_artifact_location``."""


class ArtifactNotFoundError(MLTransformError, FileNotFoundError):
  """Read mode found no artifacts at ``read_artifact_location``."""


class ArtifactFormatError(MLTransformError, ValueError):
  """An artifact file cannot be read back or a value cannot be written."""


# -- DuckDB ----------------------------------------------------------------

class DuckDBQueryError(RunInferenceError, ValueError):
  """DuckDB rejected a query (bad SQL, unknown table or column)."""


class DuckDBSchemaError(RunInferenceError, ValueError):
  """The records do not fit the table they are written to."""


class DuckDBDatabaseNotFoundError(RunInferenceError, FileNotFoundError):
  """A database file to read from does not exist."""


class DuckDBLockTimeoutError(RunInferenceError, TimeoutError):
  """Another process held a database's write lock for too long."""


# -- Remote model servers --------------------------------------------------

class RemoteRequestError(RunInferenceError, ValueError):
  """The service rejected the request itself (an HTTP 4xx such as 400 or
  422): something in the rows sent is wrong. Not retried."""
  def __init__(self, message: str, status: Optional[int] = None,
               body: str = ''):
    super().__init__(message)
    self.status = status
    self.body = body


class RemoteServerError(RunInferenceError, RuntimeError):
  """The service failed or throttled (HTTP 5xx, 429, 408): retried with
  backoff; ``retry_after`` holds the server's Retry-After, in seconds."""
  def __init__(self, message: str, status: Optional[int] = None,
               body: str = '', retry_after: Optional[float] = None):
    super().__init__(message)
    self.status = status
    self.body = body
    self.retry_after = retry_after


class RemoteConnectionError(RunInferenceError, ConnectionError):
  """The connection to the service failed or was dropped."""


class RemoteTimeoutError(RunInferenceError, TimeoutError):
  """A request ran past ``request_timeout_secs``."""


class RateLimitedBatchError(BatchFailedError, RateLimitExceeded):
  """A batch the shared rate limit kept refusing until retries ran out."""


class ServerStartError(RunInferenceError, RuntimeError):
  """A model server process did not become ready."""


# -- The conformance kit ---------------------------------------------------

class ConformanceError(RunInferenceError, AssertionError):
  """A handler does not honour the contract the runtime relies on."""


class SkipCheck(RunInferenceError):
  """A check does not apply to a case (the reason is the message)."""


# -- Model manager ---------------------------------------------------------

class ModelTooLargeError(RunInferenceError, MemoryError):
  """A model needs more memory than the model manager's whole budget."""


# -- Runners ---------------------------------------------------------------

class UnsupportedOnDaskError(RunInferenceError, NotImplementedError):
  """A pipeline step that this Dask runner cannot execute faithfully."""


# -- Framework handlers ----------------------------------------------------

class ConfigurationRuntimeError(ConfigurationError, RuntimeError):
  """A handler option is missing or contradicts another (a RuntimeError too,
  as the reference raises for these)."""


class DeviceUnavailableError(RunInferenceError, RuntimeError):
  """The handler needs an accelerator (or a library version for it) that
  this worker lacks."""


class ModelLoadError(RunInferenceError, ValueError):
  """A model file exists but is not a model this handler can load (corrupt,
  truncated, or of another format)."""


class ModelSourceError(ModelLoadError, OSError):
  """A model could not be opened or fetched from where it was declared (a Hub
  id while offline, a directory without the files the loader needs); an
  OSError too, as the frameworks raise for these."""


class CorruptModelFileError(ModelLoadError, RuntimeError):
  """A model file is corrupt or truncated (a RuntimeError too, as torch
  raises for these)."""


class TensorRTError(RunInferenceError, RuntimeError):
  """TensorRT failed to build or run an engine (see the TensorRT log)."""


# -- CLI and YAML ----------------------------------------------------------

class InspectError(RunInferenceError, ValueError):
  """The file is missing or of a kind inspect does not know."""


class CliError(RunInferenceError):
  """A problem to report in one line; ``code`` is the exit status."""

  def __init__(self, message: str, code: int = 2):
    super().__init__(message)
    self.code = code
