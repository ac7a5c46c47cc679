"""Checks a pipeline file's runinference transforms before anything runs, and
reports a bad field as ``FILE:LINE: pipeline.transforms[1].config.<path>``."""
from __future__ import annotations

from typing import Any, Iterator, Optional, Sequence

from runinference.exceptions import ConfigurationError

from .errors import PathPart, YamlConfigError, format_path
from .mltransform import MLTransform
from .transform import RunInference

# Transforms whose config is checked here (the DuckDB transforms check their
# own arguments when the pipeline is built).
def _columnar(**config):
  from .columnar import RunInferenceColumnar
  return RunInferenceColumnar(**config)


_CHECKED = {'RunInference': RunInference, 'MLTransform': MLTransform,
            'RunInferenceColumnar': _columnar}


class YamlFileError(ConfigurationError):
  """A bad field in a pipeline file, with the file, line and full path."""

  def __init__(self, file: str, line: Optional[int], path: str, message: str):
    self.file, self.line, self.path, self.detail = file, line, path, message
    where = f'{file}:{line}' if line else file
    super().__init__(f'{where}: {path}: {message}')



def _strip(node):
  if isinstance(node, dict):
    return {str(k): _strip(v) for k, v in node.items()
            if k not in ('__line__', '__uuid__')}
  if isinstance(node, list):
    return [_strip(v) for v in node]
  if isinstance(node, str):
    return str(node)
  return node


def _transforms(node, path: list) -> Iterator[tuple[list, dict]]:
  """Every transform spec in a pipeline (chains, composites, source/sink)."""
  if not isinstance(node, dict):
    return
  if 'type' in node:
    yield path, node
  for field in ('source', 'sink'):
    if isinstance(node.get(field), dict):
      yield from _transforms(node[field], [*path, field])
  if isinstance(node.get('transforms'), list):
    for i, t in enumerate(node['transforms']):
      yield from _transforms(t, [*path, 'transforms', i])


def line_of(root, path: Sequence[PathPart]) -> Optional[int]:
  """Line of the deepest node along ``path`` that the loader tagged."""
  node, line = root, getattr(root, 'get', lambda *_: None)('__line__')
  for part in path:
    if isinstance(node, dict):
      key = next((k for k in node if k == part), None)
      if key is None:
        break
      line = getattr(key, '_line_', None) or line
      node = node[key]
      if isinstance(node, dict) and '__line__' in node:
        line = node['__line__']
    elif isinstance(node, list) and isinstance(part, int) and part < len(node):
      node = node[part]
      if isinstance(node, dict) and '__line__' in node:
        line = node['__line__']
    else:
      break
  return line


def check_pipeline(spec: Any, file: str = '<pipeline>') -> None:
  """Raises ``YamlFileError`` for the first bad runinference transform config
  in ``spec`` (loaded with Beam's ``SafeLineLoader``, which records lines)."""
  if not isinstance(spec, dict) or 'pipeline' not in spec:
    raise YamlFileError(file, None, 'pipeline',
                        'required: a pipeline file has a top-level pipeline:')
  for path, transform in _transforms(spec['pipeline'], ['pipeline']):
    factory = _CHECKED.get(str(transform.get('type')))
    if factory is None:
      continue
    config = transform.get('config', {})
    if not isinstance(config, dict):
      raise YamlFileError(file, line_of(spec, path), format_path(
          [*path, 'config']), 'must be a mapping')
    try:
      factory(**_strip(config))
    except YamlConfigError as e:
      full = [*path, 'config', *e.path]
      raise YamlFileError(file, line_of(spec, full), format_path(full),
                          e.detail) from e
