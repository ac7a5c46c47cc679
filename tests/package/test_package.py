"""Package-level guarantees."""
import subprocess
import sys

MODULES = [
    'runinference', 'runinference.base', 'runinference.utils',
    'runinference.report', 'runinference.sklearn_inference',
    'runinference.pytorch_inference', 'runinference.onnx_inference',
    'runinference.tensorflow_inference', 'runinference.xgboost_inference',
    'runinference.huggingface_inference', 'runinference.tensorrt_inference'
]


def test_never_imports_the_reference():
  code = (
      'import sys\n'
      f'for m in {MODULES!r}:\n'
      '  __import__(m)\n'
      'leaked = sorted(m for m in sys.modules if m.startswith("apache_beam.ml"))\n'
      'assert not leaked, leaked\n')
  subprocess.run([sys.executable, '-c', code], check=True, timeout=300)


def test_drop_in_names():
  import runinference
  from runinference import base
  for name in ('RunInference', 'ModelHandler', 'KeyedModelHandler',
               'MaybeKeyedModelHandler', 'KeyModelMapping', 'PredictionResult',
               'ModelMetadata', 'RunInferenceDLQ', 'KeyModelPathMapping',
               'RemoteModelHandler'):
    assert hasattr(base, name), name
  assert runinference.RunInference is base.RunInference


def test_every_error_raised_by_the_core_is_a_runinference_error():
  """Every ``raise X(`` in runinference/_core names a class of the one
  hierarchy (or a protocol error such as AttributeError in __getattr__)."""
  import ast
  import importlib
  import pathlib
  import runinference.exceptions as exc
  allowed_builtins = {'AttributeError', 'NotImplementedError'}
  core = pathlib.Path(exc.__file__).parent / '_core'
  bad = []
  for path in core.glob('*.py'):
    for node in ast.walk(ast.parse(path.read_text())):
      if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
        func = node.exc.func
        name = func.id if isinstance(func, ast.Name) else getattr(
            func, 'attr', None)
        if isinstance(func, ast.Attribute) and isinstance(
            func.value, ast.Name) and func.value.id == 'self':
          continue  # a method building the error
        if name in allowed_builtins:
          # NotImplementedError(type(self)) marks an abstract method.
          continue
        module = importlib.import_module(f'runinference._core.{path.stem}')
        cls = getattr(exc, name, None) or getattr(module, name, None)
        if callable(cls) and not isinstance(cls, type):
          continue  # a function building the error (checked where defined)
        if not (isinstance(cls, type) and issubclass(cls, exc.RunInferenceError)):
          bad.append(f'{path.name}:{node.lineno} raises {name}')
  assert not bad, bad


def test_errors_keep_their_builtin_base():
  from runinference import exceptions as e
  assert issubclass(e.ModelFileNotFoundError, RuntimeError)
  assert issubclass(e.UnknownModelKeyError, KeyError)
  assert issubclass(e.ConfigurationTypeError, TypeError)
  assert issubclass(e.TooManyHungCalls, TimeoutError)
  assert issubclass(e.UnsupportedOptionError, NotImplementedError)
  for name in e.__all__:
    assert issubclass(getattr(e, name), e.RunInferenceError), name


def test_package_is_typed():
  import pathlib
  import runinference
  assert (pathlib.Path(runinference.__file__).parent / 'py.typed').exists()
