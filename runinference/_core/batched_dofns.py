"""Whether a pipeline's runner hands a batched DoFn (one that defines only
``process_batch``) its input in batches.

Runners built on Beam's SDK harness do (the DirectRunner's FnApiRunner and
Prism, the portable runners: Flink, Spark; Dataflow), as does our Dask runner
(its ``HANDS_OVER_BATCHES``). Beam's bundle-based DirectRunner calls
``process`` per element, and so fails on such a DoFn, unless
``bundle_based_fix`` is installed: the DirectRunner switches to it when a
pipeline holds a ``TestStream``, a Pub/Sub read or write, or a
processing-time timer. Anything unknown counts as not batching.
"""
from __future__ import annotations

import sys

import apache_beam as beam
from apache_beam.transforms import userstate
from apache_beam.transforms.timeutil import TimeDomain

from . import bundle_based_fix

# (module, class) of Beam's runners on the SDK harness; looked up only in
# modules already imported (a runner object's module always is).
_HARNESS_RUNNERS = (
    ('apache_beam.runners.portability.fn_api_runner.fn_runner', 'FnApiRunner'),
    ('apache_beam.runners.portability.portable_runner', 'PortableRunner'),
    ('apache_beam.runners.dataflow.dataflow_runner', 'DataflowRunner'),
)
_SWITCHING = ('apache_beam.runners.direct.direct_runner', 'SwitchingDirectRunner')
_BUNDLE_BASED = ('apache_beam.runners.direct.direct_runner', 'BundleBasedDirectRunner')
# Transforms that send the DirectRunner to its bundle-based runner.
_STREAMING_ONLY = (
    ('apache_beam.testing.test_stream', 'TestStream'),
    ('apache_beam.io.gcp.pubsub', 'ReadFromPubSub'),
    ('apache_beam.io.gcp.pubsub', 'WriteToPubSub'),
)


def _is(obj, where: tuple) -> bool:
  module = sys.modules.get(where[0])
  cls = getattr(module, where[1], None) if module is not None else None
  return cls is not None and isinstance(obj, cls)


def _needs_bundle_based(transform) -> bool:
  """Whether ``transform`` sends the DirectRunner to its bundle-based runner."""
  if any(_is(transform, where) for where in _STREAMING_ONLY):
    return True
  if isinstance(transform, beam.ParDo) and userstate.is_stateful_dofn(transform.fn):
    _, timers = userstate.get_dofn_specs(transform.fn)
    return any(t.time_domain == TimeDomain.REAL_TIME for t in timers)
  return False


def _applied_so_far(pipeline) -> list:
  out, todo = [], list(pipeline.transforms_stack[:1])
  while todo:
    node = todo.pop()
    out.append(node.transform)
    todo.extend(node.parts)
  return out


def runner_hands_over_batches(pipeline: beam.Pipeline) -> bool:
  """Whether a batched DoFn applied now to ``pipeline`` will get batches.

  For the DirectRunner this sees the transforms applied so far: one applied
  later that sends it to its bundle-based runner (a Pub/Sub write, a
  processing-time timer) is not seen."""
  runner = pipeline.runner
  if getattr(type(runner), 'HANDS_OVER_BATCHES', False):
    return True
  if any(_is(runner, where) for where in _HARNESS_RUNNERS):
    return True
  local = _is(runner, _SWITCHING) or _is(runner, _BUNDLE_BASED)
  if local and bundle_based_fix.installed():
    return True
  if _is(runner, _SWITCHING):
    return not any(_needs_bundle_based(t) for t in _applied_so_far(pipeline)
                   if t is not None)
  return False
