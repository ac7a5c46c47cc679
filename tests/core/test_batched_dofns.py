"""Which runners hand a batched DoFn its input in batches (pipeline-free)."""
import apache_beam as beam
from apache_beam.runners.direct.direct_runner import BundleBasedDirectRunner
from apache_beam.runners.runner import PipelineRunner
from apache_beam.testing import test_stream

from runinference._core import bundle_based_fix
from runinference._core.batched_dofns import runner_hands_over_batches
from tests.helpers import RealTimeTimerDoFn


class _SomeRunner(PipelineRunner):
  """A runner this module knows nothing about."""


_WITHOUT_FIX = """
import apache_beam as beam
from apache_beam.runners.direct.direct_runner import BundleBasedDirectRunner
from apache_beam.testing import test_stream
from runinference._core import bundle_based_fix
from runinference._core.batched_dofns import runner_hands_over_batches
from tests.helpers import RealTimeTimerDoFn
assert not bundle_based_fix.installed()
p = beam.Pipeline()
_ = p | beam.Create([1]) | beam.Map(str)
streaming = beam.Pipeline()
_ = streaming | test_stream.TestStream().add_elements([1]) | beam.Map(str)
timers = beam.Pipeline()
_ = timers | beam.Create([('k', 1)]) | beam.ParDo(RealTimeTimerDoFn())
bundle_based = beam.Pipeline(runner=BundleBasedDirectRunner())
print(*map(runner_hands_over_batches, (p, streaming, timers, bundle_based)))
"""


def test_without_the_fix_the_direct_runner_batches_unless_it_goes_bundle_based():
  """Where bundle_based_fix could not be installed (another Beam), the
  DirectRunner batches only if nothing applied so far sends it to its
  bundle-based runner."""
  import os
  import subprocess
  import sys
  repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  out = subprocess.run([sys.executable, '-c', _WITHOUT_FIX], capture_output=True,
                       text=True, timeout=120, check=True, cwd=repo).stdout.split()
  assert out[-4:] == ['True', 'False', 'False', 'False']


def test_unknown_runners_do_not():
  assert not runner_hands_over_batches(beam.Pipeline(runner=_SomeRunner()))


def test_with_the_fix_both_direct_runners_batch():
  bundle_based_fix.install()
  assert runner_hands_over_batches(beam.Pipeline(runner=BundleBasedDirectRunner()))
  streaming = beam.Pipeline()
  _ = streaming | test_stream.TestStream().add_elements([1]) | beam.Map(str)
  assert runner_hands_over_batches(streaming)


def test_sdk_harness_runners_and_our_dask_runner_do():
  from apache_beam.runners.portability.fn_api_runner import FnApiRunner
  assert runner_hands_over_batches(beam.Pipeline(runner=FnApiRunner()))
  try:
    from runinference.runners import DaskRunner
  except ImportError:  # the dask extra is not installed
    return
  assert runner_hands_over_batches(beam.Pipeline(runner=DaskRunner()))
