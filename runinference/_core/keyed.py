"""Keyed handlers: one model for keyed data, or a model per key cohort."""
from __future__ import annotations

import operator
import pickle
from typing import Any, Generic, Sequence, TypeVar

from ..exceptions import (ConfigurationError, ConfigurationTypeError,
                          InvalidInputTypeError, ModelUpdateError,
                          ResultCountError)
from .contract import (ExampleT, ModelHandler, ModelT, PredictionT,
                       forwarding)

KeyT = TypeVar('KeyT')


class KeyModelMapping(Generic[KeyT, ExampleT, PredictionT, ModelT]):
  """Maps one or more keys to the model handler that serves them."""
  def __init__(self, keys: list, mh: ModelHandler):
    self.keys = keys
    self.mh = mh

  def __repr__(self):
    return f'KeyModelMapping({self.keys!r}, {self.mh!r})'


_first = operator.itemgetter(0)
_second = operator.itemgetter(1)


def split_keys(batch: Sequence, handler_name: str):
  n = len(batch)
  # Plain (key, example) pairs are checked and split in C; anything else
  # takes the loop that names the offending element.
  if (operator.countOf(map(type, batch), tuple) == n and
      operator.countOf(map(len, batch), 2) == n):
    return tuple(map(_first, batch)), list(map(_second, batch))
  for x in batch:
    if not (isinstance(x, (tuple, list)) and len(x) == 2):
      raise InvalidInputTypeError(
          f'{handler_name} expects (key, example) tuples, but got '
          f'{type(x).__name__}: {x!r:.200} (a {type(x).__name__} object is '
          'not iterable as a key/value pair). Key your data first (e.g. '
          'beam.Map(lambda x: (key_of(x), x))), or use MaybeKeyedModelHandler '
          'if some elements are unkeyed.')
  return tuple(x[0] for x in batch), [x[1] for x in batch]


class KeyedModelHandler(Generic[KeyT, ExampleT, PredictionT, ModelT],
                        ModelHandler[tuple, tuple, Any]):
  """Takes ``(key, example)`` and returns ``(key, prediction)``.

  Wraps either one unkeyed handler, or a list of ``KeyModelMapping`` routing
  each key to its own model; then at most ``max_models_per_worker_hint``
  models are held per worker process (least recently used are unloaded), and
  each model runs once per batch on all of its keys' examples.

  ``KeyedModelHandler(...)`` builds the single-model or the multi-model form
  (two subclasses of this class) from its argument.
  """
  def __new__(cls, *args, **kwargs):
    forms = [c for c in KeyedModelHandler.__subclasses__()
             if c.__dict__.get('_takes')]
    if not issubclass(cls, tuple(forms)):
      # The form that takes this argument: each form says so itself
      # (``_takes``), so this module needs no import of keyed_multi's.
      unkeyed = args[0] if args else kwargs.get('unkeyed')
      form = next((c for c in forms if c._takes(unkeyed)),  # type: ignore[attr-defined]
                  SingleModelKeyedHandler)
      # A user's subclass of KeyedModelHandler gets the form under its own
      # overrides.
      cls = form if cls is KeyedModelHandler else _with_form(cls, form)
    return super().__new__(cls)

  def __reduce_ex__(self, protocol):
    user = type(self).__dict__.get('_user_class')
    if user is None:
      return super().__reduce_ex__(protocol)
    # The combined class is made at run time: rebuilt from its two parts.
    return (_rebuild, (user, type(self).__dict__['_form'], self.__dict__))

  def run_inference(self, batch, model, inference_args=None):
    keys, values = split_keys(batch, 'KeyedModelHandler')
    preds = self._run_values(keys, values, model, inference_args)
    return list(zip(keys, preds))

  def _run_values(self, keys, values, model, inference_args) -> list:
    raise NotImplementedError(type(self))


_COMBINED: dict = {}


def _with_form(user_class: type, form: type) -> type:
  """``user_class`` (a subclass of KeyedModelHandler) on top of ``form``,
  one class per pair."""
  combined = _COMBINED.get((user_class, form))
  if combined is None:
    combined = type(user_class.__name__, (user_class, form), {
        '__module__': user_class.__module__,
        '__qualname__': user_class.__qualname__,
        '_user_class': user_class, '_form': form})
    _COMBINED[(user_class, form)] = combined
  return combined


def _rebuild(user_class: type, form: type, state: dict):
  obj: Any = object.__new__(_with_form(user_class, form))
  obj.__dict__.update(state)
  return obj


_FORWARD_UNKEYED = forwarding('_unkeyed', (
    'load_model',
    'model_location',
    'model_sha256',
    'get_metrics_namespace',
    'get_resource_hints',
    'validate_inference_args',
    'update_model_path',
    'share_model_across_processes',
    'overlap_by_default',
    'model_copies',
    'should_skip_batching',  # pre-batched lists of (key, example) pairs
), module=__name__)


class _UnkeyedDelegate(_FORWARD_UNKEYED):  # type: ignore[misc,valid-type]
  """What a handler wrapping one unkeyed handler (``_unkeyed``) takes from
  it unchanged; placed before ``ModelHandler`` in the bases, so these win
  over its defaults."""
  _unkeyed: ModelHandler


