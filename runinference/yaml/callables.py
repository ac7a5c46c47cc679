"""User functions written in YAML, as Beam YAML writes them:

* ``{callable: 'lambda row: [row.value]'}`` -- a lambda, a ``def`` block (the
  last definition is the function) or a fully qualified name
  (``my_pkg.features.to_vector``);
* ``{expression: '[value]'}`` -- a Python expression over the fields of the
  input (a row's fields; a ``PredictionResult``'s ``example``, ``inference``
  and ``model_id``), with ``np`` (numpy) in scope;
* ``{path: udfs.py, name: to_vector}`` -- a function from a file (read once,
  when the pipeline is built, so workers need no copy of the file).

Functions pickle as their source, so they travel to any runner's workers.
"""
from __future__ import annotations

import builtins
import dataclasses
import importlib
from typing import Any, Callable, Optional, Sequence

from runinference.exceptions import ConfigurationError

from .errors import PathPart, YamlConfigError, expect_mapping, reject_unknown

_FORMS = ('callable', 'expression', 'path', 'name')


def _fields(value) -> dict:
  if hasattr(value, '_asdict'):  # beam.Row, PredictionResult, NamedTuple
    return dict(value._asdict())
  if isinstance(value, dict):
    return value
  return {}


def _exec_source(source: str) -> Callable:
  """A lambda / def block / expression source -> the callable it defines."""
  lines = [l for l in source.splitlines() if l.strip()
           and not l.lstrip().startswith('#')]
  indent = min(len(l) - len(l.lstrip()) for l in lines)
  lines = [l[indent:] for l in lines]
  scope: dict[str, Any] = {'__builtins__': builtins}
  scope['np'] = importlib.import_module('numpy')
  for i in range(len(lines) - 1, -1, -1):
    line = lines[i]
    if line[0] == ' ':
      continue
    if line.startswith(('def ', 'class ')):
      name = line.split()[1].split('(')[0].rstrip(':')
    else:
      name = '__yaml_callable__'
      lines[i] = f'{name} = {line}'
    exec(compile('\n'.join(lines), '<yaml callable>', 'exec'), scope)  # pylint: disable=exec-used
    return scope[name]
  raise ConfigurationError(f'no function found in {source!r}')


def _import(qualified: str) -> Callable:
  module, _, attr = qualified.rpartition('.')
  obj = importlib.import_module(module)
  return getattr(obj, attr)


@dataclasses.dataclass
class UserFunction:
  """A function from YAML. Call it like the function; pickles as source."""
  kind: str  # 'callable' | 'expression' | 'name'
  source: str
  _fn: Optional[Callable] = dataclasses.field(
      default=None, repr=False, compare=False)

  def __post_init__(self):
    if self._fn is None:
      self._fn = self._build()

  def _build(self) -> Callable:
    if self.kind == 'name':
      return _import(self.source)
    if self.kind == 'callable':
      return _exec_source(self.source)
    code = compile(self.source, '<yaml expression>', 'eval')
    scope = {'__builtins__': builtins, 'np': importlib.import_module('numpy')}

    def evaluate(value):
      return eval(code, scope, _fields(value))  # pylint: disable=eval-used

    return evaluate

  def __call__(self, *args, **kwargs):
    return self._fn(*args, **kwargs)

  def __reduce__(self):
    return UserFunction, (self.kind, self.source)



def _is_qualified_name(text: str) -> bool:
  parts = text.split('.')
  return len(parts) > 1 and all(p.isidentifier() for p in parts)


def parse_function(spec, path: Sequence[PathPart],
                   what: str = 'function') -> UserFunction:
  """``{callable|expression|path+name: ...}`` -> a ``UserFunction``; a bad
  spec raises ``YamlConfigError`` naming the field."""
  spec = expect_mapping(spec, path, what)
  reject_unknown(spec, _FORMS, path, what)
  given = [k for k in ('callable', 'expression', 'path') if k in spec]
  if len(given) != 1:
    raise YamlConfigError(
        path, f'{what} needs exactly one of callable, expression or '
        f'path (+ name); got {sorted(spec) or "nothing"}')
  form = given[0]
  if form != 'path' and 'name' in spec:
    raise YamlConfigError([*path, 'name'],
                          'name goes with path (a function in a file)')
  text = spec[form]
  if not isinstance(text, str) or not text.strip():
    raise YamlConfigError([*path, form], f'must be Python source text, got '
                          f'{text!r}')
  try:
    if form == 'expression':
      return UserFunction('expression', text)
    if form == 'callable':
      kind = 'name' if _is_qualified_name(text.strip()) else 'callable'
      return UserFunction(kind, text.strip() if kind == 'name' else text)
    if not isinstance(spec.get('name'), str):
      raise YamlConfigError([*path, 'name'],
                            'the name of the function in the file is required '
                            'with path')
    from apache_beam.io.filesystems import FileSystems
    with FileSystems.open(text) as f:
      source = f.read().decode()
    fn = UserFunction('callable', source + f'\n{spec["name"]}\n')
    return fn
  except YamlConfigError:
    raise
  except FileNotFoundError as e:
    raise YamlConfigError([*path, 'path'], f'cannot read {text!r}: {e}') from e
  except SyntaxError as e:
    raise YamlConfigError([*path, form],
                          f'not valid Python: {e.msg} in {text!r}') from e
  except (ImportError, AttributeError) as e:
    raise YamlConfigError([*path, form], f'cannot import {text!r}: {e}') from e
  except Exception as e:  # whatever the user's source raised while defining
    raise YamlConfigError([*path, form],
                          f'{type(e).__name__}: {e} (in {text!r})') from e
