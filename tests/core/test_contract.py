"""The ModelHandler contract and RunInference options, through real pipelines."""
import os

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.testing.util import assert_that, equal_to

from runinference.base import (KeyedModelHandler, KeyModelMapping,
                               MaybeKeyedModelHandler, ModelHandler,
                               ModelMetadata, PredictionResult, RunInference)
from runinference.sklearn_inference import SklearnModelHandlerNumpy
from tests.helpers import (MultiplierHandler, NoInitHandler, metric,
                           run_pipeline)


def test_prediction_result_and_metadata_fields():
  r = PredictionResult(1, 2)
  assert (r.example, r.inference, r.model_id) == (1, 2, None)
  assert PredictionResult(1, 2, 'm').model_id == 'm'
  assert ModelMetadata('path', 'name')._fields == ('model_id', 'model_name')


def test_handler_that_skips_super_init_works():
  handler = NoInitHandler(3)
  assert handler.batch_elements_kwargs() == {}
  assert handler.share_model_across_processes() is False
  assert handler.model_copies() == 1
  handler.set_environment_vars()
  with beam.Pipeline() as p:
    out = p | beam.Create([1, 2, 3]) | RunInference(handler)
    assert_that(out, equal_to([3, 6, 9]))


def test_pre_and_post_fns_order():
  handler = (
      MultiplierHandler(factor=1).with_preprocess_fn(lambda x: x + 1)
      .with_preprocess_fn(lambda x: x * 10)  # applied last, runs first
      .with_postprocess_fn(lambda r: r.inference * 2)
      .with_postprocess_fn(lambda y: y - 1))  # runs last
  with beam.Pipeline() as p:
    out = p | beam.Create([1, 2]) | RunInference(handler)
    assert_that(out, equal_to([(1 * 10 + 1) * 2 - 1, (2 * 10 + 1) * 2 - 1]))


def test_with_no_batching_takes_prebatched_input():
  handler = MultiplierHandler().with_no_batching()
  assert handler.should_skip_batching()
  with beam.Pipeline() as p:
    out = (p | beam.Create([[1, 2, 3], [4]]) | RunInference(handler)
           | beam.Map(lambda r: r.inference))
    assert_that(out, equal_to([2, 4, 6, 8]))


def test_inference_args_reach_the_model():
  with beam.Pipeline() as p:
    out = (p | beam.Create([1, 2])
           | RunInference(MultiplierHandler(), inference_args={'offset': 100})
           | beam.Map(lambda r: r.inference))
    assert_that(out, equal_to([102, 104]))


def test_validate_inference_args_rejects_at_construction():
  class Strict(MultiplierHandler):
    def validate_inference_args(self, inference_args):
      if inference_args:
        raise ValueError('no inference_args allowed')

  p = beam.Pipeline()
  with pytest.raises(ValueError, match='no inference_args'):
    _ = p | beam.Create([1]) | RunInference(Strict(), inference_args={'a': 1})


def test_env_vars_are_set_before_load():
  class EnvHandler(MultiplierHandler):
    def load_model(self):
      assert os.environ['RI_TEST_ENV'] == 'yes'
      return super().load_model()

  handler = EnvHandler(env_vars={'RI_TEST_ENV': 'yes'})
  with beam.Pipeline() as p:
    out = p | beam.Create([1]) | RunInference(handler) | beam.Map(
        lambda r: r.inference)
    assert_that(out, equal_to([2]))


def test_resource_hints_land_on_the_inference_step():
  p = beam.Pipeline()
  _ = p | beam.Create([1]) | 'RI' >> RunInference(
      MultiplierHandler()).with_resource_hints(
          min_ram='4GB', accelerator='type:nvidia-tesla-t4;count:1')
  proto = p.to_runner_api()
  # Resource hints are stored on the transforms' environment as URNs.
  found = [
      env.resource_hints for env in proto.components.environments.values()
      if env.resource_hints
  ]
  assert any(
      any(b'nvidia-tesla-t4' in v for v in h.values()) for h in found)
  assert any(any(v == b'4000000000' for v in h.values()) for h in found)


def test_metrics_names_under_handler_namespace():
  result = run_pipeline(
      lambda p: p | beam.Create(list(range(5))) | RunInference(
          MultiplierHandler()))
  ns = 'Test_Multiplier'
  assert metric(result, ns, 'num_inferences') == 5
  for name in ('inference_request_batch_size',
               'inference_request_batch_byte_size',
               'inference_batch_latency_micro_secs', 'model_byte_size',
               'load_model_latency_milli_secs'):
    assert metric(result, ns, name) is not None, name
  assert metric(result, ns, 'failed_batches_counter') in (0, None)


def test_custom_metrics_namespace():
  result = run_pipeline(
      lambda p: p | beam.Create([1, 2]) | RunInference(
          MultiplierHandler(), metrics_namespace='MyModel'))
  assert metric(result, 'MyModel', 'num_inferences') == 2


