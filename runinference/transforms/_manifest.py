"""SHA-256 manifests of MLTransform artifact files.

A manifest maps file paths, relative to its folder, to ``{"sha256", "size"}``.
Files written while the pipeline is built are recorded in the
``manifest.json`` of their own folder; the files of statistics stage ``k``,
written while it runs, in ``manifest_stage<k>.json`` of the handler's folder
(one writer per manifest). Every read checks the bytes it got before they are
used. IO goes through Beam's ``FileSystems``.
"""
from __future__ import annotations

import hashlib
import json
import os
import re

from apache_beam.io.filesystems import FileSystems

from ._errors import ArtifactFormatError, ArtifactNotFoundError

FORMAT = 'runinference.mltransform.manifest/1'
MANIFEST_FILE = 'manifest.json'
_DIGEST = re.compile('[0-9a-f]{64}')
_UNTRUSTED = (
    'Artifacts without a manifest (written by apache_beam.ml.transforms, or '
    'by runinference before manifests were added) cannot be checked and are '
    'not trusted: run the pipeline in write mode again '
    '(write_artifact_location) to write them with a manifest.')


def stage_manifest(stage: int) -> str:
  return f'manifest_stage{stage}.json'


def entry(data: bytes) -> dict:
  return {'sha256': hashlib.sha256(data).hexdigest(), 'size': len(data)}


def write_bytes(path: str, data: bytes) -> None:
  parent = os.path.dirname(path)
  if parent and not FileSystems.exists(parent):
    FileSystems.mkdirs(parent)
  with FileSystems.create(path) as f:
    f.write(data)


def read_bytes(path: str) -> bytes:
  with FileSystems.open(path) as f:
    return f.read()


def parse_json(data: bytes, path: str):
  """``data`` as JSON; an error names ``path`` and where the JSON breaks."""
  try:
    return json.loads(data.decode('utf-8'))
  except UnicodeDecodeError as e:
    raise ArtifactFormatError(
        f'{path} is not valid UTF-8 JSON (byte {e.start}): {e.reason}.') from None
  except json.JSONDecodeError as e:
    raise ArtifactFormatError(
        f'{path} is malformed JSON: {e.msg} at line {e.lineno} column '
        f'{e.colno} (char {e.pos}).') from None


def record(folder: str, manifest: str, files: dict[str, dict]) -> None:
  """Adds ``files`` (relative path -> ``entry``) to ``folder/manifest``."""
  path = os.path.join(folder, manifest)
  current = load(path) if FileSystems.exists(path) else {}
  current.update(files)
  payload = {'format': FORMAT, 'files': dict(sorted(current.items()))}
  write_bytes(path, json.dumps(payload, indent=1).encode('utf-8'))


def load(path: str) -> dict[str, dict]:
  """The files a manifest records (relative path -> entry)."""
  if not FileSystems.exists(path):
    raise ArtifactNotFoundError(f'The manifest {path} is missing. {_UNTRUSTED}')
  payload = parse_json(read_bytes(path), path)
  payload = payload if isinstance(payload, dict) else {}
  files = payload.get('files')
  if payload.get('format') != FORMAT or not isinstance(files, dict):
    raise ArtifactFormatError(
        f'{path} is not an MLTransform manifest (expected format {FORMAT!r} '
        'and a "files" object).')
  for name, e in files.items():
    if not (isinstance(e, dict) and isinstance(e.get('size'), int) and
            isinstance(e.get('sha256'), str) and _DIGEST.fullmatch(e['sha256'])):
      raise ArtifactFormatError(
          f'{path}: the entry of {name!r} needs "sha256" (64 hex digits) and '
          f'"size" (bytes), got {e!r:.120}.')
  return files


def verified(folder: str, manifest: str, relpath: str,
             files: dict | None = None) -> bytes:
  """The bytes of ``folder/relpath``, checked against ``folder/manifest``
  (``files``: that manifest, already loaded)."""
  path = os.path.join(folder, relpath)
  manifest_path = os.path.join(folder, manifest)
  if files is None:
    files = load(manifest_path)
  expected = files.get(relpath)
  if expected is None:
    raise ArtifactFormatError(
        f'{path} is not recorded in the manifest {manifest_path}: it was not '
        'written with these artifacts.')
  if not FileSystems.exists(path):
    raise ArtifactNotFoundError(
        f'{path} is missing (the manifest {manifest_path} records '
        f'{expected["size"]} bytes, sha256 {expected["sha256"]}).')
  data = read_bytes(path)
  found = entry(data)
  if found != {'sha256': expected['sha256'], 'size': expected['size']}:
    what = ('was truncated or changed' if found['size'] < expected['size']
            else 'has changed')
    raise ArtifactFormatError(
        f'{path} {what} since it was written: the manifest {manifest_path} '
        f'records {expected["size"]} bytes with sha256 {expected["sha256"]}, '
        f'found {found["size"]} bytes with sha256 {found["sha256"]}.')
  return data


def verify_folder(folder: str, manifest: str = MANIFEST_FILE) -> None:
  """Checks every file ``folder/manifest`` records."""
  files = load(os.path.join(folder, manifest))
  for relpath in files:
    verified(folder, manifest, relpath, files)


def manifests_under(folder: str) -> list[str]:
  """Paths of the ``manifest.json`` files in ``folder`` and below."""
  match = FileSystems.match([os.path.join(folder, '**' + MANIFEST_FILE)])[0]
  return sorted(m.path for m in match.metadata_list
                if os.path.basename(m.path) == MANIFEST_FILE)
