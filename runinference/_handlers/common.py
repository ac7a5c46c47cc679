"""Helpers shared by the framework handlers: optional imports with an
actionable error, the missing-model-file error, opening/reading model files
through Beam's filesystems, checking and stacking a batch with errors that
name the offending example, and the device policy (CPU/GPU, GPU -> CPU
fallback). Knows nothing of Beam pipelines."""
from __future__ import annotations

import contextlib
import dataclasses
import importlib
import logging
import operator
import pickle
import sys
from typing import Any, Callable, Iterator, Optional, Sequence

import numpy

from ..exceptions import (  # noqa: F401  (handler errors re-exported)
    ConfigurationError, ConfigurationRuntimeError, CorruptModelFileError,
    DeviceUnavailableError, InvalidInputError, InvalidInputTypeError,
    MissingDependencyError, ModelFileNotFoundError, ModelLoadError,
    ModelSourceError,
    RunInferenceError)

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
    'joblib': ('joblib', None),
    'skops.io': ('skops', 'safe'),
    'safetensors.torch': ('safetensors', 'safe'),
}


# ------------------------------------------------------------------ imports


def require(module: str, who: str, purpose: str = '') -> Any:
  """Imports ``module`` or raises MissingDependencyError (an ImportError)
  telling what to install. ``who`` names the handler that needs it,
  ``purpose`` (optional) what for."""
  try:
    return importlib.import_module(module)
  except ImportError as e:
    package, extra = _INSTALL.get(module, (module, None))
    how = f'pip install {package}'
    if extra:
      how += f" (or pip install 'runinference[{extra}]')"
    why = f' {purpose}' if purpose else ''
    raise MissingDependencyError(
        f'{module} is required by {who}{why} but is not installed in this '
        f'environment ({e}). Install it where the pipeline runs (the '
        f'workers): {how}.') from e


# -------------------------------------------------------------- model files


