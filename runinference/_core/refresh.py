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

import logging
import os
import threading
import time
from typing import Any, Callable, NamedTuple, Optional

import apache_beam as beam
from apache_beam.transforms import window
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec
from apache_beam.utils.timestamp import MAX_TIMESTAMP, Timestamp

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


class WatchSpec(NamedTuple):
  """What to watch: a glob, how often, from when (files updated at or before
  ``start`` are ignored) and until when."""
  file_pattern: str
  interval: float
  start: float
  stop: float


def watch_spec_of(pcoll) -> Optional[WatchSpec]:
  """The ``WatchSpec`` of a PCollection made by ``WatchFilePattern``."""
  return getattr(pcoll, _WATCH_ATTR, None)


def refresh_target(metadata) -> Optional[tuple]:
  """``(path, model_id, model_name)`` to switch to from a side input's
  value, or None for "keep the current model" (no value, an empty side input,
  an empty model_id). A list of KeyModelPathMapping (multi-model
  KeyedModelHandler) is passed on whole as the path."""
  if metadata is None or isinstance(metadata, beam.pvalue.EmptySideInput):
    return None
  if hasattr(metadata, 'model_id') and hasattr(metadata, 'model_name'):
    if not metadata.model_id:
      return None
    return metadata.model_id, metadata.model_id, metadata.model_name or ''
  if isinstance(metadata, (list, tuple)) and metadata and all(
      hasattr(m, 'update_path') for m in metadata):
    return list(metadata), repr(list(metadata)), ''
  raise TypeError(
      'model_metadata_pcoll must hold ModelMetadata (or, for a multi-model '
      'KeyedModelHandler, lists of KeyModelPathMapping); got '
      f'{type(metadata).__name__}: {metadata!r:.200}.')


class FilePatternPoller:
  """Finds the newest file matching a pattern that is newer than ``start``.

  ``check()`` returns its ``ModelMetadata`` when it differs from the last one
  returned, else None. A file is offered once; one reported as failing to
  load (``failed``) is offered again only when its size or modification time
  changes (e.g. it was still being written).
  """
  def __init__(self, spec: WatchSpec):
    self.spec = spec
    self._used: set = set()
    self._failed: dict = {}
    self._last: Optional[str] = None
    self._pending: Optional[tuple] = None

  def expired(self, now: Optional[float] = None) -> bool:
    return (time.time() if now is None else now) > self.spec.stop

  def newest(self):
    """FileMetadata of the newest matching file updated after ``start``."""
    from apache_beam.io.filesystems import FileSystems
    try:
      found = FileSystems.match([self.spec.file_pattern])[0].metadata_list
    except Exception:  # pylint: disable=broad-except
      _LOGGER.warning(
          'Could not match model file pattern %r; will retry.',
          self.spec.file_pattern, exc_info=True)
      return None
    fresh = [f for f in found if f.last_updated_in_seconds > self.spec.start]
    if not fresh:
      return None
    return max(fresh, key=lambda f: (f.last_updated_in_seconds, f.path))

  def check(self) -> Optional[ModelMetadata]:
    if self.expired():
      return None
    f = self.newest()
    if f is None or f.path == self._last or f.path in self._used:
      return None
    version = (f.last_updated_in_seconds, f.size_in_bytes)
    if self._failed.get(f.path) == version:
      return None
    self._last = f.path
    self._pending = (f.path, version)
    return metadata_for(f.path)

  def loaded(self, path: str) -> None:
    self._used.add(path)
    self._failed.pop(path, None)

  def failed(self, path: str) -> None:
    if self._pending and self._pending[0] == path:
      self._failed[path] = self._pending[1]
    self._last = None


class RefreshEvent(NamedTuple):
  metadata: ModelMetadata
  prepared: Any  # what ``load`` returned, None when it failed
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
          'Model refresh to %r failed to load; the current model keeps '
          'serving.', md.model_id, exc_info=True)
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
  newest file updated after the pipeline was built -- loading it while the
  current model keeps serving. Files already there at the start are ignored:
  the handler's own model serves until a newer file appears.

  As a PCollection (for other consumers), it holds one ``ModelMetadata``: the
  newest such file when the pipeline starts, or ``ModelMetadata('', '')``.

  Args:
    file_pattern: a glob on any Beam filesystem (local path, ``gs://``, ...).
    interval: seconds between checks (default 360).
    stop_timestamp: no checks after this time (a ``Timestamp`` or seconds
      since the epoch).

  Notes: give each model version a new file name (a file name already used is
  not loaded again); write the file elsewhere and move it in, so that a
  half-written file is not picked up (one that fails to load is retried when
  it changes, and the current model keeps serving meanwhile).
  """
  def __init__(
      self, file_pattern: str, interval: float = 360,
      stop_timestamp=MAX_TIMESTAMP):
    super().__init__()
    if not file_pattern or not isinstance(file_pattern, str):
      raise ValueError(
          f'file_pattern must be a non-empty glob, got {file_pattern!r}.')
    if not float(interval) > 0:
      raise ValueError(f'interval must be > 0 seconds, got {interval!r}.')
    self.file_pattern = file_pattern
    self.interval = interval
    self.stop_timestamp = stop_timestamp
    self._start = time.time()

  @property
  def spec(self) -> WatchSpec:
    stop = self.stop_timestamp
    return WatchSpec(
        self.file_pattern, float(self.interval), self._start,
        float('inf') if stop is None or stop == MAX_TIMESTAMP else
        _seconds(stop))

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


# -- Beam-compatible helpers (apache_beam.ml.inference.utils) --------------------


class _GetLatestFileByTimeStamp(beam.DoFn):
  """Keyed by path: ``(path, FileMetadata)`` in, ``(path, ModelMetadata)`` out
  when the file is newer than anything seen for that key (and than the start),
  else ``('', ModelMetadata('', ''))``."""
  LATEST = ReadModifyWriteStateSpec('latest', beam.coders.PickleCoder())

  def process(self, element, latest=beam.DoFn.StateParam(LATEST)):
    _, file_metadata = element
    seen = latest.read()
    if seen is None:
      seen = _START_TIME_STAMP
    updated = file_metadata.last_updated_in_seconds
    path = ''
    if updated > seen:
      latest.write(updated)
      path = file_metadata.path
    yield path, metadata_for(path)


class _ConvertIterToSingleton(beam.DoFn):
  """Keyed: passes the value on the first time a key is seen, drops repeats."""
  SEEN = ReadModifyWriteStateSpec('seen', beam.coders.BooleanCoder())

  def process(self, element, seen=beam.DoFn.StateParam(SEEN)):
    if not seen.read():
      seen.write(True)
      yield element[1]
