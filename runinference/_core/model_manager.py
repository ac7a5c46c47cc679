"""A central model manager: which models a process holds is decided by a
memory budget, not by a model count.

Each model's cost is measured when it loads: the larger of the growth of the
process's resident (and device) memory and the size of the model's own
objects (``model_bytes``: numpy buffers, torch storage), so that a model
landing in memory an evicted one freed still counts; models nobody
is using are evicted least-recently-used first until a new one fits, and a
model larger than the whole budget is a clear error. Knows nothing of Beam's
pipeline or of frameworks.
"""
from __future__ import annotations

import collections
import dataclasses
import gc
import logging
import os
import sys
import threading
import time
import types
import weakref
from typing import Any, Callable, Optional

from ..exceptions import ConfigurationError, RunInferenceError
from ..exceptions import ModelTooLargeError  # noqa: F401  (re-exported)

_LOGGER = logging.getLogger(__name__)

# Beam's ModelManager options that only steer its GPU monitor and scheduler;
# accepted so pipelines written for it run, with a warning that they do
# nothing here.
_BEAM_ONLY_OPTIONS = frozenset({
    'monitor', 'poll_interval', 'peak_window_seconds', 'min_data_points',
    'eviction_cooldown_seconds', 'min_model_copies', 'lock_timeout_seconds',
    'verbose_logging'
})


def rss_bytes() -> int:
  try:
    with open('/proc/self/statm') as f:
      return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')
  except (OSError, ValueError, IndexError):
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def available_bytes() -> int:
  """Memory this process may still use: the cgroup limit's headroom where
  one is set, else the machine's available memory."""
  try:
    with open('/sys/fs/cgroup/memory.max') as f:
      limit = f.read().strip()
    with open('/sys/fs/cgroup/memory.current') as f:
      current = int(f.read().strip())
    if limit != 'max':
      return max(0, int(limit) - current)
  except (OSError, ValueError):
    pass
  try:
    with open('/proc/meminfo') as f:
      for line in f:
        if line.startswith('MemAvailable:'):
          return int(line.split()[1]) * 1024
  except (OSError, ValueError):
    pass
  return 8 << 30


def _device_bytes() -> int:
  torch = __import__('sys').modules.get('torch')
  if torch is None or not torch.cuda.is_available():
    return 0
  try:
    return int(torch.cuda.memory_allocated())
  except Exception:  # pylint: disable=broad-except
    return 0


_NOT_WALKED = (type, types.ModuleType, types.FunctionType,
               types.BuiltinFunctionType, types.MethodType,
               types.CodeType, types.FrameType, threading.Thread)
_MAX_OBJECTS = 200_000


def model_bytes(model: Any) -> int:
  """The memory a model's own objects hold: numpy arrays' buffers, torch
  tensors' storage, and the size of every other object reachable from it
  (classes, modules and functions are shared, not counted). A lower bound
  that does not depend on the allocator: the growth of the process's RSS
  during a load reads near zero when the model lands in memory freed by an
  evicted one, which let many more models in than the budget holds."""
  np = sys.modules.get('numpy')
  torch = sys.modules.get('torch')
  seen: set = set()
  storages: set = set()
  total = 0
  stack = [model]
  while stack and len(seen) < _MAX_OBJECTS:
    obj = stack.pop()
    if id(obj) in seen or isinstance(obj, _NOT_WALKED) or isinstance(
        obj, (ModelManager, threading.Condition)):
      continue  # a keyed manager's budget holds the *other* models
    seen.add(id(obj))
    if np is not None and isinstance(obj, np.ndarray):
      if obj.base is None:
        total += obj.nbytes
      else:
        stack.append(obj.base)
      continue
    if torch is not None and isinstance(obj, torch.Tensor):
      try:
        storage = obj.untyped_storage()
        if storage.data_ptr() not in storages:
          storages.add(storage.data_ptr())
          total += storage.nbytes()
      except Exception:  # pylint: disable=broad-except  (meta, sparse...)
        pass
      continue
    try:
      total += sys.getsizeof(obj)
    except TypeError:
      pass
    stack.extend(gc.get_referents(obj))
  return total


