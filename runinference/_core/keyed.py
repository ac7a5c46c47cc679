"""Keyed handlers: one model for keyed data, or a model per key cohort."""
from __future__ import annotations

import copy
import logging
import time
from typing import Any, Generic, Optional, Sequence, TypeVar, Union

from ..exceptions import ResultCountError
from .contract import ExampleT, ModelHandler, ModelT, PredictionT
from .metrics import MetricsCollector
from .model_holder import KeyedModelManager
from .types import KeyModelPathMapping

KeyT = TypeVar('KeyT')
_LOGGER = logging.getLogger(__name__)


class KeyModelMapping(Generic[KeyT, ExampleT, PredictionT, ModelT]):
  """Maps one or more keys to the model handler that serves them."""
  def __init__(self, keys: list, mh: ModelHandler):
    self.keys = keys
    self.mh = mh

  def __repr__(self):
    return f'KeyModelMapping({self.keys!r}, {self.mh!r})'


def _split_keys(batch: Sequence, handler_name: str):
  for x in batch:
    if not (isinstance(x, (tuple, list)) and len(x) == 2):
      raise TypeError(
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
  """
  def __init__(
      self,
      unkeyed: Union[ModelHandler, list[KeyModelMapping]],
      max_models_per_worker_hint: Optional[int] = None):
    self._single_model = not isinstance(unkeyed, list)
    self._metrics: dict[Any, MetricsCollector] = {}
    self._default_metrics: Optional[MetricsCollector] = None
    self._metrics_namespace = ''
    if self._single_model:
      if not isinstance(unkeyed, ModelHandler) and not hasattr(
          unkeyed, 'run_inference'):
        raise TypeError(
            'KeyedModelHandler takes a ModelHandler or a list of '
            f'KeyModelMapping, got {type(unkeyed).__name__}.')
      if unkeyed.get_preprocess_fns() or unkeyed.get_postprocess_fns():
        raise ValueError(
            'Cannot wrap a model handler that has pre/postprocessing '
            'functions in a KeyedModelHandler: add them to the '
            'KeyedModelHandler itself (keyed.with_preprocess_fn(...)).')
      self._unkeyed = unkeyed
      self._env_vars = unkeyed._env_vars
      return
    if max_models_per_worker_hint is not None and (
        not isinstance(max_models_per_worker_hint, int) or
        max_models_per_worker_hint < 1):
      raise ValueError(
          'max_models_per_worker_hint must be a positive integer, got '
          f'{max_models_per_worker_hint!r}.')
    self._max_models = max_models_per_worker_hint
    self._id_to_mh: dict[Any, ModelHandler] = {}
    self._key_to_id: dict[Any, Any] = {}
    self._last_paths: dict[Any, str] = {}  # cohort -> path of its last update
    for mapping in unkeyed:
      if not isinstance(mapping, KeyModelMapping):
        raise TypeError(
            'KeyedModelHandler takes a list of KeyModelMapping, got an item '
            f'of type {type(mapping).__name__}.')
      mh, keys = mapping.mh, list(mapping.keys)
      if not keys:
        raise ValueError(
            f'KeyModelMapping for {mh!r} has no keys; every model handler '
            'needs at least one key.')
      if mh.get_preprocess_fns() or mh.get_postprocess_fns():
        raise ValueError(
            'Cannot use a model handler with pre/postprocessing functions '
            'inside a KeyedModelHandler: add them to the KeyedModelHandler.')
      for attr, what in ((mh.get_resource_hints(), 'resource hints'),
                         (mh.batch_elements_kwargs(), 'batching kwargs'),
                         (mh._env_vars, 'env_vars')):
        if attr:
          _LOGGER.warning(
              '%r sets %s %s, which are ignored inside a multi-model '
              'KeyedModelHandler; set them on the KeyedModelHandler instead.',
              mh, what, dict(attr))
      self._id_to_mh[keys[0]] = mh
      for key in keys:
        if key in self._key_to_id:
          raise ValueError(
              f'Key {key!r} maps to more than one model handler; each key '
              'must map to exactly one.')
        self._key_to_id[key] = keys[0]

  # -- contract ------------------------------------------------------------
  def load_model(self):
    if self._single_model:
      return self._unkeyed.load_model()
    return KeyedModelManager(self._id_to_mh, self._max_models)

  def _cohort(self, key):
    try:
      return self._key_to_id[key]
    except (KeyError, TypeError):
      raise KeyError(
          f'No model is mapped to key {key!r}. Known keys: '
          f'{sorted(map(str, self._key_to_id))[:20]}. Add a KeyModelMapping '
          'for it or filter such elements out before RunInference.') from None

  def run_inference(self, batch, model, inference_args=None):
    keys, values = _split_keys(batch, 'KeyedModelHandler')
    if self._single_model:
      return list(
          zip(keys, self._unkeyed.run_inference(values, model, inference_args)))
    if not isinstance(model, KeyedModelManager):
      raise TypeError(
          'A multi-model KeyedModelHandler must run with the model from its '
          'own load_model().')
    by_cohort: dict[Any, list[int]] = {}
    for i, key in enumerate(keys):
      by_cohort.setdefault(self._cohort(key), []).append(i)
    out: list = [None] * len(batch)
    for cohort, idx in by_cohort.items():
      mh = self._id_to_mh[cohort]
      loaded, fresh = model.get(cohort)
      collectors = [c for c in (self._metrics.get(cohort),
                                self._default_metrics) if c is not None]
      if fresh:
        for c in collectors:
          c.update_load_model_metrics(loaded.load_ms, loaded.byte_size)
      examples = [values[i] for i in idx]
      start = time.perf_counter()
      try:
        preds = list(mh.run_inference(examples, loaded.model, inference_args))
      except BaseException:
        for c in collectors:
          c.failed_batches_counter.inc()
        raise
      latency_us = int((time.perf_counter() - start) * 1e6)
      if len(preds) != len(idx):
        raise ResultCountError(
            f'{type(mh).__name__}.run_inference returned {len(preds)} '
            f'results for {len(idx)} examples.')
      if collectors:
        nbytes = mh.get_num_bytes(examples)
        for c in collectors:
          c.update(len(idx), nbytes, latency_us)
      for i, pred in zip(idx, preds):
        out[i] = (keys[i], pred)
    return out

  def get_num_bytes(self, batch):
    keys, values = _split_keys(batch, 'KeyedModelHandler')
    import pickle
    size = len(pickle.dumps(keys))
    if self._single_model:
      return size + self._unkeyed.get_num_bytes(values)
    by_cohort: dict[Any, list] = {}
    for k, v in zip(keys, values):
      by_cohort.setdefault(self._cohort(k), []).append(v)
    return size + sum(
        self._id_to_mh[c].get_num_bytes(vs) for c, vs in by_cohort.items())

  def get_metrics_namespace(self):
    if self._single_model:
      return self._unkeyed.get_metrics_namespace()
    return 'BeamML_KeyedModels'

  def get_resource_hints(self):
    return self._unkeyed.get_resource_hints() if self._single_model else {}

  def batch_elements_kwargs(self):
    # Size and length functions were written for the unkeyed examples.
    if self._single_model:
      return _keyed_batching_kwargs(self._unkeyed.batch_elements_kwargs())
    return self._batching_kwargs

  def validate_inference_args(self, inference_args):
    handlers = [self._unkeyed] if self._single_model else list(
        self._id_to_mh.values())
    for mh in handlers:
      mh.validate_inference_args(inference_args)

  def update_model_path(self, model_path=None):
    if self._single_model:
      return self._unkeyed.update_model_path(model_path=model_path)
    if model_path is not None:
      raise RuntimeError(
          'A multi-model KeyedModelHandler cannot take one model path; send '
          'a list of KeyModelPathMapping (one entry per key cohort) instead.')

  def update_model_paths(self, model, model_paths=None):
    if not model_paths or model is None:
      return
    if self._single_model:
      raise RuntimeError(
          'Invalid model update: several model paths were sent, but this '
          'KeyedModelHandler wraps a single model.')
    if isinstance(model_paths, str):
      raise ValueError(
          'A multi-model KeyedModelHandler needs a list of '
          'KeyModelPathMapping, got the single path '
          f'{model_paths!r}.')
    seen: dict[Any, KeyModelPathMapping] = {}
    for mp in model_paths:
      if not mp.update_path:
        raise ValueError(f'Invalid model update: empty path for {mp.keys}.')
      for key in mp.keys:
        if key in seen:
          raise ValueError(
              f'Invalid model update: key {key!r} appears in more than one '
              'KeyModelPathMapping.')
        if key not in self._key_to_id:
          raise ValueError(
              f'Invalid model update: key {key!r} is not in the original '
              'KeyModelMapping configuration.')
        seen[key] = mp
    missing = [k for k in self._key_to_id if k not in seen]
    if missing:
      raise ValueError(
          f'Invalid model update: keys {missing} of the original '
          'configuration are missing from the update.')
    # Regroup: keys that now share a path form one cohort.
    new_groups: dict[tuple, list] = {}
    for key, mp in seen.items():
      new_groups.setdefault((self._key_to_id[key], mp.update_path),
                            []).append(key)
    for (old_cohort, path), keys in new_groups.items():
      cohort = old_cohort if old_cohort in keys else keys[0]
      if cohort == old_cohort and self._last_paths.get(cohort) == path:
        continue  # unchanged since the last update: keep the loaded model
      self._last_paths[cohort] = path
      mh = copy.deepcopy(self._id_to_mh[old_cohort])
      mh.update_model_path(path)
      model.update(cohort, mh)  # loads first: a bad file raises here
      self._id_to_mh[cohort] = mh
      for key in keys:
        self._key_to_id[key] = cohort
      if self._metrics_namespace:
        model_id = seen[keys[0]].model_id
        self._metrics[cohort] = MetricsCollector(
            self._metrics_namespace, f'{cohort}-{model_id}-')

  def share_model_across_processes(self):
    if self._single_model:
      return self._unkeyed.share_model_across_processes()
    return False

  def model_copies(self):
    if self._single_model:
      return self._unkeyed.model_copies()
    for mh in self._id_to_mh.values():
      if mh.model_copies() != 1:
        raise ValueError(
            'A multi-model KeyedModelHandler cannot hold several copies of a '
            'model; remove model_copies from its model handlers.')
    return 1

  def override_metrics(self, metrics_namespace=''):
    if self._single_model:
      return self._unkeyed.override_metrics(metrics_namespace)
    self._metrics_namespace = metrics_namespace
    self._default_metrics = MetricsCollector(metrics_namespace)
    self._metrics = {
        c: MetricsCollector(metrics_namespace, f'{c}-')
        for c in self._id_to_mh
    }
    return True

  def should_garbage_collect_on_timeout(self):
    return self._single_model and self.share_model_across_processes()


class _OnValue:
  """Applies a per-example function (e.g. ``element_size_fn``) to the value
  of a ``(key, value)`` pair."""
  def __init__(self, fn):
    self.fn = fn

  def __call__(self, kv):
    return self.fn(kv[1])


def _keyed_batching_kwargs(kwargs):
  kwargs = dict(kwargs)
  for name in ('element_size_fn', 'length_fn'):
    if kwargs.get(name) is not None:
      kwargs[name] = _OnValue(kwargs[name])
  return kwargs


def _is_keyed(x) -> bool:
  return isinstance(x, tuple) and len(x) == 2


class MaybeKeyedModelHandler(Generic[KeyT, ExampleT, PredictionT, ModelT],
                             ModelHandler[Any, Any, ModelT]):
  """Accepts both ``(key, example)`` and plain examples; keyed input gives
  keyed output."""
  def __init__(self, unkeyed: ModelHandler):
    if isinstance(unkeyed, KeyedModelHandler):
      raise ValueError(
          'MaybeKeyedModelHandler takes an unkeyed handler, got a '
          'KeyedModelHandler.')
    if unkeyed.get_preprocess_fns() or unkeyed.get_postprocess_fns():
      raise ValueError(
          'Cannot wrap a model handler that has pre/postprocessing functions '
          'in a MaybeKeyedModelHandler: add them to the outer handler.')
    self._unkeyed = unkeyed
    self._env_vars = unkeyed._env_vars

  def load_model(self):
    return self._unkeyed.load_model()

  def run_inference(self, batch, model, inference_args=None):
    keyed = [_is_keyed(x) for x in batch]
    if all(keyed):
      keys, values = zip(*batch) if batch else ((), ())
      preds = self._unkeyed.run_inference(list(values), model, inference_args)
      return list(zip(keys, preds))
    if not any(keyed):
      return self._unkeyed.run_inference(batch, model, inference_args)
    out: list = [None] * len(batch)
    for want in (True, False):
      idx = [i for i, k in enumerate(keyed) if k is want]
      vals = [batch[i][1] if want else batch[i] for i in idx]
      preds = list(self._unkeyed.run_inference(vals, model, inference_args))
      for i, p in zip(idx, preds):
        out[i] = (batch[i][0], p) if want else p
    return out

  def get_num_bytes(self, batch):
    values = [x[1] if _is_keyed(x) else x for x in batch]
    return self._unkeyed.get_num_bytes(values)

  def get_metrics_namespace(self):
    return self._unkeyed.get_metrics_namespace()

  def get_resource_hints(self):
    return self._unkeyed.get_resource_hints()

  def batch_elements_kwargs(self):
    return self._unkeyed.batch_elements_kwargs()

  def validate_inference_args(self, inference_args):
    return self._unkeyed.validate_inference_args(inference_args)

  def update_model_path(self, model_path=None):
    return self._unkeyed.update_model_path(model_path=model_path)

  def should_skip_batching(self):
    return self._unkeyed.should_skip_batching()

  def share_model_across_processes(self):
    return self._unkeyed.share_model_across_processes()

  def model_copies(self):
    return self._unkeyed.model_copies()