class SingleModelKeyedHandler(_UnkeyedDelegate, KeyedModelHandler):
  """``KeyedModelHandler`` over one unkeyed handler."""
  @staticmethod
  def _takes(unkeyed) -> bool:
    return not isinstance(unkeyed, list)

  def __init__(self, unkeyed: ModelHandler, max_models_per_worker_hint=None):
    if not isinstance(unkeyed, ModelHandler) and not hasattr(
        unkeyed, 'run_inference'):
      raise ConfigurationTypeError(
          'KeyedModelHandler takes a ModelHandler or a list of '
          f'KeyModelMapping, got {type(unkeyed).__name__}.')
    if unkeyed.get_preprocess_fns() or unkeyed.get_postprocess_fns():
      raise ConfigurationError(
          'Cannot wrap a model handler that has pre/postprocessing '
          'functions in a KeyedModelHandler: add them to the '
          'KeyedModelHandler itself (keyed.with_preprocess_fn(...)).')
    self._unkeyed = unkeyed
    self._env_vars = unkeyed._env_vars

  def _run_values(self, keys, values, model, inference_args) -> list:
    preds = self._unkeyed.run_inference(values, model, inference_args)
    return check_count(self._unkeyed, preds, len(values))

  def get_num_bytes(self, batch):
    keys, values = split_keys(batch, 'KeyedModelHandler')
    return len(pickle.dumps(keys)) + self._unkeyed.get_num_bytes(values)

  def batch_elements_kwargs(self):
    # Size and length functions were written for the unkeyed examples.
    return keyed_batching_kwargs(self._unkeyed.batch_elements_kwargs())

  def update_model_paths(self, model, model_paths=None):
    if model_paths and model is not None:
      raise ModelUpdateError(
          'Invalid model update: several model paths were sent, but this '
          'KeyedModelHandler wraps a single model.')

  def override_metrics(self, metrics_namespace=''):
    return self._unkeyed.override_metrics(metrics_namespace)

  def should_garbage_collect_on_timeout(self):
    return self.share_model_across_processes()


def check_count(handler, preds, n: int) -> list:
  """``preds`` as a list, raising ``ResultCountError`` unless it holds one
  prediction per example."""
  preds = preds if isinstance(preds, list) else list(preds)
  if len(preds) != n:
    raise ResultCountError(
        f'{type(handler).__name__}.run_inference returned {len(preds)} '
        f'results for {n} examples; it must return one per example.')
  return preds


class _OnValue:
  """Applies a per-example function (e.g. ``element_size_fn``) to the value
  of a ``(key, value)`` pair."""
  def __init__(self, fn):
    self.fn = fn

  def __call__(self, kv):
    return self.fn(kv[1])


class _OnMaybeKeyedValue(_OnValue):
  """``_OnValue`` for input that may or may not be keyed."""
  def __call__(self, x):
    return self.fn(x[1] if _is_keyed(x) else x)


def keyed_batching_kwargs(kwargs, wrap=_OnValue):
  """The unkeyed handler's batching kwargs, with its size and length
  functions applied to the example of each ``(key, example)`` pair."""
  kwargs = dict(kwargs)
  for name in ('element_size_fn', 'length_fn'):
    if kwargs.get(name) is not None:
      kwargs[name] = wrap(kwargs[name])
  return kwargs


def _is_keyed(x) -> bool:
  return isinstance(x, tuple) and len(x) == 2


class MaybeKeyedModelHandler(_UnkeyedDelegate,
                             Generic[KeyT, ExampleT, PredictionT, ModelT],
                             ModelHandler[Any, Any, ModelT]):
  """Accepts both ``(key, example)`` and plain examples; keyed input gives
  keyed output."""
  def __init__(self, unkeyed: ModelHandler):
    if isinstance(unkeyed, KeyedModelHandler):
      raise ConfigurationTypeError(
          'MaybeKeyedModelHandler takes an unkeyed handler, got a '
          'KeyedModelHandler.')
    if unkeyed.get_preprocess_fns() or unkeyed.get_postprocess_fns():
      raise ConfigurationError(
          'Cannot wrap a model handler that has pre/postprocessing functions '
          'in a MaybeKeyedModelHandler: add them to the outer handler.')
    self._unkeyed = unkeyed
    self._env_vars = unkeyed._env_vars

  def run_inference(self, batch, model, inference_args=None):
    keyed = [_is_keyed(x) for x in batch]
    if all(keyed):
      keys, values = zip(*batch) if batch else ((), ())
      preds = self._unkeyed.run_inference(list(values), model, inference_args)
      return list(zip(keys, check_count(self._unkeyed, preds, len(keys))))
    if not any(keyed):
      return self._unkeyed.run_inference(batch, model, inference_args)
    out: list = [None] * len(batch)
    for want in (True, False):
      idx = [i for i, k in enumerate(keyed) if k is want]
      vals = [batch[i][1] if want else batch[i] for i in idx]
      preds = check_count(
          self._unkeyed,
          self._unkeyed.run_inference(vals, model, inference_args), len(idx))
      for i, p in zip(idx, preds):
        out[i] = (batch[i][0], p) if want else p
    return out

  def get_num_bytes(self, batch):
    values = [x[1] if _is_keyed(x) else x for x in batch]
    return self._unkeyed.get_num_bytes(values)

  def batch_elements_kwargs(self):
    return keyed_batching_kwargs(
        self._unkeyed.batch_elements_kwargs(), _OnMaybeKeyedValue)

  def should_skip_batching(self):
    return self._unkeyed.should_skip_batching()

  # The hooks below are forwarded explicitly, so the wrapped handler's own
  # behaviour is never replaced by ModelHandler's default.
  def get_preprocess_fns(self):
    return self._unkeyed.get_preprocess_fns()

  def get_postprocess_fns(self):
    return self._unkeyed.get_postprocess_fns()

  def override_metrics(self, metrics_namespace=''):
    return self._unkeyed.override_metrics(metrics_namespace)

  def should_garbage_collect_on_timeout(self):
    return self._unkeyed.should_garbage_collect_on_timeout()

  def update_model_paths(self, model, model_paths=None):
    return self._unkeyed.update_model_paths(model, model_paths)

  def matrix_predictor(self):
    return None  # keyed rows do not take the columnar path
