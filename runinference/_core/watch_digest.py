"""Vetting a model file from a watched pattern before it is loaded.

Unpickling runs code from the file, so anyone who can write into a watched
folder could run code on every worker. A watched file that is not in a
data-only format is loaded only with a digest source -- a sidecar
``<file>.sha256`` written by the publisher and matching the file -- or with
the explicit opt-in ``WatchFilePattern(..., allow_pickle=True)``; otherwise
it is refused with a warning naming it (docs/security.md)."""
from __future__ import annotations

import logging
from typing import Optional

from .integrity import _HEX64, file_sha256

_LOGGER = logging.getLogger(__name__)

#: Endings of model files that hold data only: loading them runs no code from
#: the file. Any other file may be a pickle (``.pkl``, ``.joblib``, ``.pt``,
#: ``.h5`` with Lambda layers, ...), which runs whatever it says when loaded.
DATA_ONLY_SUFFIXES = ('.skops', '.safetensors', '.onnx', '.json', '.ubj',
                      '.txt', '.pb', '.tflite', '.gguf')
DIGEST_SUFFIX = '.sha256'


def sidecar_version(path: str) -> Optional[tuple]:
  """(mtime, size) of ``path``'s ``.sha256`` sidecar, or None if absent."""
  from apache_beam.io.filesystems import FileSystems
  try:
    found = FileSystems.match([path + DIGEST_SUFFIX])[0].metadata_list
  except Exception:  # pylint: disable=broad-except
    return None
  return ((found[0].last_updated_in_seconds, found[0].size_in_bytes)
          if found else None)


def vet_candidate(path: str, allow_pickle: bool) -> Optional[str]:
  """Why the watched file ``path`` must not be loaded, or None.

  A file in a data-only format is always fine. Any other may run code when
  loaded, so it needs a digest source -- a sidecar ``<file>.sha256`` written
  by the publisher (``sha256sum model.pkl > model.pkl.sha256``) that matches
  the file -- or the explicit opt-in ``allow_pickle``.
  """
  if path.lower().endswith(DATA_ONLY_SUFFIXES):
    return None
  sidecar = path + DIGEST_SUFFIX
  try:
    from apache_beam.io.filesystems import FileSystems
    with FileSystems.open(sidecar) as f:
      text = f.read(4096).decode('utf-8', 'replace')
  except Exception:  # pylint: disable=broad-except  (absent or unreadable)
    text = None
  if text is None:
    if allow_pickle:
      _LOGGER.info('Model file %r may be a pickle and has no %s digest; '
                   'loading it because allow_pickle=True.', path,
                   DIGEST_SUFFIX)
      return None
    return (f'it may be a pickle, which runs code when loaded, and has no '
            f'digest: publish its SHA-256 beside it as {sidecar!r} (e.g. '
            '`sha256sum model.pkl > model.pkl.sha256`, written before the '
            'model), save it in a data-only format (.skops, .safetensors, '
            '.onnx), or opt in with WatchFilePattern(..., allow_pickle=True)')
  expected = (text.split() or [''])[0].strip().lower()
  if not _HEX64.match(expected):
    return (f'its digest file {sidecar!r} does not start with a 64-digit hex '
            'SHA-256')
  try:
    actual = file_sha256(path)
  except Exception as exc:  # pylint: disable=broad-except
    return f'its SHA-256 could not be computed ({exc})'
  if actual != expected:
    return (f'its SHA-256 is {actual}, but {sidecar!r} says {expected}: the '
            'file is not the one published')
  return None


def refuse(path: str, why: str) -> None:
  _LOGGER.warning(
      'Model file %r from the watched pattern is not loaded: %s. The current '
      'model keeps serving; see docs/security.md.', path, why)