def _weak_refs(model: Any) -> list:
  """Weak references to ``model`` and to what a ``LoadedModel`` wraps."""
  refs = []
  for obj in (model, getattr(model, 'model', None)):
    if obj is None:
      continue
    try:
      refs.append(weakref.ref(obj))
    except TypeError:
      pass
  return refs


@dataclasses.dataclass
class _Entry:
  model: Any
  cost: int
  users: int = 0


class ModelManager:
  """Holds models under a memory budget for one process.

  ``acquire(tag, load)`` returns the model for ``tag``, loading it with
  ``load()`` if needed (after evicting idle models, least recently used
  first, until its known cost fits); ``release(tag)`` marks one use done.
  Models in use are never evicted.

  Args:
    memory_budget_bytes: what all held models may cost together (default:
      the memory available when the manager starts, less ``slack``).
    slack_percentage: share of the available memory kept free (default 0.1).
    smoothing_factor: weight of a new measurement in a model's cost estimate
      when it is loaded again (default 0.2).
    wait_timeout_seconds: longest ``acquire`` waits for models in use to be
      released when nothing idle can be evicted (default 300).
  """
  def __init__(
      self,
      memory_budget_bytes: Optional[int] = None,
      *,
      slack_percentage: float = 0.10,
      smoothing_factor: float = 0.2,
      wait_timeout_seconds: float = 300.0,
      **beam_options):
    unknown = sorted(set(beam_options) - _BEAM_ONLY_OPTIONS)
    if unknown:
      raise ConfigurationError(
          f'ModelManager got unknown option(s) {unknown}; options are '
          'memory_budget_bytes, slack_percentage, smoothing_factor, '
          f'wait_timeout_seconds (and Beam\'s {sorted(_BEAM_ONLY_OPTIONS)}, '
          'which only steer its GPU monitor).')
    if beam_options:
      _LOGGER.warning(
          'ModelManager options %s steer Beam\'s GPU monitor and have no '
          'effect here: runinference measures each model\'s memory when it '
          'loads.', sorted(beam_options))
    if not 0 <= slack_percentage < 1:
      raise ConfigurationError(
          f'slack_percentage must be in [0, 1), got {slack_percentage!r}.')
    if not 0 < smoothing_factor <= 1:
      raise ConfigurationError(
          f'smoothing_factor must be in (0, 1], got {smoothing_factor!r}.')
    if memory_budget_bytes is None:
      memory_budget_bytes = int(available_bytes() * (1 - slack_percentage))
    if memory_budget_bytes <= 0:
      raise ConfigurationError(
          f'memory_budget_bytes must be > 0, got {memory_budget_bytes!r}.')
    self.budget = int(memory_budget_bytes)
    self._smoothing = smoothing_factor
    self._wait = wait_timeout_seconds
    self._held: collections.OrderedDict[str, _Entry] = collections.OrderedDict()
    self._estimates: dict[str, int] = {}
    self._cv = threading.Condition()
    self.loads = 0
    self.evictions = 0
    self._collected = 0.0

  @property
  def used(self) -> int:
    """Estimated memory of the models held now."""
    return sum(e.cost for e in self._held.values())

  def held(self) -> list[str]:
    with self._cv:
      return list(self._held)

  def acquire(self, tag: str, load: Callable[[], Any]) -> Any:
    with self._cv:
      entry = self._held.get(tag)
      if entry is None:
        entry = self._load(tag, load)
      self._held.move_to_end(tag)
      entry.users += 1
      return entry.model

  def release(self, tag: str) -> None:
    with self._cv:
      entry = self._held.get(tag)
      if entry is not None and entry.users > 0:
        entry.users -= 1
        self._cv.notify_all()

  def _evict_for(self, need: int, wait: bool = True) -> None:
    deadline = time.monotonic() + self._wait
    while self.used + need > self.budget:
      idle = next((t for t, e in self._held.items() if e.users == 0), None)
      if idle is not None:
        self._drop(idle)
        continue
      if not self._held or not wait:
        return
      left = deadline - time.monotonic()
      if left <= 0:
        raise RunInferenceError(
            f'ModelManager waited {self._wait}s for models in use to be '
            f'released to make room for {need} bytes (budget {self.budget}, '
            f'used {self.used}); raise memory_budget_bytes or lower the '
            'number of models in use at once.')
      self._cv.wait(min(left, 1.0))

  def _drop(self, tag: str) -> None:
    entry = self._held.pop(tag, None)
    self.evictions += 1
    if entry is None:
      return
    refs = _weak_refs(entry.model)
    del entry
    # A model freed by reference counting needs no collection (which takes
    # ~0.2 s in a large process); one still alive may be in a cycle -- or
    # just still in a caller's hands, which a collection cannot change, so
    # at most one collection a second.
    now = time.monotonic()
    if any(r() is not None for r in refs) and now - self._collected > 1.0:
      self._collected = now
      gc.collect()

  def _load(self, tag: str, load: Callable[[], Any]) -> _Entry:
    known = self._estimates.get(tag)
    if known is not None and known > self.budget:
      raise self._too_large(tag, known)
    # A model not seen yet is assumed as large as the largest one measured
    # (the models a process serves tend to be alike), so room is made before
    # it loads rather than after.
    if known is None:
      self._evict_for(
          min(self.budget, max(self._estimates.values(), default=0)),
          wait=False)  # only a guess: never wait for models in use for it
    else:
      self._evict_for(known)
    modules = len(sys.modules)
    before = rss_bytes() + _device_bytes()
    model = load()
    grown = rss_bytes() + _device_bytes() - before
    walked = model_bytes(model)
    # The RSS growth counts the libraries a first load imports (sklearn alone
    # is ~80 MiB), and reads ~0 when the model reuses memory an evicted one
    # freed; the walked size is exact for numpy/torch models but misses
    # native ones (ONNX Runtime, XGBoost boosters): take the larger, unless
    # the load imported modules.
    cost = walked if len(sys.modules) != modules else max(grown, walked)
    self.loads += 1
    if tag in self._estimates:
      cost = int(self._smoothing * cost +
                 (1 - self._smoothing) * self._estimates[tag])
    self._estimates[tag] = cost
    if cost > self.budget:
      del model
      gc.collect()
      raise self._too_large(tag, cost)
    entry = self._held[tag] = _Entry(model, cost)
    # Make room after the fact for a model whose cost was not known yet.
    for other in [t for t, e in self._held.items() if e.users == 0]:
      if self.used <= self.budget:
        break
      if other != tag:
        self._drop(other)
    return entry

  def _too_large(self, tag: str, cost: int) -> ModelTooLargeError:
    return ModelTooLargeError(
        f'Model {tag!r} needs about {cost / 2**20:.0f} MiB, more than the '
        f'model manager\'s whole budget of {self.budget / 2**20:.0f} MiB; '
        'raise model_manager_args={"memory_budget_bytes": ...} or use a '
        'machine with more memory.')


_MANAGERS: dict[tuple, ModelManager] = {}
_MANAGERS_LOCK = threading.Lock()


def process_model_manager(args: Optional[dict]) -> ModelManager:
  """The process's manager for these ``model_manager_args`` (one per set of
  arguments, shared by every step that names the same ones)."""
  key = tuple(sorted((args or {}).items(), key=lambda kv: kv[0]))
  with _MANAGERS_LOCK:
    manager = _MANAGERS.get(key)
    if manager is None:
      manager = _MANAGERS[key] = ModelManager(**dict(args or {}))
    return manager
