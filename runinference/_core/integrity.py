"""Model-file integrity: ``model_sha256=`` digests checked before every load
(the first, a reload after a timeout, each refresh candidate). Unpickling a
model file runs its code, so a file that is not one of the allowed digests
is never loaded."""
from __future__ import annotations

import hashlib
import re
from typing import Any, Iterable, Optional, Union

from ..exceptions import (ConfigurationError, ConfigurationTypeError,
                          ModelIntegrityError)

_HEX64 = re.compile(r'^[0-9a-f]{64}$')
_CHUNK = 1 << 20

DigestSpec = Union[None, str, Iterable[str]]


def allowed_digests(spec: DigestSpec) -> frozenset[str]:
  """Validates ``model_sha256=``: a hex SHA-256 digest or a collection of
  them (an allow-list); None allows any file."""
  if spec is None:
    return frozenset()
  values = [spec] if isinstance(spec, str) else spec
  try:
    digests = [v.strip().lower() for v in values]  # type: ignore[union-attr]
  except (TypeError, AttributeError):
    raise ConfigurationTypeError(
        'model_sha256 must be a hex SHA-256 digest (str) or a collection of '
        f'them, got {spec!r}.') from None
  bad = [d for d in digests if not _HEX64.match(d)]
  if bad or not digests:
    raise ConfigurationError(
        'model_sha256 must hold 64-character hex SHA-256 digests (e.g. from '
        f'`sha256sum model.pkl`); got {bad or spec!r}.')
  return frozenset(digests)


def file_sha256(path: str) -> str:
  """SHA-256 of a file on any Beam filesystem, read in 1 MiB chunks."""
  from apache_beam.io.filesystem import CompressionTypes
  from apache_beam.io.filesystems import FileSystems
  digest = hashlib.sha256()
  with FileSystems.open(
      path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
    while True:
      chunk = f.read(_CHUNK)
      if not chunk:
        break
      digest.update(chunk)
  return digest.hexdigest()


def verify_model_file(handler: Any) -> None:
  """Raises ``ModelIntegrityError`` unless the file ``handler`` is about to
  load has one of its allowed digests (no-op when it allows any)."""
  allowed: frozenset = getattr(handler, 'model_sha256', frozenset())
  if not allowed:
    return
  path: Optional[str] = getattr(handler, 'model_location', None)
  if not path:
    raise ModelIntegrityError(
        f'{type(handler).__name__} has model_sha256 set but no single model '
        'file to check (model_location is None).')
  try:
    actual = file_sha256(path)
  except Exception as exc:  # pylint: disable=broad-except
    raise ModelIntegrityError(
        f'Cannot check the SHA-256 of model file {path!r} ({exc}); it is not '
        'loaded. model_sha256 needs a single readable file.') from exc
  if actual not in allowed:
    raise ModelIntegrityError(
        f'Model file {path!r} has SHA-256 {actual}, which is not an allowed '
        f'model_sha256 ({", ".join(sorted(allowed))}). It was not loaded: '
        'check where it came from, then add its digest if it is trusted.')