def test_model_loads_once_per_process_across_steps():
  MultiplierHandler.loads = 0
  handler = MultiplierHandler()

  def build(p):
    data = p | beam.Create(list(range(50)))
    a = data | 'A' >> RunInference(handler, model_identifier='shared-mult')
    b = data | 'B' >> RunInference(handler, model_identifier='shared-mult')
    assert_that((a, b) | beam.Flatten() | beam.combiners.Count.Globally(),
                equal_to([100]))

  run_pipeline(build)
  assert MultiplierHandler.loads == 1


def test_large_model_shared_across_processes(five_model):
  handler = SklearnModelHandlerNumpy(five_model, large_model=True)
  assert handler.share_model_across_processes()
  with beam.Pipeline() as p:
    out = (p | beam.Create([np.array([float(i)]) for i in range(5)])
           | RunInference(handler) | beam.Map(lambda r: round(float(r.inference))))
    assert_that(out, equal_to([0, 5, 10, 15, 20]))


def test_model_copies(five_model):
  handler = SklearnModelHandlerNumpy(five_model, model_copies=2)
  assert handler.share_model_across_processes() and handler.model_copies() == 2
  with beam.Pipeline() as p:
    out = (p | beam.Create([np.array([1.0])]) | RunInference(handler)
           | beam.Map(lambda r: round(float(r.inference))))
    assert_that(out, equal_to([5]))


def test_keyed_routing_lru_and_one_run_per_model(five_model, ten_model):
  mappings = [
      KeyModelMapping(['a', 'b'], SklearnModelHandlerNumpy(five_model)),
      KeyModelMapping(['c'], SklearnModelHandlerNumpy(ten_model)),
      KeyModelMapping(['d'], MultiplierHandler(factor=3)),
  ]
  handler = KeyedModelHandler(mappings, max_models_per_worker_hint=2)
  model = handler.load_model()
  batch = [('a', np.array([1.0])), ('c', np.array([1.0])),
           ('b', np.array([2.0])), ('d', 4), ('a', np.array([3.0]))]
  out = handler.run_inference(batch, model)
  assert [k for k, _ in out] == ['a', 'c', 'b', 'd', 'a']
  assert [round(float(r.inference)) for _, r in out] == [5, 10, 10, 12, 15]
  assert len(model.loaded_ids()) <= 2
  assert model.evictions >= 1
  multiplier = model.get('d')[0].model
  assert multiplier.calls == [1]  # one call for key d in that batch


def test_keyed_pipeline_with_metrics_per_cohort(five_model, ten_model):
  handler = KeyedModelHandler([
      KeyModelMapping(['a'], SklearnModelHandlerNumpy(five_model)),
      KeyModelMapping(['b'], SklearnModelHandlerNumpy(ten_model)),
  ])

  def build(p):
    out = (p | beam.Create([('a', np.array([1.0])), ('b', np.array([1.0]))])
           | RunInference(handler)
           | beam.Map(lambda kv: (kv[0], round(float(kv[1].inference)))))
    assert_that(out, equal_to([('a', 5), ('b', 10)]))

  result = run_pipeline(build)
  ns = 'BeamML_KeyedModels'
  assert metric(result, ns, 'num_inferences') == 2
  assert metric(result, ns, 'a-_num_inferences') == 1
  assert metric(result, ns, 'b-_num_inferences') == 1


def test_keyed_config_errors(five_model):
  mh = SklearnModelHandlerNumpy(five_model)
  with pytest.raises(ValueError, match='more than one'):
    KeyedModelHandler([KeyModelMapping(['a'], mh), KeyModelMapping(['a'], mh)])
  with pytest.raises(ValueError, match='no keys'):
    KeyedModelHandler([KeyModelMapping([], mh)])
  with pytest.raises(ValueError, match='max_models_per_worker_hint'):
    KeyedModelHandler([KeyModelMapping(['a'], mh)], max_models_per_worker_hint=0)
  with pytest.raises(ValueError, match='pre/postprocessing'):
    KeyedModelHandler(mh.with_preprocess_fn(lambda x: x))


def test_maybe_keyed_mixed_input():
  handler = MaybeKeyedModelHandler(MultiplierHandler())
  with beam.Pipeline() as p:
    out = (p | beam.Create([('k', 1), 2, ('j', 3)]) | RunInference(handler)
           | beam.Map(lambda x: (x[0], x[1].inference)
                      if isinstance(x, tuple) and len(x) == 2 and isinstance(
                          x[0], str) else x.inference))
    assert_that(out, equal_to([('k', 2), 4, ('j', 6)]))


