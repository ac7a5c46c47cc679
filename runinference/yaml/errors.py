"""The error a bad YAML configuration raises: it names the field's path."""
from __future__ import annotations

import difflib
from typing import Sequence, Union

from runinference.exceptions import ConfigurationError

PathPart = Union[str, int]


def format_path(parts: Sequence[PathPart]) -> str:
  """``['model_handler', 'config', 'x']`` -> ``model_handler.config.x``;
  list indices as ``[i]``."""
  out = ''
  for p in parts:
    out += f'[{p}]' if isinstance(p, int) else (f'.{p}' if out else str(p))
  return out


class YamlConfigError(ConfigurationError):
  """A transform's YAML config is wrong. ``path`` is the offending field's
  path inside the transform's ``config`` (a list of keys and indices)."""

  def __init__(self, path: Sequence[PathPart], message: str):
    self.path = list(path)
    self.detail = message
    where = format_path(self.path)
    super().__init__(f'{where}: {message}' if where else message)

  def under(self, *prefix: PathPart) -> 'YamlConfigError':
    """The same error with its path below ``prefix``."""
    return YamlConfigError([*prefix, *self.path], self.detail)



def expect_mapping(value, path: Sequence[PathPart], what: str) -> dict:
  if not isinstance(value, dict):
    raise YamlConfigError(
        path, f'{what} must be a mapping, got {type(value).__name__} '
        f'{value!r}')
  return value


def reject_unknown(config: dict, allowed, path: Sequence[PathPart],
                   what: str) -> None:
  unknown = sorted(set(config) - set(allowed))
  if unknown:
    close = difflib.get_close_matches(str(unknown[0]), list(allowed), n=1)
    hint = f'did you mean {close[0]!r}? ' if close else ''
    raise YamlConfigError(
        [*path, unknown[0]],
        f'unknown field of {what}; {hint}expected one of {sorted(allowed)}')
