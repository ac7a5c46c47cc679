"""GlobalBatchDoFn keeps the cyclic GC paused from a batch's model call until
Beam has iterated its outputs, and never leaves it off: the outputs, a failed
model call, a bundle's end and teardown each turn it back on."""
import gc

import apache_beam as beam
import pytest

from runinference.base import RunInference
from tests.helpers import MultiplierHandler


def _dofn(**handler_kwargs):
  step = RunInference(MultiplierHandler(
      min_batch_size=3, max_batch_size=3, **handler_kwargs))
  pcoll = beam.Pipeline() | beam.Impulse()
  dofn = step._inference_dofn(pcoll, step._plan(pcoll))
  dofn.setup()
  dofn.start_bundle()
  return dofn


@pytest.fixture(autouse=True)
def _gc_on():
  assert gc.isenabled()
  yield
  gc.enable()


def test_gc_paused_until_the_outputs_are_iterated():
  dofn = _dofn()
  assert list(dofn.process(1)) == [] and list(dofn.process(2)) == []
  outputs = dofn.process(3)
  assert not gc.isenabled()
  assert [r.inference for r in outputs] == [2, 4, 6]
  assert gc.isenabled()
  dofn.teardown()


@pytest.mark.parametrize('end', ['finish_bundle', 'start_bundle', 'teardown'])
def test_gc_resumed_when_outputs_are_abandoned(end):
  dofn = _dofn()
  dofn.process(1), dofn.process(2)
  next(iter(dofn.process(3)))  # a downstream failure stops the iteration
  assert not gc.isenabled()
  getattr(dofn, end)()
  assert gc.isenabled()


def test_gc_resumed_when_the_model_call_raises():
  dofn = _dofn(fail_on=[2])
  dofn.process(1), dofn.process(2)
  with pytest.raises(Exception):
    dofn.process(3)
  assert gc.isenabled()
  dofn.teardown()


def test_gc_stays_off_when_it_was_off():
  dofn = _dofn()
  gc.disable()
  dofn.process(1), dofn.process(2)
  assert [r.inference for r in dofn.process(3)] == [2, 4, 6]
  assert not gc.isenabled()
  dofn.teardown()
  assert not gc.isenabled()
