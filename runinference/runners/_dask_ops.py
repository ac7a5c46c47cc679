"""Beam primitives as Dask bag operations that lose nothing.

Every bag holds ``WindowedValue``s, so timestamps and windows survive from one
step to the next. A ParDo runs each Dask partition as one bundle and returns
its windowed values per output tag, collected *after* ``finish_bundle``; each
output PCollection is the bag of its own tag. Side inputs are computed once, as a
dependency of the tasks that read them. See docs/dask_runner_fixes.md.
"""
from __future__ import annotations

import dataclasses
import functools
import itertools
import logging
import math
import threading
import typing as t

import apache_beam as beam
import dask
import dask.bag as db

from .._core.gc_pause import gc_paused
from .._core.windowing import in_global_window
from ..exceptions import ConfigurationError
from . import _dask_batches
from apache_beam import coders, typehints
from apache_beam.internal import pickler
from apache_beam.pipeline import AppliedPTransform
from apache_beam.runners.common import (DoFnContext, DoFnInvoker,
                                        DoFnSignature, Receiver,
                                        _OutputHandler)
from apache_beam.runners.dask.overrides import (_Create, _Flatten,
                                                _GroupByKeyOnly, _Read,
                                                _Reshuffle)
from apache_beam.transforms.sideinputs import SideInputMap
from apache_beam.transforms.window import GlobalWindows
from apache_beam.utils.windowed_value import WindowedValue
from ..exceptions import UnsupportedOnDaskError  # noqa: F401  (re-exported)

DEFAULT_PARTITION_SIZE = 128
#: bag_kwargs key (set by the runner): the fewest partitions a Create makes
#: without --dask_npartitions/--dask_partition_size (2 per worker thread).
MIN_PARTITIONS = 'min_partitions'


# -- bundles --------------------------------------------------------------
class _ListReceiver(Receiver):
  """Appends each windowed value to its output tag's list."""
  def __init__(self, sink: list):
    self.receive = sink.append  # one C call per output element


class _BundleReceivers(dict):
  """One receiver per output tag, each writing into that tag's list of
  ``outputs`` (per bundle)."""
  def __init__(self, outputs: dict):
    super().__init__()
    self.outputs = outputs

  def __missing__(self, tag):
    receiver = self[tag] = _ListReceiver(self.outputs.setdefault(tag, []))
    return receiver


@dataclasses.dataclass
class ParDoSpec:
  """Everything a worker needs to run one ParDo bundle (picklable)."""
  run_id: str
  label: str
  serialized_fn: bytes
  args: list
  kwargs: dict
  window_fn: t.Any
  side_views: list  # [(view_class, view_options)], one per side input


class _DoFnPool:
  """Set-up DoFn instances of one run, reused across bundles in a worker
  process (``setup`` once per instance, as Dataflow and Flink do). An
  instance serves one bundle at a time; a bundle that fails discards its
  instance (torn down). Instances of an earlier run are torn down when a
  bundle of another run arrives, the rest by ``teardown_run`` at the end."""
  def __init__(self):
    self._lock = threading.Lock()
    self._idle: dict = {}  # (run_id, label) -> [DoFn]
    self._run_id = None

  def take(self, spec: ParDoSpec):
    """(DoFn, needs_setup)."""
    stale = []
    with self._lock:
      if self._run_id != spec.run_id:
        stale = self._pop_all(lambda run_id: run_id != spec.run_id)
        self._run_id = spec.run_id
      idle = self._idle.get((spec.run_id, spec.label))
      fn = idle.pop() if idle else None
    _teardown(stale)
    if fn is not None:
      return fn, False
    return pickler.loads(spec.serialized_fn), True

  def give_back(self, spec: ParDoSpec, fn) -> None:
    with self._lock:
      self._idle.setdefault((spec.run_id, spec.label), []).append(fn)

  def teardown_run(self, run_id: str) -> int:
    with self._lock:
      done = self._pop_all(lambda r: r == run_id)
    _teardown(done)
    return len(done)

  def _pop_all(self, which) -> list:
    keys = [k for k in self._idle if which(k[0])]
    return [fn for k in keys for fn in self._idle.pop(k)]


def _teardown(fns) -> None:
  for fn in fns:
    fn.teardown()


_POOL = _DoFnPool()


def teardown_run(run_id: str) -> int:
  """Tears down this process's pooled DoFns of a run (run on each worker)."""
  return _POOL.teardown_run(run_id)


