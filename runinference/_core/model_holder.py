"""Holding models: one per process (``Shared``), N copies per machine
(``MultiProcessShared``), load-then-swap refresh and a keyed LRU of models.
Knows nothing of batching or frameworks."""
from __future__ import annotations

import copy
import dataclasses
import gc
import logging
import os
import threading
import time
import weakref
from typing import Any, Callable, Optional

from apache_beam.utils import multi_process_shared
from apache_beam.utils import shared

from .integrity import verify_model_file
from .model_manager import ModelManager, process_model_manager

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


@dataclasses.dataclass
class ServerProcesses:
  """Model server processes (``MultiProcessShared``) and their proxies, one
  ``LoadedModel`` per copy."""
  servers: list
  loaded: list[LoadedModel]

  def release(self) -> None:
    for server in self.servers:
      _release(server)
    self.servers = []


@dataclasses.dataclass
class PreparedModel:
  """A model loaded beside the serving one by ``ModelHolder.prepare``:
  ``commit`` switches to it, ``discard`` releases it."""
  handler: Any
  loaded: LoadedModel
  servers: Optional[ServerProcesses] = None


_LOADING = threading.local()


def loading_ms_on_this_thread() -> int:
  """Milliseconds this thread has spent loading models, a running total
  (a call that loads models inside it -- a multi-model KeyedModelHandler --
  is not slower per element for it; batch sizing leaves this time out)."""
  return getattr(_LOADING, 'ms', 0)


def _count_load(load_ms: int) -> None:
  _LOADING.ms = loading_ms_on_this_thread() + load_ms


def timed_load(load: Callable[[], Any], model_id: Optional[str],
               clock=time) -> LoadedModel:
  before = current_rss_bytes()
  start = clock.time_ns()
  model = load()
  load_ms = (clock.time_ns() - start) // 1_000_000
  _count_load(load_ms)
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


class KeyedModels:
  """What a holder needs of the per-key models of a multi-model
  KeyedModelHandler (``keyed_models.KeyedModelCache``)."""
  def use_budget(self, manager: ModelManager, prefix: str) -> None:
    raise NotImplementedError(type(self))

  def clone(self) -> 'KeyedModels':
    raise NotImplementedError(type(self))


