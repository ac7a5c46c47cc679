"""Which runners hand a batched DoFn its input in batches (pipeline-free)."""
import apache_beam as beam
from apache_beam.runners.direct.direct_runner import BundleBasedDirectRunner
from apache_beam.runners.runner import PipelineRunner
from apache_beam.testing import test_stream
from apache_beam.transforms import userstate
from apache_beam.transforms.timeutil import TimeDomain

from runinference._core.batched_dofns import runner_hands_over_batches


class _RealTimeTimer(beam.DoFn):
  TIMER = userstate.TimerSpec('t', TimeDomain.REAL_TIME)

  def process(self, kv, timer=beam.DoFn.TimerParam(TIMER)):
    yield kv

  @userstate.on_timer(TIMER)
  def fired(self):
    return []


class _SomeRunner(PipelineRunner):
  """A runner this module knows nothing about."""


def test_the_direct_runner_batches_unless_it_will_switch_to_bundle_based():
  p = beam.Pipeline()
  _ = p | beam.Create([1]) | beam.Map(str)
  assert runner_hands_over_batches(p)
  streaming = beam.Pipeline()
  _ = streaming | test_stream.TestStream().add_elements([1]) | beam.Map(str)
  assert not runner_hands_over_batches(streaming)
  timers = beam.Pipeline()
  _ = timers | beam.Create([('k', 1)]) | beam.ParDo(_RealTimeTimer())
  assert not runner_hands_over_batches(timers)


def test_runners_that_call_process_per_element_or_are_unknown_do_not():
  assert not runner_hands_over_batches(beam.Pipeline(runner=BundleBasedDirectRunner()))
  assert not runner_hands_over_batches(beam.Pipeline(runner=_SomeRunner()))


def test_sdk_harness_runners_and_our_dask_runner_do():
  from apache_beam.runners.portability.fn_api_runner import FnApiRunner
  assert runner_hands_over_batches(beam.Pipeline(runner=FnApiRunner()))
  try:
    from runinference.runners import DaskRunner
  except ImportError:  # the dask extra is not installed
    return
  assert runner_hands_over_batches(beam.Pipeline(runner=DaskRunner()))
