"""Readable artifacts: JSON for transform settings and statistics, plain text
for vocabularies. Nothing is pickled, and nothing named in them is imported:
classes and functions are looked up in ``_registry``. Every file is recorded
with its SHA-256 in a manifest (``_manifest``) and checked when read.

Layout under a handler's artifact directory::

  transforms.json              the transforms (class + constructor arguments)
  manifest.json                digests of the files above written at build time
  raw_data_metadata/schema.json  input columns and their types (+ manifest.json)
  stats_stage<k>.json          statistics of stage k (moments, quantiles, df)
  transform_fn/assets/<name>   vocabularies (one token per line, most
                               frequent first) and word counts ("count token")
  manifest_stage<k>.json       digests of stage k's statistics and assets
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from typing import Any

from apache_beam.io.filesystems import FileSystems

from . import _manifest
from ._errors import ArtifactFormatError, ArtifactNotFoundError
from ._specs import (check_spec, check_value, decode_object,  # noqa: F401
                     decode_value, encode_object, encode_value)
from ._stats import DF, MOMENTS, QUANTILES, VOCAB, WORD_COUNT

FORMAT = 'runinference.mltransform/1'
ASSETS_DIR = os.path.join('transform_fn', 'assets')
TRANSFORMS_FILE = 'transforms.json'
_MOMENT_KEYS = ('count', 'mean', 'var', 'min', 'max')
_STAGE_FILE = re.compile(r'(?:stats|manifest)_stage(\d+)\.json')


# -- files -------------------------------------------------------------------


def write_json(path: str, payload: Any) -> None:
  """Writes ``path`` and records it in the ``manifest.json`` of its folder."""
  data = json.dumps(payload, indent=1, sort_keys=False).encode('utf-8')
  _manifest.write_bytes(path, data)
  _manifest.record(os.path.dirname(path), _manifest.MANIFEST_FILE,
                   {os.path.basename(path): _manifest.entry(data)})


def write_sealed_json(path: str, payload: dict) -> None:
  """Writes ``path`` with its own SHA-256 inside (``"sha256"`` of the rest):
  for a file whose folder holds nothing else of ours (an MLTransform's
  ``attributes.json`` beside its step folders), so that no manifest is added
  to a folder users list."""
  body = {k: v for k, v in payload.items() if k != 'sha256'}
  digest = hashlib.sha256(_canonical(body)).hexdigest()
  _manifest.write_bytes(path, json.dumps(
      {**body, 'sha256': digest}, indent=1).encode('utf-8'))


def read_sealed_json(path: str, what: str) -> dict:
  """Reads a file ``write_sealed_json`` wrote, checked against its digest."""
  _require(path, what)
  payload = _manifest.parse_json(_manifest.read_bytes(path), path)
  if not isinstance(payload, dict) or 'sha256' not in payload:
    raise ArtifactFormatError(
        f'{path} carries no SHA-256 of its content: it was not written by '
        'this version of runinference.transforms, or was edited. Run write '
        'mode again.')
  body = {k: v for k, v in payload.items() if k != 'sha256'}
  found = hashlib.sha256(_canonical(body)).hexdigest()
  if found != payload['sha256']:
    raise ArtifactFormatError(
        f'{path} was changed after it was written: its content has SHA-256 '
        f'{found}, the file records {payload["sha256"]}. Run write mode again '
        'rather than editing artifacts.')
  return body


def _require(path: str, what: str) -> None:
  if not FileSystems.exists(path):
    raise ArtifactNotFoundError(
        f'{what} not found at {path}. Run the pipeline with '
        'write_artifact_location set to this location first, then read it '
        'with read_artifact_location.')


def _canonical(payload: dict) -> bytes:
  return json.dumps(payload, sort_keys=True, separators=(',', ':')).encode('utf-8')


def read_json(path: str, what: str) -> Any:
  """Reads a file ``write_json`` wrote, checked against its manifest."""
  _require(path, what)
  data = _manifest.verified(os.path.dirname(path), _manifest.MANIFEST_FILE,
                            os.path.basename(path))
  return _manifest.parse_json(data, path)


def transform_specs(directory: str) -> list:
  """The checked (not built) entries of ``directory/transforms.json``."""
  path = os.path.join(directory, TRANSFORMS_FILE)
  payload = read_json(path, 'MLTransform transforms')
  specs = payload.get('transforms') if isinstance(payload, dict) else None
  if not isinstance(specs, list):
    raise ArtifactFormatError(f'{path}: expected {{"transforms": [...]}}.')
  for i, spec in enumerate(specs):
    check_spec(spec, f'{path}: transforms[{i}]')
  return specs


def read_transforms(directory: str) -> list:
  """The transforms of a handler's ``transforms.json``, rebuilt once all of
  them check (what a read-mode ``TFTProcessHandler`` runs)."""
  path = os.path.join(directory, TRANSFORMS_FILE)
  return [decode_object(s, f'{path}: transforms[{i}]')
          for i, s in enumerate(transform_specs(directory))]


def check_read_dir(directory: str) -> list:
  """Checks all a read-mode handler will read from ``directory`` (manifests,
  transforms, every written stage's statistics and vocabularies) so that
  damage is an error while the pipeline is built; returns the checked
  entries of ``transforms.json``."""
  specs = transform_specs(directory)
  for manifest in _manifest.manifests_under(directory):
    _manifest.verify_folder(os.path.dirname(manifest))
  match = FileSystems.match([os.path.join(directory, '*_stage*.json')])[0]
  stages = {int(m.group(1)) for m in (
      _STAGE_FILE.fullmatch(os.path.basename(x.path))
      for x in match.metadata_list) if m}
  for stage in sorted(stages):
    read_stage(directory, stage)
  return specs


def read_attributes(path: str) -> list:
  """The steps of an MLTransform's ``attributes.json``, once they and all
  they point to are checked (nothing is built here)."""
  payload = read_sealed_json(
      path, f'MLTransform artifacts ({os.path.basename(path)})')
  fmt = payload.get('format') if isinstance(payload, dict) else None
  if fmt != FORMAT:
    raise ArtifactFormatError(
        f'{path} was not written by runinference.transforms (format {fmt!r}); '
        'artifacts of apache_beam.ml.transforms (TensorFlow Transform) '
        'cannot be read: write them again with runinference.')
  steps = payload.get('steps')
  if not isinstance(steps, list):
    raise ArtifactFormatError(f'{path}: expected "steps": [...].')
  for i, step in enumerate(steps):
    _check_step(step, f'{path}: steps[{i}]', os.path.dirname(path))
  return steps


def _check_step(step: Any, where: str, parent: str) -> None:
  kind = step.get('kind') if isinstance(step, dict) else None
  if kind == 'provider':
    check_spec(step.get('transform'), f'{where}.transform')
    return
  folder = step.get('dir') if kind == 'tft' else None
  parts = folder.replace('\\', '/').split('/') if isinstance(folder, str) else ['']
  if not isinstance(folder, str) or os.path.isabs(folder) or '..' in parts or '' in parts:
    raise ArtifactFormatError(
        f'{where}: expected {{"kind": "tft", "dir": <sub-folder>}} or '
        f'{{"kind": "provider", "transform": ...}}, got {step!r:.120}.')
  saved = step.get('transforms')
  for j, spec in enumerate(saved if isinstance(saved, list) else []):
    check_spec(spec, f'{where}.transforms[{j}]')
  directory = os.path.join(parent, folder)
  specs = check_read_dir(directory)
  if saved is not None and saved != specs:
    raise ArtifactFormatError(
        f'{where}.transforms differ from those of '
        f'{os.path.join(directory, TRANSFORMS_FILE)}.')


def _token_text(token: bytes) -> str:
  return token.decode('utf-8', 'surrogateescape')


def _lines(lines: list[str]) -> bytes:
  return ''.join(line + '\n' for line in lines).encode('utf-8', 'surrogateescape')


def vocab_path(directory: str, filename: str, tokens) -> str:
  # Tokens with line breaks cannot be one-per-line: use JSON lines then.
  jsonl = any(b'\n' in t or b'\r' in t for t in tokens)
  return os.path.join(directory, ASSETS_DIR, filename + ('.jsonl' if jsonl else ''))


def write_stage(directory: str, stage: int, analyzers: list, stats: dict) -> dict:
  """Writes a stage's statistics; returns them in the form ``_ready`` reads
  (vocabularies as token lists), the same form ``read_stage`` returns.
  ``analyzers``: objects with ``key``, ``kind``, ``column``, ``transform``
  and ``params``."""
  numeric: dict[str, Any] = {}
  ready: dict[str, Any] = {}
  files: dict[str, dict] = {}

  def put(path: str, data: bytes) -> str:
    _manifest.write_bytes(path, data)
    rel = os.path.relpath(path, directory)
    files[rel] = _manifest.entry(data)
    return rel

  for a in analyzers:
    value = stats[a.key]
    if a.kind == VOCAB:
      tokens = [t for t, _ in value]
      path = vocab_path(directory, a.params['filename'], tokens)
      if path.endswith('.jsonl'):
        data = _lines([json.dumps(_token_text(t)) for t in tokens])
      else:
        data = _lines([_token_text(t) for t in tokens])
      ready[a.key] = tokens
      numeric[a.key] = {'file': put(path, data), 'size': len(tokens)}
    elif a.kind == WORD_COUNT:
      path = os.path.join(directory, ASSETS_DIR, a.params['filename'])
      data = _lines([f'{c} {_token_text(t)}' for t, c in value])
      ready[a.key] = None
      numeric[a.key] = {'file': put(path, data)}
    elif a.kind == DF:
      ready[a.key] = value
      numeric[a.key] = {'df': {str(k): v for k, v in sorted(value.items())}}
    else:
      ready[a.key] = value
      numeric[a.key] = value
    numeric[a.key] = {'transform': a.transform, 'column': a.column,
                      'kind': a.kind, 'value': numeric[a.key]}
  put(os.path.join(directory, f'stats_stage{stage}.json'),
      json.dumps(numeric, indent=1).encode('utf-8'))
  # Last: a stage cut short leaves no manifest, and reading it fails.
  _manifest.record(directory, _manifest.stage_manifest(stage), files)
  return ready


def _value_error(where: str, problem: str) -> ArtifactFormatError:
  return ArtifactFormatError(f'{where}: {problem}')


def _asset(value: Any, where: str) -> str:
  rel = value.get('file') if isinstance(value, dict) else None
  parts = rel.replace('\\', '/').split('/') if isinstance(rel, str) else []
  if (not rel or os.path.isabs(rel) or '..' in parts or
      not rel.startswith(ASSETS_DIR + os.sep)):
    raise _value_error(where, f'"file" must name a file under {ASSETS_DIR}, '
                       f'got {rel!r:.120}.')
  return rel


def _read_vocab(directory, rel, files, manifest, size, where) -> list[bytes]:
  path = os.path.join(directory, rel)
  data = _manifest.verified(directory, manifest, rel, files)
  lines = data.decode('utf-8', 'surrogateescape').split('\n')[:-1]
  if path.endswith('.jsonl'):
    try:
      lines = [json.loads(line) for line in lines]
    except json.JSONDecodeError as e:
      raise ArtifactFormatError(f'{path} has a malformed line: {e}') from None
  if len(lines) != size:
    raise ArtifactFormatError(
        f'{path} has {len(lines)} tokens but {where} records a vocabulary of '
        f'{size}: the file is truncated or was changed.')
  return [line.encode('utf-8', 'surrogateescape') for line in lines]


def read_stage(directory: str, stage: int) -> dict:
  """Statistics of ``stage``, each file checked against the stage manifest;
  a damaged or incomplete entry is an error naming the file and entry."""
  manifest = _manifest.stage_manifest(stage)
  files = _manifest.load(os.path.join(directory, manifest))
  name = f'stats_stage{stage}.json'
  path = os.path.join(directory, name)
  payload = _manifest.parse_json(
      _manifest.verified(directory, manifest, name, files), path)
  if not isinstance(payload, dict):
    raise ArtifactFormatError(f'{path}: expected an object of statistics.')
  out: dict[str, Any] = {}
  for key, entry in payload.items():
    where = f'{path} entry {key!r}'
    if not (isinstance(entry, dict) and 'kind' in entry and 'value' in entry):
      raise _value_error(where, 'needs "kind" and "value".')
    kind, value = entry['kind'], entry['value']
    if kind == VOCAB:
      size = value.get('size') if isinstance(value, dict) else None
      if not isinstance(size, int):
        raise _value_error(where, 'lacks the vocabulary "size".')
      out[key] = _read_vocab(directory, _asset(value, where), files, manifest,
                             size, where)
    elif kind == WORD_COUNT:
      _manifest.verified(directory, manifest, _asset(value, where), files)
      out[key] = None
    elif kind == DF:
      df: Any = value.get('df') if isinstance(value, dict) else None
      try:
        out[key] = {int(k): int(v) for k, v in df.items()}
      except (AttributeError, TypeError, ValueError):
        raise _value_error(
            where, 'needs "df": {token id: document count}.') from None
    elif kind == MOMENTS:
      missing = [k for k in _MOMENT_KEYS if not isinstance(value, dict) or k not in value]
      if missing:
        raise _value_error(where, f'({kind}) lacks {", ".join(map(repr, missing))}.')
      out[key] = value
    elif kind == QUANTILES:
      if not isinstance(value, list):
        raise _value_error(where, f'({kind}) must be a list, got {value!r:.80}.')
      out[key] = value
    else:
      out[key] = value
  return out
