"""Helpers shared by the framework handlers (ONNX, TensorFlow, XGBoost,
Hugging Face, TensorRT): optional imports with an actionable error, reading
model files through Beam's filesystems, and stacking numpy batches with an
error that says which example is wrong. Knows nothing of Beam's pipeline."""
from __future__ import annotations

import importlib
import logging
from typing import Any, Optional, Sequence

import numpy

from ..exceptions import MissingDependencyError, ModelFileNotFoundError

_LOGGER = logging.getLogger(__name__)

# module name -> (pip package, runinference extra)
_INSTALL = {
    'onnxruntime': ('onnxruntime', 'onnx'),
    'onnx': ('onnx', 'onnx'),
    'tensorflow': ('tensorflow-cpu', 'tensorflow'),
    'xgboost': ('xgboost', 'xgboost'),
    'pandas': ('pandas', 'xgboost'),
    'scipy': ('scipy', 'xgboost'),
    'datatable': ('datatable', None),
    'transformers': ('transformers', 'huggingface'),
    'torch': ('torch', 'pytorch'),
    'tensorrt': ('tensorrt', None),
}


def require(module: str, who: str, purpose: str = '') -> Any:
  """Imports ``module`` or raises ImportError telling what to install.

  ``who`` names the handler that needs it, ``purpose`` (optional) what for.
  """
  try:
    return importlib.import_module(module)
  except ImportError as e:
    package, extra = _INSTALL.get(module, (module, None))
    how = f'pip install {package}'
    if extra:
      how += f" (or pip install 'runinference[{extra}]')"
    why = f' {purpose}' if purpose else ''
    raise MissingDependencyError(
        f'{who} needs the {module!r} package{why}, which is not installed '
        f'in this environment ({e}). Install it on the workers: {how}.') from e


def is_installed(module: str) -> bool:
  """True if ``module`` imports (without raising on a broken install)."""
  try:
    importlib.import_module(module)
    return True
  except ImportError:
    return False


def check_model_path(path: Any, what: str, arg: str = 'model_uri') -> str:
  """Validates a model path given to a handler constructor."""
  if not isinstance(path, str) or not path:
    raise ValueError(
        f'{arg} must be the path or URI of the {what} (a non-empty string), '
        f'got {path!r}.')
  return path


def path_exists(path: str) -> Optional[bool]:
  """Whether ``path`` exists per Beam's filesystems; None if unknowable
  (an unregistered scheme, or a filesystem that cannot tell)."""
  from apache_beam.io.filesystems import FileSystems
  try:
    return FileSystems.exists(path)
  except Exception:  # pylint: disable=broad-except
    return None


def missing_model_error(path: str, what: str, how_to_save: str) -> Exception:
  """A FileNotFoundError (and RuntimeError, as the reference raises) naming
  the path and how to create the model there."""
  return ModelFileNotFoundError(
      f'{what} not found at {path!r}. Check the path (every worker must be '
      f'able to read it), or save the model there first: {how_to_save}')


def read_model_bytes(path: str, what: str, how_to_save: str) -> bytes:
  """Reads a whole model file via Beam's filesystems (local, gs://, s3://,
  ...), raising FileNotFoundError naming the path when it is missing."""
  from apache_beam.io.filesystems import FileSystems
  if path_exists(path) is False:
    raise missing_model_error(path, what, how_to_save)
  try:
    with FileSystems.open(path, 'rb') as f:
      return f.read()
  except (IOError, OSError) as e:
    if path_exists(path) is False:
      raise missing_model_error(path, what, how_to_save) from e
    raise IOError(f'Could not read the {what} at {path!r}: {e}') from e


def describe_value(x: Any) -> str:
  """Short description of an example for error messages."""
  shape = getattr(x, 'shape', None)
  dtype = getattr(x, 'dtype', None)
  if shape is not None:
    return f'{type(x).__name__}(shape={tuple(shape)}, dtype={dtype})'
  text = repr(x)
  if len(text) > 80:
    text = text[:77] + '...'
  return f'{type(x).__name__} {text}'


def stack_numpy(batch: Sequence[Any], who: str, hint: str = '') -> numpy.ndarray:
  """Stacks numpy examples along a new first axis, or raises TypeError /
  ValueError naming the offending example and what to do."""
  for i, x in enumerate(batch):
    if not isinstance(x, numpy.ndarray):
      raise TypeError(
          f'{who} expects each example to be a numpy.ndarray, but example '
          f'{i} is {describe_value(x)}. Convert it in a preprocess step, e.g. '
          f'handler.with_preprocess_fn(numpy.asarray){hint}.')
  first = batch[0].shape
  for i, x in enumerate(batch):
    if x.shape != first:
      raise ValueError(
          f'{who} stacks a batch into one array, but example {i} has shape '
          f'{x.shape} while example 0 has shape {first}. Resize/pad the '
          'examples to one shape in a preprocess fn, or batch them by length '
          '(batch_length_fn=..., batch_bucket_boundaries=[...]).')
  if batch[0].dtype.kind in 'OUS':
    raise TypeError(
        f'{who} needs numeric arrays, but the examples have dtype '
        f'{batch[0].dtype} (e.g. {describe_value(batch[0])}). Convert them to '
        'numbers before inference.')
  return numpy.stack(batch, axis=0)


_WARNED: set = set()


def warn_once(key: str, message: str, *args) -> None:
  """Logs a warning the first time ``key`` is seen in this process."""
  if key in _WARNED:
    return
  _WARNED.add(key)
  _LOGGER.warning(message, *args)
