"""Errors raised by ``runinference.transforms``.

Each derives from ``MLTransformError`` and from the builtin that the reference
raises in the same situation, so ``except ValueError`` keeps working.
"""
from ..exceptions import (  # noqa: F401  (re-exported)
    ArtifactExistsError, ArtifactFormatError, ArtifactNotFoundError,
    ColumnTypeError, MissingColumnError, MLTransformError)

__all__ = [
    'ArtifactExistsError', 'ArtifactFormatError', 'ArtifactNotFoundError',
    'ColumnTypeError', 'MLTransformError', 'MissingColumnError'
]
