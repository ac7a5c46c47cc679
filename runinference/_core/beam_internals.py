"""Beam-internal helpers that Beam's own tests use from
``apache_beam.ml.inference.base`` (``_ModelStatus``, ``load_model_status``,
``_ModelHandlerManager``),
kept so those tests run against runinference. runinference's own multi-model
path is ``model_holder.KeyedModelCache``; these serve models through
``MultiProcessShared`` tags, as Beam's do."""
from __future__ import annotations

import copy
import dataclasses
import threading
import time
import uuid
from collections import OrderedDict
from typing import Any, Optional

from apache_beam.utils import multi_process_shared

from ..exceptions import ConfigurationError


class _ModelStatus:
  """Which model tags are current. Invalidating the current generation (at
  most once per ``min_model_life_seconds``) makes every tag seen so far
  invalid; ``get_valid_tag`` then names the reloaded model
  (``<tag>_reload_<n>``)."""
  def __init__(self, share_model_across_processes: bool):
    self._share = share_model_across_processes
    self._generation = 0
    self._seen: set = set()
    self._invalid: set = set()
    self._to_collect: set = set()
    self._since = time.time()
    self._lock = threading.Lock()

  def is_valid_tag(self, tag: str) -> bool:
    with self._lock:
      if tag in self._invalid:
        return False
      self._seen.add(tag)
      return True

  def get_valid_tag(self, tag: str) -> str:
    with self._lock:
      valid = tag if self._generation == 0 else (
          f'{tag}_reload_{self._generation}')
      self._seen.add(valid)
      return valid

  def try_mark_current_model_invalid(self, min_model_life_seconds: float):
    with self._lock:
      if time.time() - self._since < min_model_life_seconds:
        return
      self._invalid |= self._seen
      self._to_collect |= self._seen
      self._seen = set()
      self._generation += 1
      self._since = time.time()

  def get_tags_for_garbage_collection(self) -> list:
    with self._lock:
      return sorted(self._to_collect)

  def mark_tags_deleted(self, tags) -> None:
    """The models of ``tags`` were freed: no longer to collect."""
    with self._lock:
      self._to_collect -= set(tags)


_statuses: dict[str, _ModelStatus] = {}
_statuses_lock = threading.Lock()


def load_model_status(model_tag: str,
                      share_across_processes: bool) -> _ModelStatus:
  """The one ``_ModelStatus`` of ``model_tag``: per process, or (when
  ``share_across_processes``) one for every process through a
  ``MultiProcessShared`` proxy."""
  tag = f'{model_tag}_model_status'
  if share_across_processes:
    return multi_process_shared.MultiProcessShared(
        lambda: _ModelStatus(True), tag=tag, always_proxy=True).acquire()
  with _statuses_lock:
    return _statuses.setdefault(tag, _ModelStatus(False))


@dataclasses.dataclass
class _ModelLoadStats:
  model_tag: str
  load_latency: Optional[int]
  byte_size: Optional[int]


class _ModelHandlerManager:
  """Loads the model of each key into a ``MultiProcessShared`` slot and holds
  a reference to it; past ``max_models`` (``increment_max_models``) the least
  recently loaded key's reference is released."""
  def __init__(self, mh_map: dict):
    self._handlers = dict(mh_map)
    self._tags: dict[Any, str] = {}
    self._tag_map: OrderedDict[Any, tuple] = OrderedDict()
    self._last_path: dict[Any, str] = {}
    self._max_models: Optional[int] = None
    self._incremented_for: set = set()
    self._prefix = uuid.uuid4().hex
    self._version = 0

  def increment_max_models(self, increment: int,
                           process_id: Optional[Any] = None) -> None:
    """Raises the model limit by ``increment``; with ``process_id``, once
    per process (every DoFn copy in a process shares this manager)."""
    if increment <= 0:
      raise ConfigurationError(f'increment must be positive, got {increment!r}.')
    if process_id is not None:
      if process_id in self._incremented_for:
        return
      self._incremented_for.add(process_id)
    self._max_models = (self._max_models or 0) + increment

  def _release(self, key) -> None:
    held = self._tag_map.pop(key, None)
    if held is not None:
      shared, model = held
      shared.release(model)

  def load(self, key: str) -> _ModelLoadStats:
    if key in self._tag_map:
      self._tag_map.move_to_end(key)
      return _ModelLoadStats(self._tags[key], None, None)
    tag = self._tags.setdefault(key, f'{self._prefix}_{key}')
    handler = self._handlers[key]
    start = time.time_ns()
    shared = multi_process_shared.MultiProcessShared(
        handler.load_model, tag=tag, always_proxy=True)
    model = shared.acquire()
    self._tag_map[key] = (shared, model)
    if self._max_models is not None:
      while len(self._tag_map) > self._max_models:
        self._release(next(iter(self._tag_map)))
    return _ModelLoadStats(tag, (time.time_ns() - start) // 1_000_000, None)

  def update_model_handler(self, key: str, model_path: str, previous_key: str):
    """Points ``key`` at ``model_path`` (from ``previous_key``'s handler);
    its model is reloaded on the next ``load`` unless the path is unchanged
    since the last update."""
    if self._last_path.get(key) == model_path:
      return
    self._last_path[key] = model_path
    handler = copy.deepcopy(self._handlers[previous_key])
    handler.update_model_path(model_path)
    self._handlers[key] = handler
    self._release(key)
    self._version += 1
    self._tags[key] = f'{self._prefix}_{key}_v{self._version}'

  def keys(self) -> list:
    return list(self._handlers)
