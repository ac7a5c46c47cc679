"""Model refresh: watching a file pattern and turning files into
``ModelMetadata``. Knows nothing of frameworks.

Two ways a running pipeline learns of a new model:

* a ``model_metadata_pcoll`` side input (Beam's "slowly changing side input"
  pattern) -- works where the runner updates side inputs while the pipeline
  runs (Dataflow, for instance);
* ``WatchFilePattern`` / ``watch_model_pattern`` -- the inference DoFn itself
  polls the pattern with ``FileSystems.match`` every ``interval`` seconds and
  loads a newer file in a background thread while the current model keeps
  serving. This needs no side-input updates, so it works on every runner,
  including the local DirectRunner, which computes a side input completely
  before the step that reads it starts.

``WatchFilePattern`` still yields a (one-element) PCollection, so pipelines
written for Beam keep their shape: RunInference recognises it and polls; any
other consumer reads the newest model at start as a singleton.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from typing import Any, Callable, Optional

import apache_beam as beam
from apache_beam.transforms import window
from apache_beam.utils.timestamp import MAX_TIMESTAMP, Timestamp

from ..exceptions import ConfigurationError
from .watch_digest import refuse, sidecar_version, vet_candidate
from .types import ModelMetadata

_LOGGER = logging.getLogger(__name__)

# Files last updated before this process imported the module are treated as
# "already there"; kept for compatibility with Beam's utils tests.
_START_TIME_STAMP = Timestamp.now()

_WATCH_ATTR = '_runinference_watch'


def _seconds(ts) -> float:
  """Seconds since the epoch from a Timestamp, a number or a datetime."""
  if isinstance(ts, Timestamp):
    return float(ts.micros) / 1e6
  if hasattr(ts, 'timestamp'):  # datetime
    return float(ts.timestamp())
  return float(ts)


def metadata_for(path: str) -> ModelMetadata:
  """``ModelMetadata`` for a model file: the path is its id, the file name
  without extension its name (the metrics prefix)."""
  name = os.path.splitext(os.path.basename(path))[0] if path else ''
  return ModelMetadata(model_id=path, model_name=name)


@dataclasses.dataclass(frozen=True)
class WatchSpec:
  """What to watch: a glob, how often, until when (``stop``), and what was
  there at the start: ``baseline``, the ``(path, mtime, size)`` of the files
  matching when the pipeline was built (None if they could not be listed;
  then files updated at or before ``start`` count as already there).
  ``allow_pickle``: load pickle-based files that have no digest (see
  ``vet_candidate``)."""
  file_pattern: str
  interval: float
  start: float
  stop: float
  baseline: Optional[frozenset] = None
  allow_pickle: bool = False


def watch_spec_of(pcoll) -> Optional[WatchSpec]:
  """The ``WatchSpec`` of a PCollection made by ``WatchFilePattern``."""
  return getattr(pcoll, _WATCH_ATTR, None)


def _version(f) -> tuple:
  return (f.last_updated_in_seconds, f.size_in_bytes)


def list_versions(pattern: str) -> Optional[frozenset]:
  """``(path, mtime, size)`` of the files matching ``pattern`` now, or None
  when the pattern cannot be matched."""
  try:
    return frozenset((f.path, *_version(f)) for f in _match(pattern))
  except Exception:  # pylint: disable=broad-except
    return None


def _match(pattern: str) -> list:
  from apache_beam.io.filesystems import FileSystems
  return FileSystems.match([pattern])[0].metadata_list


class FilePatternPoller:
  """Decides which files of a watched pattern become the model.

  The rule: a file is offered when it is new to the pattern -- a path not
  seen before, or a seen path whose size or modification time changed --
  whatever its modification time (files moved in keep an old one). Files
  already there when the pipeline was built are not offered. When several
  are new at once the newest is offered first; if it fails to load the next
  one is offered at the next check, and once one loads the older ones are
  logged as superseded. A file that failed is offered again only when it
  changes. Nothing is skipped without a log line.
  """
  def __init__(self, spec: WatchSpec):
    self.spec = spec
    self._seen: dict[str, tuple] = {}
    self._started = False
    self._queue: list = []  # new files not offered yet, newest first
    # Files refused for want of a (matching) digest -> their FileMetadata
    # and the sidecar's version then; offered again when the sidecar changes.
    self._refused: dict[str, tuple] = {}

  def expired(self, now: Optional[float] = None) -> bool:
    return (time.time() if now is None else now) > self.spec.stop

  def _already_there(self, f) -> bool:
    baseline = self.spec.baseline
    if baseline is not None:
      return (f.path, *_version(f)) in baseline
    return f.last_updated_in_seconds <= self.spec.start

  def _matched(self) -> Optional[list]:
    """The files matching the pattern now; None (logged) if matching fails."""
    try:
      return _match(self.spec.file_pattern)
    except Exception:  # pylint: disable=broad-except
      _LOGGER.warning(
          'Could not match model file pattern %r; will retry.',
          self.spec.file_pattern, exc_info=True)
      return None

  def newest(self):
    """FileMetadata of the newest matching file not there at the start."""
    found = self._matched()
    if found is None:
      return None
    fresh = [f for f in found if not self._already_there(f)]
    for f in sorted(fresh, key=lambda f: (f.last_updated_in_seconds, f.path),
                    reverse=True):
      why = vet_candidate(f.path, self.spec.allow_pickle)
      if why is None:
        return f
      refuse(f.path, why)
    return None

  def _scan(self) -> None:
    found = self._matched()
    if found is None:
      return
    first, self._started = not self._started, True
    for f in found:
      version = _version(f)
      if self._seen.get(f.path) == version:
        continue
      self._seen[f.path] = version
      if first and self._already_there(f):
        _LOGGER.info('Model file %r was there when the pipeline started; '
                     'not loaded (the handler\'s own model serves).', f.path)
        continue
      self._queue = [q for q in self._queue if q.path != f.path] + [f]
    self._queue.sort(
        key=lambda f: (f.last_updated_in_seconds, f.path), reverse=True)

  def check(self) -> Optional[ModelMetadata]:
    """The next file to load (vetted by ``vet_candidate``), or None."""
    if self.expired():
      return None
    self._scan()
    self._recheck_refused()
    while self._queue:
      f = self._queue.pop(0)
      why = vet_candidate(f.path, self.spec.allow_pickle)
      if why is None:
        self._refused.pop(f.path, None)
        return metadata_for(f.path)
      self._refused[f.path] = (f, sidecar_version(f.path))
      refuse(f.path, why)
    return None

  def _recheck_refused(self) -> None:
    """A refused file whose sidecar digest appeared or changed is queued
    again (a changed file is queued by ``_scan``)."""
    for path, (f, sidecar) in list(self._refused.items()):
      if self._seen.get(path) != _version(f):
        del self._refused[path]  # changed or gone: _scan decides
        continue
      now = sidecar_version(path)
      if now is not None and now != sidecar:
        del self._refused[path]
        self._queue.append(f)
    self._queue.sort(
        key=lambda f: (f.last_updated_in_seconds, f.path), reverse=True)

  def loaded(self, path: str) -> None:
    for f in self._queue:
      _LOGGER.info('Model file %r is not loaded: superseded by %r, loaded '
                   'after it.', f.path, path)
    self._queue = []

  def failed(self, path: str) -> None:
    _LOGGER.warning('Model file %r failed; it is offered again when it '
                    'changes.', path)


@dataclasses.dataclass(frozen=True)
class RefreshEvent:
  """A watcher's load: ``prepared`` is what ``load`` returned (None when it
  failed with ``error``)."""
  metadata: ModelMetadata
  prepared: Any
  error: Optional[BaseException]


class ModelWatcher:
  """Polls a ``WatchSpec`` in a daemon thread and loads each newer model with
  ``load(metadata)`` there, so the current model keeps serving meanwhile.

  The serving thread calls ``take()`` (cheap when nothing happened) and
  switches to what was loaded; metrics are recorded there, since Beam
  attributes metrics to the thread running the step.
  """
  def __init__(self, spec: WatchSpec, load: Callable[[ModelMetadata], Any]):
    self.poller = FilePatternPoller(spec)
    self._load = load
    self._events: list[RefreshEvent] = []
    self._lock = threading.Lock()
    self._stop = threading.Event()
    self._thread: Optional[threading.Thread] = None
    self.pending = False  # read without the lock on the hot path

  def check_now(self) -> Optional[RefreshEvent]:
    """One synchronous poll (and load); returns its event, if any."""
    md = self.poller.check()
    if md is None:
      return None
    try:
      prepared = self._load(md)
    except Exception as exc:  # pylint: disable=broad-except
      self.poller.failed(md.model_id)
      _LOGGER.error(
          'Model refresh to %r failed; the current model keeps serving.',
          md.model_id, exc_info=True)
      return RefreshEvent(md, None, exc)
    self.poller.loaded(md.model_id)
    _LOGGER.info('Loaded model %r; switching to it.', md.model_id)
    return RefreshEvent(md, prepared, None)

  def start(self) -> None:
    if self._thread is not None:
      return
    self._thread = threading.Thread(
        target=self._run, name='runinference-model-watch', daemon=True)
    self._thread.start()

  def poll(self) -> None:
    """One check now; what it loads is handed over by the next ``take``."""
    event = self.check_now()
    if event is not None:
      with self._lock:
        self._events.append(event)
        self.pending = True

  def _run(self) -> None:
    interval = max(0.01, float(self.poller.spec.interval))
    while not self._stop.wait(interval):
      if self.poller.expired():
        return
      try:
        self.poll()
      except Exception:  # pylint: disable=broad-except  # keep watching
        _LOGGER.exception('Checking %r for a new model failed; will retry.',
                          self.poller.spec.file_pattern)

  def take(self) -> list:
    if not self.pending:
      return []
    with self._lock:
      events, self._events = self._events, []
      self.pending = False
    return events

  def stop(self) -> None:
    self._stop.set()


# -- the PTransform ------------------------------------------------------------


class _NewestModelDoFn(beam.DoFn):
  """Emits the newest matching file updated after the start (or the empty
  ``ModelMetadata('', '')``: keep the handler's own model)."""
  def __init__(self, spec: WatchSpec):
    self._spec = spec

  def process(self, unused_impulse):
    f = FilePatternPoller(self._spec).newest()
    yield metadata_for(f.path if f is not None else '')


class WatchFilePattern(beam.PTransform):
  """Watches ``file_pattern`` for new model files.

  Give its output to ``RunInference(model_metadata_pcoll=...)`` (or use
  ``RunInference(watch_model_pattern=...)``): RunInference then checks the
  pattern every ``interval`` seconds from each worker and switches to the
  file new to the pattern -- loading it and checking it with a warm-up call
  while the current model keeps serving. Files already there when the
  pipeline was built are ignored: the handler's own model serves until a new
  file appears (see docs/refresh.md for the exact rule).

  As a PCollection (for other consumers), it holds one ``ModelMetadata``: the
  newest such file when the pipeline starts, or ``ModelMetadata('', '')``.

  Args:
    file_pattern: a glob on any Beam filesystem (local path, ``gs://``, ...).
    interval: seconds between checks (default 360).
    stop_timestamp: no checks after this time (a ``Timestamp`` or seconds
      since the epoch).
    allow_pickle: load files that may be pickles (anything but ``.skops``,
      ``.safetensors``, ``.onnx``, ``.json``, ...) without a digest. By
      default such a file is loaded only when a sidecar ``<file>.sha256``
      holding its SHA-256 lies beside it; otherwise it is refused with a
      warning naming it (a pickle runs code: see docs/security.md).

  Notes: give each model version a new file name; write the file elsewhere
  and move it in, so that a half-written file is not picked up (one that
  fails to load is retried when it changes, and the current model keeps
  serving meanwhile).
  """
  def __init__(
      self, file_pattern: str, interval: float = 360,
      stop_timestamp=MAX_TIMESTAMP, *, allow_pickle: bool = False):
    super().__init__()
    if not file_pattern or not isinstance(file_pattern, str):
      raise ConfigurationError(
          f'file_pattern must be a non-empty glob, got {file_pattern!r}.')
    if not float(interval) > 0:
      raise ConfigurationError(f'interval must be > 0 seconds, got {interval!r}.')
    self.file_pattern = file_pattern
    self.interval = interval
    self.stop_timestamp = stop_timestamp
    self.allow_pickle = bool(allow_pickle)
    self._start = time.time()
    self._baseline = list_versions(file_pattern)

  @property
  def spec(self) -> WatchSpec:
    stop = self.stop_timestamp
    return WatchSpec(
        self.file_pattern, float(self.interval), self._start,
        float('inf') if stop is None or stop == MAX_TIMESTAMP else
        _seconds(stop), self._baseline, self.allow_pickle)

  def expand(self, pbegin):
    spec = self.spec
    out = (
        pbegin
        | 'Impulse' >> beam.Impulse()
        | 'NewestModel' >> beam.ParDo(_NewestModelDoFn(spec)).with_output_types(
            ModelMetadata)
        | 'ApplyGlobalWindow' >> beam.WindowInto(window.GlobalWindows()))
    setattr(out, _WATCH_ATTR, spec)
    return out
