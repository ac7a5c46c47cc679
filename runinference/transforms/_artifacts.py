"""Readable artifacts: JSON for transform settings and statistics, plain text
for vocabularies. Nothing is pickled.

Layout under a handler's artifact directory::

  transforms.json              the transforms (class + constructor arguments)
  raw_data_metadata/schema.json  input columns and their types
  stats_stage<k>.json          statistics of stage k (moments, quantiles, df)
  transform_fn/assets/<name>   vocabularies (one token per line, most
                               frequent first) and word counts ("count token")
"""
from __future__ import annotations

import importlib
import json
import os
from typing import Any

import numpy as np
from apache_beam.io.filesystems import FileSystems

from ._errors import ArtifactFormatError, ArtifactNotFoundError
from ._stats import DF, VOCAB, WORD_COUNT, Analyzer

FORMAT = 'runinference.mltransform/1'
ASSETS_DIR = os.path.join('transform_fn', 'assets')
TRANSFORMS_FILE = 'transforms.json'


# -- constructor arguments <-> JSON -------------------------------------------


def encode_value(value: Any, where: str) -> Any:
  if value is None or isinstance(value, (bool, int, float, str)):
    return value
  if isinstance(value, np.generic):
    return value.item()
  if isinstance(value, list):
    return [encode_value(v, where) for v in value]
  if isinstance(value, tuple):
    return {'tuple': [encode_value(v, where) for v in value]}
  if isinstance(value, bytes):
    return {'bytes': value.decode('latin-1')}
  if isinstance(value, np.ndarray):
    return {'ndarray': value.tolist(), 'dtype': str(value.dtype)}
  if isinstance(value, dict) and all(isinstance(k, str) for k in value):
    return {'dict': {k: encode_value(v, where) for k, v in value.items()}}
  if isinstance(value, type) or callable(value) and '<' not in getattr(
      value, '__qualname__', '<'):
    return {'ref': f'{value.__module__}:{value.__qualname__}'}
  raise ArtifactFormatError(
      f'{where}: {type(value).__name__} value {value!r:.80} cannot be written '
      'to the JSON artifacts. Use plain values (numbers, strings, lists, '
      'dicts) or module-level functions/classes as constructor arguments.')


def decode_value(value: Any) -> Any:
  if isinstance(value, list):
    return [decode_value(v) for v in value]
  if not isinstance(value, dict):
    return value
  if 'tuple' in value:
    return tuple(decode_value(v) for v in value['tuple'])
  if 'bytes' in value:
    return value['bytes'].encode('latin-1')
  if 'ndarray' in value:
    return np.asarray(value['ndarray'], dtype=value['dtype'])
  if 'dict' in value:
    return {k: decode_value(v) for k, v in value['dict'].items()}
  if 'ref' in value:
    return import_ref(value['ref'])
  raise ArtifactFormatError(f'unreadable value in artifacts: {value!r:.80}')


def import_ref(ref: str) -> Any:
  module, _, qualname = ref.partition(':')
  obj = importlib.import_module(module)
  for part in qualname.split('.'):
    obj = getattr(obj, part)
  return obj


def encode_object(obj: Any, init_args: tuple[tuple, dict]) -> dict:
  """A transform as {class, args, kwargs} (the arguments it was built with)."""
  cls = type(obj)
  where = cls.__name__
  if '<locals>' in cls.__qualname__:
    raise ArtifactFormatError(
        f'{where} is defined inside a function; MLTransform artifacts name '
        'the class to rebuild it, so define it at module level.')
  args, kwargs = init_args
  return {
      'class': f'{cls.__module__}:{cls.__qualname__}',
      'args': [encode_value(a, where) for a in args],
      'kwargs': {k: encode_value(v, f'{where}({k}=...)')
                 for k, v in kwargs.items()},
  }


def decode_object(spec: dict) -> Any:
  cls = import_ref(spec['class'])
  return cls(*[decode_value(a) for a in spec.get('args', [])],
             **{k: decode_value(v) for k, v in spec.get('kwargs', {}).items()})


