"""The multi-model form of ``KeyedModelHandler``: each key cohort has its
own model handler; models are loaded on demand and at most
``max_models_per_worker_hint`` are held per worker process."""
from __future__ import annotations

import copy
import logging
import pickle
import time
from typing import Any, Optional

from ..exceptions import (ConfigurationError, ConfigurationTypeError,
                          InvalidInputError, InvalidInputTypeError,
                          ModelUpdateError, UnknownModelKeyError)
from .contract import ModelHandler
from .keyed import KeyedModelHandler, KeyModelMapping, check_count, split_keys
from .metrics import MetricsCollector
from .keyed_models import KeyedModelCache
from .types import KeyModelPathMapping

_LOGGER = logging.getLogger(__name__)


class MultiModelKeyedHandler(KeyedModelHandler):
  """``KeyedModelHandler`` over a list of ``KeyModelMapping``."""
  @staticmethod
  def _takes(unkeyed) -> bool:
    return isinstance(unkeyed, list)

  def __init__(
      self,
      unkeyed: list[KeyModelMapping],
      max_models_per_worker_hint: Optional[int] = None):
    self._metrics: dict[Any, MetricsCollector] = {}
    self._default_metrics: Optional[MetricsCollector] = None
    self._metrics_namespace = ''
    if max_models_per_worker_hint is not None and (
        isinstance(max_models_per_worker_hint, bool) or
        not isinstance(max_models_per_worker_hint, int) or
        max_models_per_worker_hint < 1):
      raise ConfigurationError(
          'max_models_per_worker_hint must be a positive integer, got '
          f'{max_models_per_worker_hint!r}.')
    self._max_models = max_models_per_worker_hint
    self._id_to_mh: dict[Any, ModelHandler] = {}
    self._key_to_id: dict[Any, Any] = {}
    self._last_paths: dict[Any, str] = {}  # cohort -> path of its last update
    for mapping in unkeyed:
      self._add(mapping)

  def _add(self, mapping) -> None:
    if not isinstance(mapping, KeyModelMapping):
      raise ConfigurationTypeError(
          'KeyedModelHandler takes a list of KeyModelMapping, got an item '
          f'of type {type(mapping).__name__}.')
    mh, keys = mapping.mh, list(mapping.keys)
    if not keys:
      raise ConfigurationError(
          f'KeyModelMapping for {mh!r} has no keys; every model handler '
          'needs at least one key.')
    if mh.get_preprocess_fns() or mh.get_postprocess_fns():
      raise ConfigurationError(
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
    if mh.should_skip_batching():
      _LOGGER.warning(
          '%r skips batching (with_no_batching), which is ignored inside a '
          'multi-model KeyedModelHandler: examples are batched per key. Call '
          'with_no_batching() on the KeyedModelHandler to pass pre-batched '
          'lists.', mh)
    self._id_to_mh[keys[0]] = mh
    for key in keys:
      if key in self._key_to_id:
        raise ConfigurationError(
            f'Key {key!r} maps to more than one model handler; each key '
            'must map to exactly one.')
      self._key_to_id[key] = keys[0]

  # -- contract ------------------------------------------------------------
  def load_model(self):
    return KeyedModelCache(self._id_to_mh, self._max_models)

  def _cohort(self, key):
    try:
      return self._key_to_id[key]
    except (KeyError, TypeError):
      raise UnknownModelKeyError(
          f'No model is mapped to key {key!r}. Known keys: '
          f'{sorted(map(str, self._key_to_id))[:20]}. Add a KeyModelMapping '
          'for it or filter such elements out before RunInference.') from None

  def _run_values(self, keys, values, model, inference_args) -> list:
    if not isinstance(model, KeyedModelCache):
      raise ConfigurationTypeError(
          'A multi-model KeyedModelHandler must run with the model from its '
          'own load_model().')
    by_cohort: dict[Any, list[int]] = {}
    for i, key in enumerate(keys):
      by_cohort.setdefault(self._cohort(key), []).append(i)
    out: list = [None] * len(values)
    for cohort, idx in by_cohort.items():
      for i, pred in zip(idx, self._run_cohort(
          cohort, [values[i] for i in idx], model, inference_args)):
        out[i] = pred
    return out

  def _run_cohort(self, cohort, examples, model, inference_args) -> list:
    mh = self._id_to_mh[cohort]
    loaded, fresh = model.get(cohort)
    collectors = [c for c in (self._metrics.get(cohort),
                              self._default_metrics) if c is not None]
    if fresh:
      for c in collectors:
        c.update_load_model_metrics(loaded.load_ms, loaded.byte_size)
    start = time.perf_counter()
    try:
      preds = check_count(
          mh, mh.run_inference(examples, loaded.model, inference_args),
          len(examples))
    except BaseException:
      for c in collectors:
        c.failed_batches_counter.inc()
      raise
    latency_us = int((time.perf_counter() - start) * 1e6)
    if collectors:
      nbytes = mh.get_num_bytes(examples)
      for c in collectors:
        c.update(len(examples), nbytes, latency_us)
    return preds

  def get_num_bytes(self, batch):
    keys, values = split_keys(batch, 'KeyedModelHandler')
    by_cohort: dict[Any, list] = {}
    for k, v in zip(keys, values):
      by_cohort.setdefault(self._cohort(k), []).append(v)
    return len(pickle.dumps(keys)) + sum(
        self._id_to_mh[c].get_num_bytes(vs) for c, vs in by_cohort.items())

  def get_metrics_namespace(self):
    return 'BeamML_KeyedModels'

  def get_resource_hints(self):
    return {}

  def validate_inference_args(self, inference_args):
    for mh in self._id_to_mh.values():
      mh.validate_inference_args(inference_args)

  def update_model_path(self, model_path=None):
    if model_path is not None:
      raise ModelUpdateError(
          'A multi-model KeyedModelHandler cannot take one model path; send '
          'a list of KeyModelPathMapping (one entry per key cohort) instead.')

  def _check_update(self, model_paths) -> dict[Any, KeyModelPathMapping]:
    if isinstance(model_paths, str):
      raise InvalidInputTypeError(
          'A multi-model KeyedModelHandler needs a list of '
          'KeyModelPathMapping, got the single path '
          f'{model_paths!r}.')
    seen: dict[Any, KeyModelPathMapping] = {}
    for mp in model_paths:
      if not mp.update_path:
        raise InvalidInputError(
            f'Invalid model update: empty path for {mp.keys}.')
      for key in mp.keys:
        if key in seen:
          raise InvalidInputError(
              f'Invalid model update: key {key!r} appears in more than one '
              'KeyModelPathMapping.')
        if key not in self._key_to_id:
          raise InvalidInputError(
              f'Invalid model update: key {key!r} is not in the original '
              'KeyModelMapping configuration.')
        seen[key] = mp
    missing = [k for k in self._key_to_id if k not in seen]
    if missing:
      raise InvalidInputError(
          f'Invalid model update: keys {missing} of the original '
          'configuration are missing from the update.')
    return seen

  def update_model_paths(self, model, model_paths=None):
    if not model_paths or model is None:
      return
    seen = self._check_update(model_paths)
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
    return False

  def overlap_by_default(self):
    return all(mh.overlap_by_default() for mh in self._id_to_mh.values())

  def model_copies(self):
    for mh in self._id_to_mh.values():
      if mh.model_copies() != 1:
        raise ConfigurationError(
            'A multi-model KeyedModelHandler cannot hold several copies of a '
            'model; remove model_copies from its model handlers.')
    return 1

  def override_metrics(self, metrics_namespace=''):
    self._metrics_namespace = metrics_namespace
    self._default_metrics = MetricsCollector(metrics_namespace)
    self._metrics = {
        c: MetricsCollector(metrics_namespace, f'{c}-')
        for c in self._id_to_mh
    }
    return True

  def should_garbage_collect_on_timeout(self):
    return False
