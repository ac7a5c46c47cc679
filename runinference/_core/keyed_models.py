"""The models of a multi-model KeyedModelHandler: one per key, loaded on
demand, kept at most ``max_models`` at a time or under the central model
manager's memory budget (evicted models released at once)."""
from __future__ import annotations

import collections
import copy
import gc
import threading
import time
import uuid
from types import MappingProxyType
from typing import Any, Optional

from apache_beam.utils import multi_process_shared

from ..exceptions import ConfigurationError
from .integrity import verify_model_file
from .model_holder import (KeyedModels, LoadedModel, _count_load, _release,
                           timed_load)
from .model_manager import ModelManager, _weak_refs


class KeyedModelCache(KeyedModels):
  """Models of a multi-model KeyedModelHandler, loaded on demand and kept at
  most ``max_models`` at a time (least recently used goes first).

  A handler with ``share_model_across_processes()`` has its model served by a
  model server process (``MultiProcessShared``); this manager holds one
  reference per key and releases it when the key's model is evicted or
  replaced, or when the manager itself is dropped."""
  # Until __init__ sets its own (read by __del__ if __init__ failed).
  _servers: dict = MappingProxyType({})  # type: ignore[assignment]

  def __init__(self, handlers: dict, max_models: Optional[int] = None,
               clock=time):
    self._clock = clock
    self._handlers = dict(handlers)
    self._max_models = max_models
    self._loaded: collections.OrderedDict[Any, LoadedModel] = (
        collections.OrderedDict())
    self._lock = threading.RLock()
    self._servers: dict = {}  # key -> (MultiProcessShared, proxy)
    self.evictions = 0
    self._budget: Optional[ModelManager] = None
    self._budget_prefix = ''

  def use_budget(self, manager: ModelManager, prefix: str) -> None:
    """Hold the keys' models in ``manager`` (the central model manager):
    its memory budget, not ``max_models``, decides which stay loaded."""
    self._budget = manager
    self._budget_prefix = prefix

  @property
  def max_models(self) -> Optional[int]:
    return self._max_models

  def loaded_ids(self) -> list:
    if self._budget is not None:
      prefix = f'{self._budget_prefix}/'
      return [k for k in self._handlers
              if prefix + str(k) in self._budget.held()]
    with self._lock:
      return list(self._loaded)

  def _load(self, model_key, handler) -> tuple:
    verify_model_file(handler)
    if not handler.share_model_across_processes():
      return timed_load(handler.load_model, str(model_key), self._clock), None
    start = self._clock.time_ns()
    mps = multi_process_shared.MultiProcessShared(
        handler.load_model, tag=f'ri-keyed-{uuid.uuid4().hex}',
        always_proxy=True)
    proxy = mps.acquire()
    load_ms = (self._clock.time_ns() - start) // 1_000_000
    _count_load(load_ms)
    return LoadedModel(proxy, str(model_key), load_ms, 0), (mps, proxy)

  def _forget(self, model_key) -> None:
    self._loaded.pop(model_key, None)
    server = self._servers.pop(model_key, None)
    if server is not None:
      _release(server)

  def _evict_over(self, limit: int) -> list:
    """Evicts down to ``limit`` models; weak references to the evicted."""
    refs: list = []
    while len(self._loaded) > limit:
      key = next(iter(self._loaded))
      refs += _weak_refs(self._loaded[key])
      self._forget(key)
      self.evictions += 1
    return refs

  def get(self, model_key) -> tuple[LoadedModel, bool]:
    """Returns ``(model, newly_loaded)``."""
    if self._budget is not None and not self._servers:
      return self._get_under_budget(model_key)
    with self._lock:
      loaded = self._loaded.get(model_key)
      if loaded is not None:
        self._loaded.move_to_end(model_key)
        return loaded, False
      handler = self._handlers[model_key]
      if self._max_models is not None:
        # A collection (~0.2 s in a large process) only for a model that
        # reference counting did not free.
        if any(r() is not None for r in self._evict_over(self._max_models - 1)):
          gc.collect()
      loaded, server = self._load(model_key, handler)
      self._loaded[model_key] = loaded
      if server is not None:
        self._servers[model_key] = server
      return loaded, True

  def _get_under_budget(self, model_key) -> tuple[LoadedModel, bool]:
    assert self._budget is not None
    key = f'{self._budget_prefix}/{model_key}'
    fresh: list = []

    def load():
      loaded, server = self._load(model_key, self._handlers[model_key])
      if server is not None:  # a model server process: not under the budget
        _release(server)
        raise ConfigurationError(
            'use_model_manager=True cannot hold models served across '
            'processes (large_model / model_copies) of a multi-model '
            'KeyedModelHandler; use one or the other.')
      fresh.append(True)
      return loaded

    # Not kept in self._loaded: the budget manager alone decides which
    # models stay (a reference here would keep an evicted model alive).
    loaded = self._budget.acquire(key, load)
    self._budget.release(key)
    return loaded, bool(fresh)

  def clone(self) -> 'KeyedModelCache':
    """A manager with the same handlers and loaded models, updated
    independently of this one (for all-or-nothing refreshes). Models served
    by model servers get a reference of the clone's own."""
    with self._lock:
      new = copy.copy(self)
      new._lock = threading.RLock()
      new._handlers = dict(self._handlers)
      new._loaded = collections.OrderedDict(self._loaded)
      new._servers = {}
      for key, (mps, _) in self._servers.items():
        proxy = mps.acquire()
        new._servers[key] = (mps, proxy)
        old = new._loaded[key]
        new._loaded[key] = LoadedModel(
            proxy, old.model_id, old.load_ms, old.byte_size)
    return new

  def update(self, model_key, handler) -> None:
    """Serve ``model_key`` with ``handler`` from now on. The new model is
    loaded before the old one is dropped, so a bad file changes nothing."""
    loaded, server = self._load(model_key, handler)
    with self._lock:
      self._handlers[model_key] = handler
      self._forget(model_key)
      self._loaded[model_key] = loaded
      if server is not None:
        self._servers[model_key] = server
      if self._max_models is not None:
        self._evict_over(self._max_models)

  def __del__(self):
    for server in list(self._servers.values()):
      _release(server)