class ModelHolder:
  """The model one DoFn instance serves with.

  Within a process every holder built from the same (pickled) ``ModelHolder``
  shares one loaded model through ``apache_beam.utils.shared``; with
  ``share_model_across_processes()`` the model lives in a model server process
  (``model_copies()`` of them per machine) and calls go through a proxy.
  """
  def __init__(self, handler, tag: str, clock=time,
               manager_args: Optional[dict] = None):
    self._handler = handler
    self._tag = tag
    # With the central model manager the process's manager holds the model
    # under its memory budget, and may evict it between batches: every get()
    # asks it again (a dict lookup while the model is held).
    self._manager_args = manager_args
    self._version = 'initial'
    self._managed = False
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

  def _load(self, handler, version: str) -> LoadedModel:
    model_id = handler.model_location
    if handler.share_model_across_processes():
      return self._load_copies(handler, version, model_id)

    def load():
      verify_model_file(handler)
      return timed_load(handler.load_model, model_id, self._clock)

    if self._manager_args is not None:
      return self._from_manager(process_model_manager(self._manager_args), load, version)
    return _shared_for(self._tag).acquire(load, tag=version)

  def _from_manager(self, manager: ModelManager, load, version) -> LoadedModel:
    key = f'{self._tag}:{version}'

    def load_under_budget():
      loaded = load()
      if isinstance(loaded.model, KeyedModels):
        loaded.model.use_budget(manager, key)
      return loaded

    loaded = manager.acquire(key, load_under_budget)
    manager.release(key)
    return loaded

  def _load_copies(self, handler, version, model_id) -> LoadedModel:
    servers = self._start_copies(handler, version, model_id)
    self._release_mps()
    self._mps = servers.servers
    self._copies = servers.loaded
    return servers.loaded[0]

  def _start_copies(self, handler, version, model_id) -> ServerProcesses:
    # model_copies() model servers per machine, each a process of its own;
    # batches are sent to them in turn.
    verify_model_file(handler)
    copies = max(1, int(handler.model_copies()))
    servers = ServerProcesses([], [])
    for i in range(copies):
      start = self._clock.time_ns()
      mps = multi_process_shared.MultiProcessShared(
          handler.load_model, tag=f'{self._tag}-{version}-{i}',
          always_proxy=True)
      proxy = mps.acquire()
      servers.servers.append((mps, proxy))
      servers.loaded.append(LoadedModel(
          proxy, model_id, (self._clock.time_ns() - start) // 1_000_000, 0))
    return servers

  def _release_mps(self):
    old, self._mps, self._copies = self._mps, [], []
    for server in old:
      _release(server)

  def get(self) -> LoadedModel:
    """The current model, loaded on first use (with several copies, the
    next copy in turn)."""
    if self._loaded is None or self._managed:
      self._loaded = self._load(self._handler, self._version)
      self._managed = self._manager_args is not None
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

  def prepare(self, model_path, model_id: str) -> PreparedModel:
    """Loads the model at ``model_path`` (or, for a multi-model
    KeyedModelHandler, a list of KeyModelPathMapping) beside the current one,
    changing nothing yet: ``commit`` switches to it. Safe to call from another
    thread while this holder serves; if it raises, nothing changed."""
    new_handler = copy.deepcopy(self._handler)
    if not isinstance(model_path, list):
      new_handler.update_model_path(model_path)
      version = f'v-{model_id}'
      if new_handler.share_model_across_processes():
        servers = self._start_copies(new_handler, version, model_id)
        servers.loaded[0].model_id = model_id
        return PreparedModel(new_handler, servers.loaded[0], servers)
      new = self._load(new_handler, version)
      new.model_id = model_id
      return PreparedModel(new_handler, new)
    # Per-key mappings for a multi-model KeyedModelHandler: update a copy of
    # the model manager, so that a mapping that fails to load leaves every
    # key on its current model.
    old = self.get()
    model = old.model.clone() if isinstance(old.model, KeyedModels) else old.model
    new_handler.update_model_paths(model, model_path)
    return PreparedModel(new_handler, LoadedModel(model, model_id, 0, 0))

  @staticmethod
  def discard(prepared: PreparedModel) -> None:
    """Releases a prepared model that will not be committed."""
    if prepared.servers is not None:
      prepared.servers.release()

  def commit(self, prepared: PreparedModel) -> LoadedModel:
    """Switches to a model from ``prepare``; the old one is released."""
    new = prepared.loaded
    old = _weak(self._loaded)
    if prepared.servers is not None:
      self._release_mps()
      self._mps, self._copies = prepared.servers.servers, prepared.servers.loaded
    self._handler = prepared.handler
    self._loaded = new
    self._managed = (self._manager_args is not None and
                     prepared.servers is None and
                     not isinstance(new.model, KeyedModels))
    if self._managed:
      self._version = 'v-' + str(new.model_id)
    if old is not None and old() is not None and old() is not new.model:
      # Still alive after its last reference from here went: held by a
      # reference cycle (or elsewhere). A full collection costs ~0.1 s of
      # every thread's time, so only then.
      gc.collect()
    return new


def _weak(loaded: Optional[LoadedModel]):
  if loaded is None:
    return None
  try:
    return weakref.ref(loaded.model)
  except TypeError:  # the model type has no weak references
    return weakref.ref(loaded)


def _release(server) -> None:
  mps, proxy = server
  try:
    mps.release(proxy)
  except Exception:  # pylint: disable=broad-except
    _LOGGER.debug('releasing a shared model failed', exc_info=True)