def run_bundle(elements, spec: ParDoSpec, *side_values) -> dict:
  """Runs one Dask partition as a Beam bundle; returns each output tag's
  windowed values."""
  outputs: dict = {}
  receivers = _BundleReceivers(outputs)
  finalizer = beam.DoFn.BundleFinalizerParam()
  side_inputs = [
      SideInputMap(view_class, view_options, values)
      for (view_class, view_options), values in zip(spec.side_views,
                                                     side_values)
  ]
  handler = _OutputHandler(
      window_fn=spec.window_fn,
      main_receivers=receivers[None],
      tagged_receivers=receivers,
      per_element_output_counter=None,
      output_batch_converter=None,
      process_yields_batches=False,
      # check_supported refused DoFns that output batches.
      process_batch_yields_elements=True)
  fn, needs_setup = _POOL.take(spec)
  batched = _dask_batches.takes_batches(fn)
  invoker = DoFnInvoker.create_invoker(
      DoFnSignature(fn),
      handler,
      context=DoFnContext(spec.label, state=None),
      side_inputs=side_inputs,
      input_args=spec.args,
      input_kwargs=spec.kwargs,
      user_state_context=None,
      bundle_finalizer_param=finalizer)
  if needs_setup:
    invoker.invoke_setup()
  try:
    # A bundle is a whole partition held in lists (not streamed through
    # fused stages as on the DirectRunner): with the cyclic GC on, every
    # collection rescans all of it (45% of a worker's time at 24k rows per
    # partition). Reference counting still frees everything.
    with gc_paused():
      invoker.invoke_start_bundle()
      if batched:
        for batch in _dask_batches.as_batches(elements, fn):
          invoker.invoke_process_batch(batch)
      else:
        for windowed_value in elements:
          invoker.invoke_process(windowed_value)
      # Outputs are read only after finish_bundle: what it emits is kept.
      invoker.invoke_finish_bundle()
  except BaseException:
    # The failed DoFn is not given back: torn down here (its setup may have
    # run under another invoker, whose setup contexts this one lacks), and
    # the bundle's own error is what the run reports.
    try:
      fn.teardown()
    except Exception:  # pylint: disable=broad-except
      logging.getLogger(__name__).warning(
          'teardown of %s after a failed bundle failed', spec.label,
          exc_info=True)
    raise
  _POOL.give_back(spec, fn)
  finalizer.finalize_bundle()
  return outputs


def _select(outputs: dict, tag) -> list:
  return outputs.get(tag, [])


def _concat(*parts) -> list:
  return list(itertools.chain.from_iterable(parts))


def materialize(bag: db.Bag):
  """The whole bag as one list, computed once, as a task dependency."""
  return dask.delayed(_concat)(*bag.to_delayed(optimize_graph=False))


def count_partition(elements) -> list:
  return [sum(1 for _ in elements)]


# -- operations -----------------------------------------------------------
@dataclasses.dataclass
class Op:
  """One applied Beam primitive; ``apply`` returns one bag per output tag."""
  applied: AppliedPTransform
  bag_kwargs: dict = dataclasses.field(default_factory=dict)
  run_id: str = ''

  def output_tags(self) -> list:
    return list(self.applied.outputs)

  def single(self, bag: db.Bag) -> dict:
    return {tag: bag for tag in self.output_tags()}

  def apply(self, inputs: list, side_bags: list) -> dict:
    raise NotImplementedError


def _partition_kwargs(bag_kwargs: dict, n_items: int) -> dict:
  npartitions = bag_kwargs.get('npartitions')
  partition_size = bag_kwargs.get('partition_size')
  if npartitions and partition_size:
    raise ConfigurationError(
        'Give either --dask_npartitions or --dask_partition_size, not both '
        f'(got npartitions={npartitions}, partition_size={partition_size}).')
  if npartitions:
    return {'npartitions': npartitions}
  if partition_size:
    return {'partition_size': partition_size}
  size = max(DEFAULT_PARTITION_SIZE, math.ceil(math.sqrt(max(n_items, 1)) / 10))
  # Every worker thread gets partitions even when a few items fan out into
  # many (Create(range(16)) | FlatMap(make rows)): one partition would be
  # one worker's work.
  spread = min(n_items, bag_kwargs.get(MIN_PARTITIONS, 1))
  if math.ceil(n_items / size) < spread:
    return {'npartitions': spread}
  return {'partition_size': size}


class CreateOp(Op):
  def apply(self, inputs, side_bags):
    items = list(t.cast(_Create, self.applied.transform).values)
    if not items:
      return self.single(db.from_sequence([], npartitions=1))
    kwargs = _partition_kwargs(self.bag_kwargs, len(items))
    return self.single(
        db.from_sequence(items, **kwargs).map(in_global_window))


class ImpulseOp(Op):
  def apply(self, inputs, side_bags):
    return self.single(
        db.from_sequence([b''], npartitions=1).map(in_global_window))


def _read_split(splits) -> list:
  out = []
  for split in splits:
    tracker = split.source.get_range_tracker(split.start_position,
                                             split.stop_position)
    out.extend(in_global_window(v) for v in split.source.read(tracker))
  return out


