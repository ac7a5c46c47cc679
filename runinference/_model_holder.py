"""Holding models: one per process (``Shared``), N copies per machine
(``MultiProcessShared``), load-then-swap refresh and a keyed LRU of models.
Knows nothing of batching or frameworks."""
from __future__ import annotations

import collections
import copy
import gc
import logging
import os
import random
import threading
import time
from typing import Any, Callable, Optional

from apache_beam.utils import multi_process_shared
from apache_beam.utils import shared

_LOGGER = logging.getLogger(__name__)


def current_rss_bytes() -> int:
  try:
    with open('/proc/self/statm') as f:
      return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')
  except (OSError, ValueError, IndexError):  # not Linux
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


class LoadedModel:
  """A loaded model with how long it took and roughly how much memory."""
  __slots__ = ('model', 'model_id', 'load_ms', 'byte_size', '__weakref__')

  def __init__(self, model, model_id, load_ms: int, byte_size: int):
    self.model = model
    self.model_id = model_id
    self.load_ms = load_ms
    self.byte_size = byte_size


def timed_load(load: Callable[[], Any], model_id: Optional[str],
               clock=time) -> LoadedModel:
  before = current_rss_bytes()
  start = clock.time_ns()
  model = load()
  load_ms = (clock.time_ns() - start) // 1_000_000
  return LoadedModel(model, model_id, load_ms, max(0, current_rss_bytes() - before))


_SHARED: dict[str, shared.Shared] = {}
_SHARED_LOCK = threading.Lock()


def _shared_for(tag: str) -> shared.Shared:
  """One ``Shared`` per model tag per process, so every DoFn instance and
  every RunInference step naming the same ``model_identifier`` share it."""
  with _SHARED_LOCK:
    handle = _SHARED.get(tag)
    if handle is None:
      handle = _SHARED[tag] = shared.Shared()
    return handle


class ModelHolder:
  """The model one DoFn instance serves with.

  Within a process every holder built from the same (pickled) ``ModelHolder``
  shares one loaded model through ``apache_beam.utils.shared``; with
  ``share_model_across_processes()`` the model lives in a model server process
  (``model_copies()`` of them per machine) and calls go through a proxy.
  """
  def __init__(self, handler, tag: str, clock=time):
    self._handler = handler
    self._tag = tag
    self._clock = clock
    self._loaded: Optional[LoadedModel] = None
    self._copies: list[LoadedModel] = []
    self._turn = 0
    self._mps: list = []

  def __getstate__(self):
    state = self.__dict__.copy()
    state['_loaded'] = None
    state['_copies'] = []
    state['_mps'] = []
    return state

  @property
  def handler(self):
    return self._handler

  @property
  def loaded(self) -> Optional[LoadedModel]:
    return self._loaded

  def _model_id(self, handler) -> Optional[str]:
    for attr in ('_model_uri', '_state_dict_path', '_torch_script_model_path',
                 '_model_path', 'model_uri'):
      value = getattr(handler, attr, None)
      if isinstance(value, str):
        return value
    return None

  def _load(self, handler, version: str) -> LoadedModel:
    model_id = self._model_id(handler)
    if handler.share_model_across_processes():
      return self._load_copies(handler, version, model_id)
    return _shared_for(self._tag).acquire(
        lambda: timed_load(handler.load_model, model_id, self._clock),
        tag=version)

  def _load_copies(self, handler, version, model_id) -> LoadedModel:
    # model_copies() model servers per machine, each a process of its own;
    # batches are sent to them in turn.
    copies = max(1, int(handler.model_copies()))
    new_mps, loaded = [], []
    for i in range(copies):
      start = self._clock.time_ns()
      mps = multi_process_shared.MultiProcessShared(
          handler.load_model, tag=f'{self._tag}-{version}-{i}',
          always_proxy=True)
      proxy = mps.acquire()
      new_mps.append((mps, proxy))
      loaded.append(LoadedModel(
          proxy, model_id, (self._clock.time_ns() - start) // 1_000_000, 0))
    self._release_mps()
    self._mps = new_mps
    self._copies = loaded
    return loaded[0]

  def _release_mps(self):
    old, self._mps, self._copies = self._mps, [], []
    for mps, proxy in old:
      try:
        mps.release(proxy)
      except Exception:  # pylint: disable=broad-except
        _LOGGER.debug('releasing a shared model failed', exc_info=True)

  def get(self) -> LoadedModel:
    """The current model, loaded on first use (with several copies, the
    next copy in turn)."""
    if self._loaded is None:
      self._loaded = self._load(self._handler, 'initial')
    if len(self._copies) > 1:
      self._turn = (self._turn + 1) % len(self._copies)
      return self._copies[self._turn]
    return self._loaded

  def drop(self) -> None:
    """Forget the model (after a timeout); the next ``get`` reloads it."""
    self._loaded = None
    self._release_mps()
    self._tag = f'{self._tag}+'
    gc.collect()

  def swap(self, model_path, model_id: str) -> LoadedModel:
    """Loads the model at ``model_path`` beside the current one and switches
    to it once loaded. If the load fails the current model stays in service
    and the error propagates."""
    new_handler = copy.deepcopy(self._handler)
    if isinstance(model_path, str):
      new_handler.update_model_path(model_path)
      new = self._load(new_handler, f'v-{model_id}')
      new.model_id = model_id
    else:  # per-key mappings for a multi-model KeyedModelHandler
      old = self.get()
      new_handler.update_model_paths(old.model, model_path)
      new = old
    self._handler = new_handler
    self._loaded = new
    gc.collect()
    return new


class KeyedModelManager:
  """Models of a multi-model KeyedModelHandler, loaded on demand and kept at
  most ``max_models`` at a time (least recently used goes first)."""
  def __init__(self, handlers: dict, max_models: Optional[int] = None,
               clock=time):
    self._clock = clock
    self._handlers = dict(handlers)
    self._max_models = max_models
    self._loaded: collections.OrderedDict[Any, LoadedModel] = (
        collections.OrderedDict())
    self._lock = threading.RLock()
    self.evictions = 0

  @property
  def max_models(self) -> Optional[int]:
    return self._max_models

  def loaded_ids(self) -> list:
    with self._lock:
      return list(self._loaded)

  def get(self, model_key) -> tuple[LoadedModel, bool]:
    """Returns ``(model, newly_loaded)``."""
    with self._lock:
      loaded = self._loaded.get(model_key)
      if loaded is not None:
        self._loaded.move_to_end(model_key)
        return loaded, False
      handler = self._handlers[model_key]
      if self._max_models is not None:
        while len(self._loaded) >= self._max_models:
          self._loaded.popitem(last=False)
          self.evictions += 1
        gc.collect()
      loaded = timed_load(handler.load_model, str(model_key), self._clock)
      self._loaded[model_key] = loaded
      return loaded, True

  def update(self, model_key, handler) -> None:
    """Serve ``model_key`` with ``handler`` from now on. The new model is
    loaded before the old one is dropped, so a bad file changes nothing."""
    loaded = timed_load(handler.load_model, str(model_key))
    with self._lock:
      self._handlers[model_key] = handler
      self._loaded[model_key] = loaded
      self._loaded.move_to_end(model_key)
      if self._max_models is not None:
        while len(self._loaded) > self._max_models:
          self._loaded.popitem(last=False)
          self.evictions += 1
