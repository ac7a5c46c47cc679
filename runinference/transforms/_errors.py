"""Errors raised by ``runinference.transforms``.

Each derives from ``MLTransformError`` and from the builtin that the reference
raises in the same situation, so ``except ValueError`` keeps working.
"""
try:  # the project-wide hierarchy, once it exists
  from runinference.exceptions import RunInferenceError as _Base
except ImportError:  # pragma: no cover - depends on the checkout
  class _Base(Exception):
    """Stand-in base until ``runinference.exceptions`` exists."""


class MLTransformError(_Base):
  """Base class of every MLTransform error."""


class MissingColumnError(MLTransformError, KeyError):
  """A row lacks a column that a transform reads."""

  def __str__(self):  # KeyError would quote the whole message
    return str(self.args[0]) if self.args else ''


class ColumnTypeError(MLTransformError, TypeError):
  """A column holds values of the wrong kind (e.g. text for a numeric op)."""


class ArtifactExistsError(MLTransformError, FileExistsError):
  """Write mode found artifacts already at ``write_artifact_location``."""


class ArtifactNotFoundError(MLTransformError, FileNotFoundError):
  """Read mode found no artifacts at ``read_artifact_location``."""


class ArtifactFormatError(MLTransformError, ValueError):
  """An artifact file cannot be read back or a value cannot be written."""


__all__ = [
    'ArtifactExistsError', 'ArtifactFormatError', 'ArtifactNotFoundError',
    'ColumnTypeError', 'MLTransformError', 'MissingColumnError'
]
