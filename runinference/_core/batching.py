"""Cutting a stream of elements into batches: size, weight, length buckets,
adaptive sizing and ragged (mixed-shape) grouping. Knows nothing of models."""
from __future__ import annotations

import bisect
import collections
import dataclasses
from typing import Any, Callable, Hashable, Mapping, Optional, Sequence

from ..exceptions import ConfigurationError
from ..exceptions import ElementFunctionError

DEFAULT_MAX_BATCH_SIZE = 10000
DEFAULT_BUCKET_BOUNDARIES = (16, 32, 64, 128, 256, 512)
# BatchElements tuning knobs we accept (and honour where they make sense) so
# that handlers written for the reference keep working.
_PASSTHROUGH_KEYS = frozenset({
    'target_batch_overhead', 'target_batch_duration_secs',
    'target_batch_duration_secs_including_fixed_cost', 'variance', 'clock',
    'record_metrics'
})


def check_required_pairs(max_batch_weight, element_size_fn, length_fn,
                         bucket_boundaries) -> None:
  """The options that need another: raised when a handler is built."""
  if max_batch_weight is not None and element_size_fn is None:
    raise ConfigurationError(
        'max_batch_weight requires element_size_fn, the function that gives '
        'each element its weight (e.g. element_size_fn=len).')
  if bucket_boundaries is not None and length_fn is None:
    raise ConfigurationError(
        'batch_bucket_boundaries requires batch_length_fn, the function '
        'that gives each element its length (e.g. batch_length_fn=len).')


@dataclasses.dataclass
class BatchConfig:
  """Validated batching settings (from ``ModelHandler.batch_elements_kwargs``)."""
  min_batch_size: int = 1
  max_batch_size: int = DEFAULT_MAX_BATCH_SIZE
  max_batch_duration_secs: Optional[float] = None
  max_batch_weight: Optional[int] = None
  element_size_fn: Optional[Callable[[Any], int]] = None
  length_fn: Optional[Callable[[Any], int]] = None
  bucket_boundaries: Optional[Sequence[int]] = None
  target_batch_duration_secs: float = 1.0
  extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)

  @classmethod
  def from_kwargs(cls, kwargs: Mapping[str, Any]) -> 'BatchConfig':
    kwargs = dict(kwargs or {})
    extra = {k: kwargs.pop(k) for k in list(kwargs) if k in _PASSTHROUGH_KEYS}
    # The reference's ModelHandler spells these batch_length_fn /
    # batch_bucket_boundaries in __init__ but length_fn / bucket_boundaries in
    # batch_elements_kwargs; accept both.
    for alias, name in (('batch_length_fn', 'length_fn'),
                        ('batch_bucket_boundaries', 'bucket_boundaries')):
      if alias in kwargs:
        kwargs[name] = kwargs.pop(alias)
    known = {f.name for f in dataclasses.fields(cls)} - {'extra'}
    unknown = sorted(set(kwargs) - known)
    if unknown:
      raise ConfigurationError(
          f'Unknown batching option(s) {unknown} in batch_elements_kwargs(). '
          f'Valid options: {sorted(known | _PASSTHROUGH_KEYS)}.')
    cfg = cls(**{k: v for k, v in kwargs.items() if v is not None}, extra=extra)
    if 'target_batch_duration_secs' in extra:
      cfg.target_batch_duration_secs = float(
          extra['target_batch_duration_secs'])
    cfg.validate()
    return cfg

  def validate(self) -> None:
    def positive_int(name):
      value = getattr(self, name)
      if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(
            f'{name} must be a positive integer, got {value!r}. '
            f'Set it in the model handler, e.g. {name}=32.')

    positive_int('min_batch_size')
    positive_int('max_batch_size')
    if self.min_batch_size > self.max_batch_size:
      raise ConfigurationError(
          f'min_batch_size ({self.min_batch_size}) is larger than '
          f'max_batch_size ({self.max_batch_size}); lower min_batch_size or '
          'raise max_batch_size.')
    if self.max_batch_duration_secs is not None and not (
        self.max_batch_duration_secs > 0):
      raise ConfigurationError(
          'max_batch_duration_secs must be > 0 seconds, got '
          f'{self.max_batch_duration_secs!r}.')
    check_required_pairs(self.max_batch_weight, self.element_size_fn,
                         self.length_fn, self.bucket_boundaries)
    if self.max_batch_weight is not None:
      positive_int('max_batch_weight')
    for name in ('element_size_fn', 'length_fn'):
      fn = getattr(self, name)
      if fn is not None and not callable(fn):
        raise ConfigurationError(f'{name} must be callable, got {fn!r}.')
    if self.bucket_boundaries is not None:
      b = list(self.bucket_boundaries)
      if not b or any(x <= 0 for x in b) or b != sorted(b):
        raise ConfigurationError(
            'batch_bucket_boundaries must be a non-empty sorted list of '
            f'positive numbers, got {self.bucket_boundaries!r}.')
    elif self.length_fn is not None:
      self.bucket_boundaries = DEFAULT_BUCKET_BOUNDARIES

  @property
  def fixed_size(self) -> bool:
    return self.min_batch_size == self.max_batch_size

  def batch_elements_kwargs(self) -> dict:
    """Arguments for ``beam.BatchElements`` (the cross-bundle streaming path)."""
    kw: dict[str, Any] = dict(
        min_batch_size=self.min_batch_size,
        max_batch_size=self.max_batch_size,
        max_batch_duration_secs=self.max_batch_duration_secs)
    if self.length_fn is not None:
      kw.update(
          length_fn=self.length_fn,
          bucket_boundaries=list(self.bucket_boundaries or ()))
    kw.update({k: v for k, v in self.extra.items()})
    return kw


