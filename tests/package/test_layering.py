"""The package's structural contracts, checked on its source (no pipelines).

* the layer rule of docs/architecture.md, declared in ``.importlinter`` and
  checked by import-linter: dependencies point down only;
* framework handlers know nothing of Beam beyond its file systems and its
  shared-object helper;
* every error the package raises is a ``RunInferenceError`` (exceptions.py
  promises it), except the protocol errors Python itself requires.
"""
from __future__ import annotations

import ast
import builtins
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / 'runinference'

# What a handler module may import from Beam: file systems (model files on
# any Beam file system), Beam's rate limiter, and ``shared`` (one client per
# process, as Beam's own remote handler does).
HANDLER_BEAM_ALLOWED = ('apache_beam.io.filesystems',
                        'apache_beam.io.components.rate_limiter',
                        'apache_beam.utils.shared')


def _sources(under: Path = PACKAGE):
  return sorted(under.rglob('*.py'))


def _rel(path: Path) -> str:
  return str(path.relative_to(ROOT))


def test_the_layer_contract_holds():
  lint = Path(sys.executable).parent / 'lint-imports'
  assert lint.exists(), 'import-linter is missing: pip install import-linter'
  done = subprocess.run([str(lint), str(ROOT / '.importlinter')],
                        cwd=ROOT, capture_output=True, text=True, timeout=120,
                        check=False)
  assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
  assert 'BROKEN' not in done.stdout


def test_a_layer_violation_is_reported(tmp_path):
  """The checker really checks: a contract that _core breaks fails."""
  config = tmp_path / 'broken.ini'
  config.write_text(
      '[importlinter]\nroot_package = runinference\n\n'
      '[importlinter:contract:x]\nname = exceptions above _core\n'
      'type = layers\nlayers =\n    runinference.exceptions\n'
      '    runinference._core\n')
  lint = Path(sys.executable).parent / 'lint-imports'
  done = subprocess.run([str(lint), str(config)], cwd=ROOT,
                        capture_output=True, text=True, timeout=120,
                        check=False)
  assert done.returncode != 0 and 'BROKEN' in done.stdout


def _imported_modules(tree: ast.AST):
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      for alias in node.names:
        yield node.lineno, alias.name
    elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
      for alias in node.names:
        yield node.lineno, f'{node.module}.{alias.name}'


def test_handlers_know_nothing_of_beam_beyond_files_and_sharing():
  found = []
  for path in _sources(PACKAGE / '_handlers'):
    for line, name in _imported_modules(ast.parse(path.read_text())):
      if name.startswith('apache_beam') and not name.startswith(
          HANDLER_BEAM_ALLOWED):
        found.append(f'{_rel(path)}:{line}: {name}')
  assert not found, (
      'framework handlers import Beam (metrics go through _core.metrics; '
      'pipelines are _core\'s business):\n' + '\n'.join(found))


def _builtin_exception(node: ast.expr):
  target = node.func if isinstance(node, ast.Call) else node
  if isinstance(target, ast.Name):
    value = getattr(builtins, target.id, None)
    if isinstance(value, type) and issubclass(value, BaseException):
      return value
  return None


def _is_abstract_body(func: ast.AST) -> bool:
  body = list(func.body)
  if body and isinstance(body[0], ast.Expr) and isinstance(
      getattr(body[0], 'value', None), ast.Constant):
    body = body[1:]  # the docstring
  return len(body) == 1 and isinstance(body[0], ast.Raise)


def _plain_raises(tree: ast.AST):
  """Yields ``(line, name)`` of every builtin exception raised where Python's
  protocols do not require one."""
  def visit(node, func):
    for child in ast.iter_child_nodes(node):
      inner = child if isinstance(
          child, (ast.FunctionDef, ast.AsyncFunctionDef)) else func
      if isinstance(child, ast.Raise) and child.exc is not None:
        exc = _builtin_exception(child.exc)
        if exc is not None and not _allowed(exc, func):
          yield child.lineno, exc.__name__
      yield from visit(child, inner)
  yield from visit(tree, None)


