"""Bisection of a failed batch: ``bisect_failures`` without a pipeline, and a
batch-level error (``BatchFailedError``: a server error, throttling) that
fails its batch once instead of being bisected into 2N-1 calls."""
import apache_beam as beam
import pytest
from apache_beam.testing.util import assert_that, equal_to

from runinference.base import ModelHandler, RunInference
from runinference.exceptions import BatchFailedError
from tests.helpers import run_pipeline


def test_bisect_failures_api():
  from runinference._core.failures import bisect_failures

  def call(lo, hi):
    if 5 in range(lo, hi):
      raise ValueError('bad 5')
    return list(range(lo, hi))

  out = bisect_failures(8, call, ValueError('x'), catches=lambda e: True)
  assert [(f.start, f.stop) for f in out.failures] == [(5, 6)]
  assert sorted(i for r in out.results for i in r.value) == [
      0, 1, 2, 3, 4, 6, 7]
  with pytest.raises(KeyError):
    bisect_failures(2, call, KeyError('no'), catches=lambda e: False)


class ThrottledHandler(ModelHandler):
  """Every call fails with a server-side error, counted in a file."""
  def __init__(self, calls_file, **kwargs):
    super().__init__(**kwargs)
    self.calls_file = calls_file

  def load_model(self):
    return None

  def run_inference(self, batch, model, inference_args=None):
    with open(self.calls_file, 'a') as f:
      f.write(f'{len(batch)}\n')
    raise BatchFailedError('HTTP 503 from the model server')


def test_batch_failed_error_fails_the_batch_once(tmp_path):
  calls = str(tmp_path / 'calls.txt')
  handler = ThrottledHandler(calls, min_batch_size=8, max_batch_size=8)

  def build(p):
    _, dlq = (p | beam.Create(list(range(8)))
              | RunInference(handler).with_exception_handling())
    assert_that(dlq.failed_inferences | beam.Map(lambda r: r[0][0]),
                equal_to(list(range(8))))

  run_pipeline(build)
  with open(calls) as f:
    assert f.read().split() == ['8']  # one request, not 2N-1