class SizeEstimator:
  """Adapts the batch size between min and max.

  Each model call's (batch size, seconds) is kept; once calls of two sizes
  are known, a least-squares line ``seconds = fixed + per_element * size``
  gives the size whose per-element part takes the target duration (the
  fixed part -- a model load, a request's round trip -- does not count, as
  in Beam's ``BatchElements``), approached by at most 8x and at least 0.5x
  a step. Before that (as Beam's ``BatchElements`` starts), a full batch
  under the target doubles, one over twice the target halves, and one over
  the target at the minimum size doubles (to learn the per-element part).
  """
  _MAX_GROWTH = 8.0
  _HISTORY = 32

  def __init__(self, cfg: BatchConfig):
    self._min = cfg.min_batch_size
    self._max = cfg.max_batch_size
    self._target_secs = cfg.target_batch_duration_secs
    self._adaptive = not cfg.fixed_size
    self.size = self._max if not self._adaptive else max(self._min, 1)
    self._seen: collections.deque = collections.deque(maxlen=self._HISTORY)

  def cap(self, ceiling: int) -> None:
    """Never grow past ``ceiling`` again (a batch of more ran out of
    memory)."""
    self._max = max(1, min(self._max, ceiling))
    self._min = min(self._min, self._max)
    self.size = min(self.size, self._max)

  def observe(self, batch_len: int, seconds: float) -> None:
    if not self._adaptive:
      return
    self._seen.append((batch_len, max(seconds, 0.0)))
    per_element = self._per_element_secs()
    if per_element is not None:
      want = self._target_secs / per_element if per_element > 0 else self._max
      want = min(want, self.size * self._MAX_GROWTH)
      want = max(want, self.size / 2)
      self.size = int(min(self._max, max(self._min, want)))
    elif seconds > 2 * self._target_secs and self.size > self._min:
      self.size = max(self._min, self.size // 2)
    elif batch_len >= self.size and seconds < self._target_secs:
      self.size = min(self._max, self.size * 2)
    elif batch_len >= self.size and self.size == self._min:
      # Over the target at the minimum size: try a larger batch, to tell a
      # fixed cost (which larger batches amortize) from a per-element one.
      self.size = min(self._max, self.size * 2)

  def _per_element_secs(self) -> Optional[float]:
    """The slope of seconds over batch size, or None while every call so
    far had the same size."""
    line = fit_line(self._seen)
    return None if line is None else line[1]


def fit_line(points) -> Optional[tuple[float, float]]:
  """Least squares ``y = intercept + slope * x`` over ``(x, y)`` points:
  ``(intercept, slope)``, or None while every x is the same."""
  n = len(points)
  if not n:
    return None
  mean_x = sum(x for x, _ in points) / n
  var = sum((x - mean_x) ** 2 for x, _ in points)
  if var == 0:
    return None
  mean_y = sum(y for _, y in points) / n
  slope = sum((x - mean_x) * (y - mean_y) for x, y in points) / var
  return mean_y - slope * mean_x, slope


class Batcher:
  """Buffers items and hands out batches.

  ``add(item, value)`` stores ``item`` (whatever the caller needs back) and
  uses ``value`` (the model input) for weight and length; it returns a batch
  when one is complete. Items with different length buckets never share a
  batch. ``drain()`` returns what is left.
  """
  def __init__(self, cfg: BatchConfig):
    self.cfg = cfg
    self.sizer = SizeEstimator(cfg)
    # As Beam's BatchElements: with max_batch_weight, element_size_fn gives
    # each element's weight; without it, each element's contribution to the
    # batch size (min/max_batch_size then count those units).
    self._size_fn = cfg.element_size_fn if cfg.max_batch_weight else None
    self._count_fn = None if cfg.max_batch_weight else cfg.element_size_fn
    self._max_weight = cfg.max_batch_weight
    self._length_fn = cfg.length_fn
    self._bounds = list(cfg.bucket_boundaries or ())
    self._buffers: dict[Hashable, list] = {}
    self._weights: dict[Hashable, int] = {}
    self._sizes: dict[Hashable, Any] = {}
    # Plain size-only batching: callers may append to ``buffer`` directly and
    # cut a batch when ``len(buffer) >= sizer.size`` (the hot path).
    self.simple = (self._size_fn is None and self._count_fn is None and
                   self._length_fn is None)
    self.buffer: list = []

  def __len__(self) -> int:
    return len(self.buffer) + sum(len(b) for b in self._buffers.values())

  @staticmethod
  def weigh(fn: Callable[[Any], Any], value) -> Any:
    """``fn(value)`` for a user's size or length function; its failure is
    raised as ``ElementFunctionError``."""
    try:
      return fn(value)
    except Exception as exc:  # pylint: disable=broad-except
      name = getattr(fn, '__name__', type(fn).__name__)
      raise ElementFunctionError(
          f'{name}({value!r:.100}) raised {exc!r}; the element fails on its '
          'own.') from exc

  def _bucket(self, value) -> Hashable:
    if self._length_fn is None:
      return None
    return bisect.bisect_right(self._bounds, self.weigh(self._length_fn, value))

  def add(self, item, value) -> Optional[list]:
    """Adds ``item``; returns a full batch, or None. Raises
    ``ElementFunctionError`` (adding nothing) when a size/length fn fails."""
    if self.simple:
      plain = self.buffer
      plain.append(item)
      if len(plain) >= self.sizer.size:
        self.buffer = []
        return plain
      return None
    key = self._bucket(value)
    weight = 0 if self._size_fn is None else self.weigh(self._size_fn, value)
    size = 1 if self._count_fn is None else self.weigh(self._count_fn, value)
    buf = self._buffers.get(key)
    if buf is None:
      buf = self._buffers[key] = []
      self._weights[key] = 0
      self._sizes[key] = 0
    if self._max_weight is not None:
      if buf and self._weights[key] + weight > self._max_weight:
        full = buf
        self._buffers[key] = [item]
        self._weights[key] = weight
        self._sizes[key] = size
        return full
      self._weights[key] += weight
    buf.append(item)
    self._sizes[key] += size
    if self._sizes[key] >= self.sizer.size:
      del self._buffers[key]
      return buf
    return None

  def measure(self, values: list) -> Any:
    """The size of a batch of model inputs in the units ``sizer`` counts:
    its length, or the sum of element_size_fn without max_batch_weight."""
    if self._count_fn is None:
      return len(values)
    return sum(self.weigh(self._count_fn, v) for v in values)

  def drain(self) -> list[list]:
    batches = [b for b in self._buffers.values() if b]
    if self.buffer:
      batches.append(self.buffer)
      self.buffer = []
    self._buffers.clear()
    self._weights.clear()
    self._sizes.clear()
    return batches


def shape_key(x) -> Hashable:
  """What must match for two model inputs to stack into one batch."""
  shape = getattr(x, 'shape', None)
  if shape is not None:
    try:
      return (type(x).__name__, tuple(shape))
    except TypeError:
      return (type(x).__name__, None)
  if isinstance(x, dict):
    return tuple((k, shape_key(v)) for k, v in sorted(x.items(), key=str))
  if isinstance(x, (tuple, list)):
    return (type(x).__name__, len(x), tuple(shape_key(v) for v in x[:64]))
  return type(x).__name__


def group_by_shape(values: Sequence) -> list[list[int]]:
  """Indices of ``values`` grouped by shape, groups in first-seen order."""
  groups: dict[Hashable, list[int]] = {}
  for i, v in enumerate(values):
    groups.setdefault(shape_key(v), []).append(i)
  return list(groups.values())