class ReadOp(Op):
  """A bounded source, split at graph time, one split per partition."""
  def apply(self, inputs, side_bags):
    source = t.cast(_Read, self.applied.transform).source
    if not isinstance(source, beam.io.iobase.BoundedSource):
      raise UnsupportedOnDaskError(
          f'Step {self.applied.full_label!r} reads the unbounded source '
          f'{type(source).__name__}; the Dask runner runs bounded pipelines '
          'only. Use the DirectRunner (streaming) or a Flink/Dataflow runner.')
    splits = list(source.split(desired_bundle_size=64 << 20))
    return self.single(
        db.from_sequence(splits, npartitions=max(len(splits), 1))
        .map_partitions(_read_split))


def _window_fn(pcoll):
  try:
    return pcoll.windowing.windowfn
  except AttributeError:  # the output of a source override (_Read): global
    return GlobalWindows()


class ParDoOp(Op):
  def apply(self, inputs, side_bags):
    transform = t.cast(beam.ParDo, self.applied.transform)
    signature = DoFnSignature(transform.fn)
    if signature.is_stateful_dofn() or signature.is_splittable_dofn():
      raise UnsupportedOnDaskError(
          f'Step {self.applied.full_label!r} uses state, timers or splitting '
          '(e.g. RunInference with max_batch_duration_secs, GroupIntoBatches);'
          ' the Dask runner runs stateless DoFns only. Drop that option or '
          'run this pipeline on the DirectRunner, Flink or Dataflow.')
    _dask_batches.check_supported(transform.fn, self.applied.full_label)
    main_input = next(iter(self.applied.main_inputs.values()))
    spec = ParDoSpec(
        run_id=self.run_id,
        label=self.applied.full_label,
        serialized_fn=pickler.dumps(transform.fn),
        args=list(transform.args or []),
        kwargs=dict(transform.kwargs or {}),
        window_fn=_window_fn(main_input),
        side_views=[(type(si), si._view_options())
                    for si in self.applied.side_inputs])
    outputs = inputs[0].map_partitions(run_bundle, spec,
                                       *[materialize(b) for b in side_bags])
    return {
        tag: outputs.map_partitions(_select, tag)
        for tag in self.output_tags()
    }


def key_coder(applied: AppliedPTransform) -> coders.Coder:
  """The deterministic coder of a keyed step's keys (same bytes in every
  worker process)."""
  element_type = next(iter(applied.main_inputs.values())).element_type
  try:
    key_type, _ = typehints.trivial_inference.key_value_types(element_type)
    coder = coders.registry.get_coder(key_type)
    return coder.as_deterministic_coder(applied.full_label)
  except (TypeError, ValueError):
    return coders.FastPrimitivesCoder().as_deterministic_coder(
        applied.full_label)


def _encoded_key(coder: coders.Coder, wv: WindowedValue) -> bytes:
  return coder.encode(wv.value[0])


def _grouped(group) -> WindowedValue:
  _, wvs = group
  key = wvs[0].value[0]
  # Values are the WindowedValues of ReifyWindows: GroupAlsoByWindow (a
  # ParDo run by ParDoOp) groups them by window.
  return in_global_window((key, [wv.value[1] for wv in wvs]))


class GroupByKeyOp(Op):
  """Groups by the deterministic encoding of the key (same in every worker
  process), keeping every value's window for GroupAlsoByWindow."""
  def apply(self, inputs, side_bags):
    grouper = functools.partial(_encoded_key, key_coder(self.applied))
    return self.single(inputs[0].groupby(grouper, shuffle='tasks').map(_grouped))


class FlattenOp(Op):
  def apply(self, inputs, side_bags):
    if not inputs:
      return self.single(db.from_sequence([], npartitions=1))
    return self.single(db.concat(inputs))


class PassThroughOp(Op):
  def apply(self, inputs, side_bags):
    return self.single(inputs[0])


_TRANSLATIONS: list = [
    (_Create, CreateOp),
    (beam.Impulse, ImpulseOp),
    (_Read, ReadOp),
    (beam.ParDo, ParDoOp),  # also WindowInto and GroupAlsoByWindow
    (_GroupByKeyOnly, GroupByKeyOp),
    (_Flatten, FlattenOp),
    (_Reshuffle, PassThroughOp),
]


def translate(applied: AppliedPTransform, bag_kwargs: dict,
              run_id: str = '') -> Op:
  """The bag operation for one leaf transform; unknown ones are an error
  (Beam's runner turns them into a silent no-op)."""
  for transform_type, op_type in _TRANSLATIONS:
    if isinstance(applied.transform, transform_type):
      return op_type(applied, bag_kwargs, run_id)
  raise UnsupportedOnDaskError(
      f'Step {applied.full_label!r} ({type(applied.transform).__name__}) has '
      'no Dask translation. Supported primitives: Create, Impulse, bounded '
      'Read, ParDo (Map, FlatMap, WindowInto), GroupByKey, Flatten, '
      'Reshuffle.')