# -- files -------------------------------------------------------------------


def write_json(path: str, payload: Any) -> None:
  parent = os.path.dirname(path)
  if parent and not FileSystems.exists(parent):
    FileSystems.mkdirs(parent)
  with FileSystems.create(path) as f:
    f.write(json.dumps(payload, indent=1, sort_keys=False).encode('utf-8'))


def read_json(path: str, what: str) -> Any:
  if not FileSystems.exists(path):
    raise ArtifactNotFoundError(
        f'{what} not found at {path}. Run the pipeline with '
        'write_artifact_location set to this location first, then read it '
        'with read_artifact_location.')
  with FileSystems.open(path) as f:
    return json.loads(f.read().decode('utf-8'))


def _token_text(token: bytes) -> str:
  return token.decode('utf-8', 'surrogateescape')


def _write_lines(path: str, lines: list[str]) -> None:
  parent = os.path.dirname(path)
  if not FileSystems.exists(parent):
    FileSystems.mkdirs(parent)
  with FileSystems.create(path) as f:
    f.write(''.join(line + '\n' for line in lines).encode(
        'utf-8', 'surrogateescape'))


def vocab_path(directory: str, filename: str, tokens) -> str:
  # Tokens with line breaks cannot be one-per-line: use JSON lines then.
  jsonl = any(b'\n' in t or b'\r' in t for t in tokens)
  return os.path.join(directory, ASSETS_DIR, filename + ('.jsonl' if jsonl else ''))


def write_stage(directory: str, stage: int, analyzers: list[Analyzer],
                stats: dict) -> dict:
  """Writes a stage's statistics; returns them in the form ``_ready`` reads
  (vocabularies as token lists), the same form ``read_stage`` returns."""
  numeric, ready = {}, {}
  for a in analyzers:
    value = stats[a.key]
    if a.kind == VOCAB:
      tokens = [t for t, _ in value]
      path = vocab_path(directory, a.params['filename'], tokens)
      if path.endswith('.jsonl'):
        _write_lines(path, [json.dumps(_token_text(t)) for t in tokens])
      else:
        _write_lines(path, [_token_text(t) for t in tokens])
      ready[a.key] = tokens
      numeric[a.key] = {'file': os.path.relpath(path, directory),
                        'size': len(tokens)}
    elif a.kind == WORD_COUNT:
      path = os.path.join(directory, ASSETS_DIR, a.params['filename'])
      _write_lines(path, [f'{c} {_token_text(t)}' for t, c in value])
      ready[a.key] = None
      numeric[a.key] = {'file': os.path.relpath(path, directory)}
    elif a.kind == DF:
      ready[a.key] = value
      numeric[a.key] = {'df': {str(k): v for k, v in sorted(value.items())}}
    else:
      ready[a.key] = value
      numeric[a.key] = value
    numeric[a.key] = {'transform': a.transform, 'column': a.column,
                      'kind': a.kind, 'value': numeric[a.key]}
  write_json(os.path.join(directory, f'stats_stage{stage}.json'), numeric)
  return ready


def read_stage(directory: str, stage: int) -> dict:
  payload = read_json(
      os.path.join(directory, f'stats_stage{stage}.json'),
      f'MLTransform statistics (stage {stage})')
  out = {}
  for key, entry in payload.items():
    kind, value = entry['kind'], entry['value']
    if kind == VOCAB:
      path = os.path.join(directory, value['file'])
      with FileSystems.open(path) as f:
        lines = f.read().decode('utf-8', 'surrogateescape').split('\n')[:-1]
      if path.endswith('.jsonl'):
        lines = [json.loads(line) for line in lines]
      out[key] = [line.encode('utf-8', 'surrogateescape') for line in lines]
    elif kind == WORD_COUNT:
      out[key] = None
    elif kind == DF:
      out[key] = {int(k): v for k, v in value['df'].items()}
    else:
      out[key] = value
  return out