def _allowed(exc: type, func) -> bool:
  name = getattr(func, 'name', '')
  if exc is AttributeError and name in ('__getattr__', '__getattribute__'):
    return True
  if exc is StopIteration and name == '__next__':
    return True
  # An abstract method: the body is only the raise (Beam's contract style).
  return exc is NotImplementedError and func is not None and _is_abstract_body(
      func)


def test_every_error_raised_is_a_runinference_error():
  found = [f'{_rel(path)}:{line}: raise {name}'
           for path in _sources()
           for line, name in _plain_raises(ast.parse(path.read_text()))]
  assert not found, (
      'builtin exceptions raised directly; raise the RunInferenceError '
      'subclass of runinference.exceptions that keeps that builtin as a '
      'base:\n' + '\n'.join(found))


@pytest.mark.parametrize('source, expected', [
    ('def f():\n  raise ValueError("x")\n', ['ValueError']),
    ('def f():\n  raise TypeError\n', ['TypeError']),
    ('def f():\n  """Doc."""\n  raise NotImplementedError\n', []),
    ('def f(x):\n  if x:\n    raise NotImplementedError("no")\n  return 1\n',
     ['NotImplementedError']),
    ('def __getattr__(name):\n  raise AttributeError(name)\n', []),
    ('def g():\n  raise AttributeError("x")\n', ['AttributeError']),
    ('def f():\n  raise ConfigurationError("x")\n', []),
    ('def f():\n  try:\n    pass\n  except KeyError:\n    raise\n', []),
])
def test_the_raise_scanner_finds_plain_builtins(source, expected):
  assert [name for _, name in _plain_raises(ast.parse(source))] == expected


def _public_modules() -> list[str]:
  names = []
  for path in _sources():
    parts = path.relative_to(ROOT).with_suffix('').parts
    if parts[-1] == '__init__':
      parts = parts[:-1]
    if parts[-1] == '__main__' or any(p.startswith('_') for p in parts):
      continue
    names.append('.'.join(parts))
  return names


@pytest.mark.parametrize('module', _public_modules())
def test_public_names_report_a_public_module(module):
  """httpx's rule: what a public module hands out names a public module
  (reprs, pickles, artifacts and pipeline graphs never show a private
  path), and that module really has it."""
  import importlib
  mod = importlib.import_module(module)
  for name in getattr(mod, '__all__', ()):
    obj = getattr(mod, name)
    home = getattr(obj, '__module__', None) or ''
    if not (isinstance(obj, type) or callable(obj)) or not home.startswith(
        'runinference'):
      continue
    assert not any(p.startswith('_') for p in home.split('.')), (
        f'{module}.{name} reports the private module {home}: add it to '
        f"{module}'s __all__ and call naming.relabel(globals()) there")
    assert getattr(importlib.import_module(home), obj.__name__, None) is obj, (
        f'{module}.{name} reports {home}, which has no {obj.__name__}')


def test_module_names_are_set_in_one_place():
  """Public names are given by naming.relabel (or naming.publish for the
  framework modules that alias their implementation), not by one-off
  ``X.__module__ = ...`` assignments."""
  allowed = {
      # a class made inside a function, named for pickling by reference
      'runinference/_handlers/onnx.py',
      # a lazy attribute of the package, labelled as it is first imported
      'runinference/runners/__init__.py',
      'runinference/_core/naming.py',
  }
  found = []
  for path in _sources():
    if _rel(path) in allowed:
      continue
    for node in ast.walk(ast.parse(path.read_text())):
      if isinstance(node, ast.Assign) and any(
          isinstance(t, ast.Attribute) and t.attr == '__module__'
          for t in node.targets):
        found.append(f'{_rel(path)}:{node.lineno}')
  assert not found, ('one-off __module__ assignments; call '
                     'naming.relabel(globals()) in the public module:\n' +
                     '\n'.join(found))
