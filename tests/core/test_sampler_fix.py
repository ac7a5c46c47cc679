"""Bundle ends without the state sampler's idle tick (sampler_fix.py): with
RunInference or RunInferenceColumnar imported, the samplers the local
runner makes for its bundles tick every 10 ms instead of up to 200 ms, so
stopping one at a bundle's end waits at most that long."""
import apache_beam as beam
import numpy as np
import pyarrow as pa
from apache_beam.runners.worker import statesampler
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.utils.counters import CounterFactory

from runinference._core import sampler_fix
from runinference.base import RunInference
from runinference.columnar import RunInferenceColumnar
from runinference.sklearn_inference import SklearnModelHandlerNumpy


def _period(_):
  tracker = statesampler.get_current_tracker()
  return tracker.sampling_period_ms


def test_bundles_of_a_runinference_pipeline_tick_every_10_ms(five_model):
  with beam.Pipeline() as p:
    out = (p
           | beam.Create([np.array([1.0]), np.array([2.0])])
           | RunInference(SklearnModelHandlerNumpy(model_uri=five_model))
           | beam.Map(lambda r: round(float(r.inference), 6)))
    periods = out | 'Period' >> beam.Map(_period) | beam.Distinct()
    assert_that(out, equal_to([5.0, 10.0]), label='predictions')
    assert_that(periods, equal_to([sampler_fix.PERIOD_MS]), label='period')


def test_columnar_pipelines_get_the_same_period(five_model):
  chunk = pa.RecordBatch.from_pydict({'x': [1.0, 3.0]})
  with beam.Pipeline() as p:
    out = (p
           | beam.Create([chunk])
           | RunInferenceColumnar(
               SklearnModelHandlerNumpy(model_uri=five_model), ['x']))
    periods = out | beam.Map(_period) | beam.Distinct()
    assert_that(periods, equal_to([sampler_fix.PERIOD_MS]))


def test_install_is_idempotent_and_a_caller_period_wins():
  assert sampler_fix.install() and sampler_fix.install()
  counters = CounterFactory()
  assert statesampler.StateSampler('a', counters).sampling_period_ms == 10
  assert statesampler.StateSampler(
      'b', counters, sampling_period_ms=300).sampling_period_ms == 300


def test_a_period_chosen_by_someone_else_is_left_alone():
  init = statesampler.StateSampler.__init__
  saved = init.__defaults__
  init.__defaults__ = (50, )
  try:
    assert sampler_fix.install() is False
    assert init.__defaults__ == (50, )
  finally:
    init.__defaults__ = saved