def test_ab_and_cascade(five_model, ten_model):
  five = SklearnModelHandlerNumpy(five_model)
  ten = SklearnModelHandlerNumpy(ten_model)
  with beam.Pipeline() as p:
    data = p | beam.Create([np.array([1.0]), np.array([2.0])])
    a = data | 'A' >> RunInference(five) | 'VA' >> beam.Map(
        lambda r: round(float(r.inference)))
    b = data | 'B' >> RunInference(ten) | 'VB' >> beam.Map(
        lambda r: round(float(r.inference)))
    c = (data | 'C1' >> RunInference(five)
         | beam.Map(lambda r: np.array([float(r.inference)]))
         | 'C2' >> RunInference(ten) | 'VC' >> beam.Map(
             lambda r: round(float(r.inference))))
    assert_that(a, equal_to([5, 10]), label='a')
    assert_that(b, equal_to([10, 20]), label='b')
    assert_that(c, equal_to([50, 100]), label='cascade')


def test_windowed_input_keeps_each_elements_window_and_timestamp():
  from apache_beam.transforms import window
  with beam.Pipeline() as p:
    out = (p | beam.Create([(1, 5), (2, 15), (3, 25)])
           | beam.Map(lambda kv: window.TimestampedValue(kv[0], kv[1]))
           | beam.WindowInto(window.FixedWindows(10))
           | RunInference(MultiplierHandler(min_batch_size=3, max_batch_size=3))
           | beam.Map(lambda r, w=beam.DoFn.WindowParam, t=beam.DoFn.TimestampParam:
                      (r.inference, int(w.start), int(t))))
    assert_that(out, equal_to([(2, 0, 5), (4, 10, 15), (6, 20, 25)]))


def test_is_a_model_handler():
  assert issubclass(KeyedModelHandler, ModelHandler)
  assert issubclass(MaybeKeyedModelHandler, ModelHandler)


class _Unpicklable:
  def __reduce__(self):
    raise TypeError("cannot pickle '_Unpicklable' object")


class _SharedEcho(ModelHandler):
  """A model shared across processes: every call goes through a proxy that
  pickles its arguments."""
  def load_model(self):
    return _EchoModel()

  def share_model_across_processes(self):
    return True

  def run_inference(self, batch, model, inference_args=None):
    return [model.predict(_Unpicklable() if x < 0 else x) for x in batch]


class _EchoModel:
  def predict(self, x):
    return x


def test_unpicklable_data_to_a_shared_model_names_the_cause():
  with pytest.raises(Exception, match='Pickling error encountered.*picklable'):
    with beam.Pipeline() as p:
      _ = p | beam.Create([-1]) | RunInference(_SharedEcho())


def test_unpicklable_data_to_a_shared_model_is_dead_lettered():
  with beam.Pipeline() as p:
    main, dlq = (p | beam.Create([1, -1, 2])
                 | RunInference(_SharedEcho()).with_exception_handling())
    assert_that(main, equal_to([1, 2]), label='good')
    assert_that(
        dlq.failed_inferences | beam.Map(
            lambda rec: (rec[0], rec[1][0].__name__,
                         'Pickling error encountered' in rec[1][1])),
        equal_to([([-1], 'InvalidInputTypeError', True)]), label='bad')


@pytest.mark.parametrize('exc,expected', [
    (__import__('pickle').PicklingError('x'), True),
    (TypeError("cannot pickle '_thread.lock' object"), True),
    (AttributeError("Can't pickle local object 'f.<locals>.g'"), True),
    (TypeError('unsupported type'), False),
    (ValueError('pickle'), False),
])
def test_is_pickling_error(exc, expected):
  from runinference.base import _is_pickling_error
  assert _is_pickling_error(exc) is expected


def test_wrappers_forward_every_public_hook():
  """A wrapper that inherits a hook from ModelHandler would silently drop
  the wrapped handler's behaviour."""
  import inspect

  from runinference import base
  own = {'with_preprocess_fn', 'with_postprocess_fn', 'with_no_batching',
         'set_environment_vars'}
  hooks = [n for n, _ in inspect.getmembers(ModelHandler, inspect.isfunction)
           if not n.startswith('_') and n not in own]
  for cls in (base.MaybeKeyedModelHandler, base._PrebatchedModelHandler,
              base._PreProcessingModelHandler,
              base._PostProcessingModelHandler):
    inherited = [n for n in hooks
                 if getattr(cls, n) is getattr(ModelHandler, n)]
    assert not inherited, f'{cls.__name__} does not forward {inherited}'


def test_load_model_status_is_one_per_tag():
  import uuid

  from runinference.base import load_model_status
  tag = uuid.uuid4().hex
  status = load_model_status(tag, False)
  assert status is load_model_status(tag, False)
  assert status is not load_model_status(tag + '_other', False)
  assert status.is_valid_tag('model')
  status.try_mark_current_model_invalid(0)
  assert not load_model_status(tag, False).is_valid_tag('model')