def check_model_path(path: Any, what: str, arg: str = 'model_uri') -> str:
  """Validates a model path given to a handler constructor."""
  if not isinstance(path, str) or not path:
    raise ConfigurationError(
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


def missing_model_error(
    path: str, what: str, how_to_save: str = '') -> ModelFileNotFoundError:
  """The one message for a missing model file: a FileNotFoundError (and a
  RuntimeError, as the reference raises) naming the path and how to create
  the model there."""
  how = how_to_save or 'train and save the model there first.'
  return ModelFileNotFoundError(
      f'{what} not found at {path!r}. Check the path (every worker must be '
      f'able to read it), or save the model there first: {how}')


def check_model_file(path: str, what: str, how_to_save: str = '') -> None:
  """Raises ``missing_model_error`` when ``path`` surely does not exist."""
  if path_exists(path) is False:
    raise missing_model_error(path, what, how_to_save)


@contextlib.contextmanager
def open_model_file(path: str, what: str,
                    how_to_save: str = '') -> Iterator[Any]:
  """Opens a model file for reading via Beam's filesystems (local, gs://,
  s3://, ...); ModelFileNotFoundError naming the path when it is missing."""
  from apache_beam.io.filesystems import FileSystems
  check_model_file(path, what, how_to_save)
  try:
    f = FileSystems.open(path, 'rb')
  except (IOError, OSError) as e:
    if path_exists(path) is False:
      raise missing_model_error(path, what, how_to_save) from e
    raise ModelSourceError(f'Could not read the {what} at {path!r}: {e}') from e
  with f:
    yield f


def read_model_bytes(path: str, what: str, how_to_save: str = '') -> bytes:
  """The whole model file at ``path`` (see ``open_model_file``)."""
  with open_model_file(path, what, how_to_save) as f:
    return f.read()


def corrupt_model_error(path: str, what: str,
                        error: BaseException) -> CorruptModelFileError:
  """The one message for a model file that cannot be deserialized."""
  return CorruptModelFileError(
      f'The {what} at {path!r} could not be read ({type(error).__name__}: '
      f'{error}); the file is corrupt, truncated or not a {what} file. Save '
      'it again (completely) and check the path.')


def unpickle_model(load: Callable[[Any], Any], f: Any, path: str,
                   what: str) -> Any:
  """``load(f)`` (pickle.load, joblib.load, ...), turning a corrupt or
  truncated file into CorruptModelFileError naming the file."""
  try:
    return load(f)
  except (pickle.UnpicklingError, EOFError, ValueError, IndexError,
          KeyError) as e:
    raise corrupt_model_error(path, what, e) from e


def local_path(path: str) -> Optional[str]:
  """The local filesystem path of ``path`` (plain or ``file://``), else
  None (``gs://``, ``s3://``, ...)."""
  if path.startswith('file://'):
    return path[len('file://'):]
  return None if '://' in path else path


def _others_can_write(path: str) -> Optional[str]:
  """What lets users other than the owner replace ``path`` (a local file),
  or None."""
  import os
  import stat
  try:
    st = os.stat(path)
    parent = os.path.dirname(os.path.abspath(path))
    dst = os.stat(parent)
  except OSError:
    return None
  if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
    return f'the file is {stat.filemode(st.st_mode)}'
  sticky = dst.st_mode & stat.S_ISVTX and st.st_uid == os.getuid()
  if dst.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not sticky:
    return f'its folder {parent!r} is {stat.filemode(dst.st_mode)}'
  return None


def warn_if_others_can_write(path: str, what: str) -> None:
  """Warns once per path when a model file that runs code when loaded (a
  pickle, joblib or torch file) lies where other users can write."""
  local = local_path(path)
  why = local and _others_can_write(local)
  if why:
    warn_once(
        f'writable:{path}',
        'The %s at %r is loaded with pickle, which runs code from the file, '
        'and users other than its owner can replace it (%s). Make the file '
        'and its folder writable by the owner only (chmod go-w), pin it with '
        'model_sha256=..., or save the model in a format that holds data '
        'only (skops, safetensors, ONNX): see docs/security.md.', what, path,
        why)


# ------------------------------------------------------------------ batches


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


def check_types(batch: Sequence[Any], accepts: Callable[[Any], bool],
                who: str, expected: str, hint: str) -> None:
  """InvalidInputTypeError (a TypeError) naming the first example
  ``accepts`` rejects: ``{who} expects each example to be {expected}, but
  example i is ... {hint}``."""
  for i, x in enumerate(batch):
    if not accepts(x):
      raise InvalidInputTypeError(
          f'{who} expects each example to be {expected}, but example {i} is '
          f'{describe_value(x)}. {hint}')


def check_same_shape(batch: Sequence[Any], who: str, what: str = 'array',
                     hint: str = '') -> None:
  """InvalidInputError (a ValueError) naming the first example whose shape
  differs from example 0's."""
  odd = first_mismatch(batch, lambda x: tuple(x.shape))
  if odd is not None:
    raise InvalidInputError(
        f'{who} stacks a batch into one {what}, but example {odd.index} has '
        f'shape {odd.value} while example 0 has shape {odd.first}. '
        + (hint or 'Resize/pad the examples to one shape in a preprocess '
           'fn, or batch them by length (batch_length_fn=..., '
           'batch_bucket_boundaries=[...]).'))


@dataclasses.dataclass(frozen=True)
class Mismatch:
  """Example ``index`` has ``value`` where example 0 has ``first``."""
  index: int
  value: Any
  first: Any


def first_mismatch(batch: Sequence[Any],
                   key: Callable[[Any], Any]) -> Optional[Mismatch]:
  """The first example whose ``key`` differs from example 0's, or None."""
  first = key(batch[0])
  for i, x in enumerate(batch):
    value = key(x)
    if value != first:
      return Mismatch(i, value, first)
  return None


_NUMPY_HINT = ('Convert it in a preprocess step, e.g. '
               'handler.with_preprocess_fn(numpy.asarray)')


def _array_like(x: Any) -> bool:
  return isinstance(x, (numpy.ndarray, list, tuple, numpy.generic, int,
                        float)) and not isinstance(x, bool)


_ndarray_sizeof = numpy.ndarray.__sizeof__


def getsizeof_sum(batch: Sequence[Any]) -> int:
  """``sum(map(sys.getsizeof, batch))``, four times faster for a list of
  plain numpy arrays: ``sys.getsizeof`` parses its arguments generically
  (~100 ns a call), and an ndarray is no GC object, so its size is exactly
  its ``__sizeof__``. Subclasses (which may be GC objects or override it)
  take ``sys.getsizeof``."""
  if (isinstance(batch, list) and
      operator.countOf(map(type, batch), numpy.ndarray) == len(batch)):
    return sum(map(_ndarray_sizeof, batch))
  return sum(map(sys.getsizeof, batch))


def stack_numpy(batch: Sequence[Any], who: str, hint: str = '', *,
                strict: bool = True, numeric: bool = True) -> numpy.ndarray:
  """Stacks the examples along a new first axis, or raises a TypeError /
  ValueError naming the offending example and what to do.

  ``strict``: every example must be a numpy array (else lists, tuples and
  numbers are accepted too, as ``numpy.stack`` does). ``numeric``: reject
  string/object arrays."""
  first = batch[0] if len(batch) else None
  if isinstance(first, numpy.ndarray) and first.dtype.kind != 'O':
    # numpy.array builds the batch in C, ~3x faster than numpy.stack; a
    # non-array or ragged example makes it fail or build another array.
    try:
      stacked = numpy.array(batch)
    except (TypeError, ValueError):
      stacked = None
    if (stacked is not None and stacked.dtype == first.dtype and
        stacked.ndim == first.ndim + 1 and
        (not strict or all(type(x) is numpy.ndarray for x in batch))):  # pylint: disable=unidiomatic-typecheck
      if numeric and stacked.dtype.kind in 'US':
        _not_numeric(who, first)
      return stacked
  if strict:
    check_types(batch, lambda x: isinstance(x, numpy.ndarray), who,
                'a numpy.ndarray', _NUMPY_HINT + hint + '.')
  else:
    check_types(batch, _array_like, who,
                'a numpy.ndarray (or a list of numbers)',
                _NUMPY_HINT + hint + '.')
  shapes = [numpy.shape(x) for x in batch]
  for i, shape in enumerate(shapes):
    if shape != shapes[0]:
      raise InvalidInputError(
          f'{who} stacks a batch into one array, but example {i} has shape '
          f'{shape} while example 0 has shape {shapes[0]}. Resize/pad the '
          'examples to one shape in a preprocess fn, or batch them by length '
          '(batch_length_fn=..., batch_bucket_boundaries=[...]).')
  stacked = numpy.stack(batch, axis=0)
  if numeric and stacked.dtype.kind in 'OUS':
    _not_numeric(who, batch[0])
  return stacked


def _not_numeric(who: str, example: Any):
  raise InvalidInputTypeError(
      f'{who} needs numeric arrays, but the examples have dtype '
      f'{numpy.asarray(example).dtype} (e.g. {describe_value(example)}). '
      'Convert them to numbers before inference.')


def stack_torch(batch: Sequence[Any], who: str, hint: str = '') -> Any:
  """``torch.stack`` of the examples, with the same errors as
  ``stack_numpy``."""
  torch = require('torch', who)
  try:
    return torch.stack(list(batch))
  except (TypeError, RuntimeError) as e:
    check_types(
        batch, lambda x: isinstance(x, torch.Tensor), who, 'a torch.Tensor',
        f'({e}.) Convert it in a preprocess fn, e.g. '
        f'handler.with_preprocess_fn(torch.as_tensor){hint}.')
    check_same_shape(batch, who, 'tensor')
    raise


# ------------------------------------------------------------------ devices


def parse_device(device: Optional[str], *, optional: bool = False
                 ) -> Optional[str]:
  """``'CPU'`` or ``'GPU'`` (any case); None allowed when ``optional``."""
  if device is None and optional:
    return None
  if not isinstance(device, str) or device.upper() not in ('CPU', 'GPU'):
    raise ConfigurationError(
        f"Invalid device value {device!r}: device must be 'CPU' or 'GPU'.")
  return device.upper()


def cuda_usable() -> bool:
  """A CUDA device torch can allocate on (False without torch)."""
  try:
    torch = importlib.import_module('torch')
  except ImportError:
    return False
  if not torch.cuda.is_available():
    return False
  try:
    torch.empty(1, device='cuda')
    return True
  except Exception:  # pylint: disable=broad-except
    _LOGGER.warning('CUDA is present but unusable', exc_info=True)
    return False


def warn_gpu_fallback(who: str) -> None:
  _LOGGER.warning(
      "%s was given device='GPU', but no GPU is available; running on the "
      'CPU.', who)


def torch_device(device: str, who: str) -> Any:
  """The ``torch.device`` for ``'CPU'``/``'GPU'``; the CPU (with a warning)
  when no GPU is usable."""
  torch = require('torch', who)
  if device == 'GPU':
    if cuda_usable():
      return torch.device('cuda')
    warn_gpu_fallback(who)
  return torch.device('cpu')


_WARNED: set = set()


def warn_once(key: str, message: str, *args) -> None:
  """Logs a warning the first time ``key`` is seen in this process."""
  if key in _WARNED:
    return
  _WARNED.add(key)
  _LOGGER.warning(message, *args)
