"""Failures: bisected dead letters, pre/post-processing DLQs, timeouts,
thresholds, and clear errors for bad input."""
import apache_beam as beam
import numpy as np
import pytest
from apache_beam.testing.util import assert_that, equal_to

from runinference.base import (KeyedModelHandler, KeyModelMapping,
                               RunInference)
from runinference.sklearn_inference import SklearnModelHandlerNumpy
from tests.helpers import MultiplierHandler, metric, run_pipeline


def test_failing_batch_is_bisected_to_the_bad_rows():
  handler = MultiplierHandler(
      fail_on={3, 17}, min_batch_size=20, max_batch_size=20)
  data = list(range(20))

  def build(p):
    main, dlq = (p | beam.Create(data)
                 | RunInference(handler).with_exception_handling())
    assert_that(
        main | beam.Map(lambda r: r.inference),
        equal_to([2 * x for x in data if x not in (3, 17)]),
        label='good rows')
    bad = dlq.failed_inferences | beam.Map(
        lambda rec: (rec[0], rec[1][0].__name__, 'cannot score' in rec[1][1]))
    assert_that(
        bad,
        equal_to([([3], 'ValueError', True), ([17], 'ValueError', True)]),
        label='bad rows')

  result = run_pipeline(build)
  assert metric(result, 'Test_Multiplier', 'failed_inferences') == 2
  assert metric(result, 'Test_Multiplier', 'failed_batches_counter') == 1
  assert metric(result, 'Test_Multiplier', 'num_inferences') == 18


def test_without_exception_handling_the_pipeline_fails():
  handler = MultiplierHandler(fail_on={1})
  with pytest.raises(Exception, match='cannot score 1'):
    with beam.Pipeline() as p:
      _ = p | beam.Create([0, 1, 2]) | RunInference(handler)


def test_pre_and_post_processing_dead_letters_keep_their_index():
  def pre_a(x):
    if x == 'bad-a':
      raise ValueError('pre a')
    return x

  def pre_b(x):  # applied second, so runs first
    if x == 'bad-b':
      raise ValueError('pre b')
    return int(x) if x not in ('bad-a',) else x

  def post(r):
    if r.example == 4:
      raise ValueError('post')
    return r.inference

  handler = MultiplierHandler().with_preprocess_fn(pre_a).with_preprocess_fn(
      pre_b).with_postprocess_fn(post)
  with beam.Pipeline() as p:
    main, dlq = (p | beam.Create(['1', 'bad-b', '4', 'bad-a', '5'])
                 | RunInference(handler).with_exception_handling())
    assert_that(main, equal_to([2, 10]), label='main')
    assert_that(dlq.failed_preprocessing[0] | beam.Map(lambda r: r[0]),
                equal_to(['bad-b']), label='pre0')
    assert_that(dlq.failed_preprocessing[1] | beam.Map(lambda r: r[0]),
                equal_to(['bad-a']), label='pre1')
    assert_that(dlq.failed_postprocessing[0] | beam.Map(lambda r: r[0].example),
                equal_to([4]), label='post0')
    assert_that(dlq.failed_inferences, equal_to([]), label='inf')


def test_timeout_sends_hung_batch_to_dead_letter():
  handler = MultiplierHandler(
      sleep_on={7}, sleep=3, min_batch_size=1, max_batch_size=1)
  with beam.Pipeline() as p:
    main, dlq = (p | beam.Create([1, 7, 2])
                 | RunInference(handler).with_exception_handling(timeout=1))
    assert_that(main | beam.Map(lambda r: r.example), equal_to([1, 2]),
                label='main')
    assert_that(dlq.failed_inferences | beam.Map(
        lambda r: (r[0], issubclass(r[1][0], TimeoutError))),
                equal_to([([7], True)]),
                label='dlq')


def test_threshold_fails_the_pipeline():
  handler = MultiplierHandler(fail_on={1, 2, 3})
  with pytest.raises(Exception, match='threshold'):
    with beam.Pipeline() as p:
      _ = p | beam.Create([0, 1, 2, 3]) | RunInference(
          handler).with_exception_handling(threshold=0.5)


def test_bad_exception_handling_config():
  with pytest.raises(ValueError, match='threshold'):
    RunInference(MultiplierHandler()).with_exception_handling(threshold=2)
  with pytest.raises(ValueError, match='timeout'):
    RunInference(MultiplierHandler()).with_exception_handling(timeout=0)


def test_missing_model_file_names_the_path(tmp_path):
  missing = str(tmp_path / 'nope.pkl')
  with pytest.raises(Exception, match='nope.pkl'):
    with beam.Pipeline() as p:
      _ = p | beam.Create([np.array([1.0])]) | RunInference(
          SklearnModelHandlerNumpy(missing))


def test_key_without_model_says_which_key(five_model):
  handler = KeyedModelHandler(
      [KeyModelMapping(['a'], SklearnModelHandlerNumpy(five_model))])
  with pytest.raises(Exception, match="'zzz'"):
    with beam.Pipeline() as p:
      _ = p | beam.Create([('a', np.array([1.0])), ('zzz', np.array([1.0]))
                          ]) | RunInference(handler)


def test_key_without_model_goes_to_dead_letter_alone(five_model):
  handler = KeyedModelHandler(
      [KeyModelMapping(['a'], SklearnModelHandlerNumpy(five_model))])
  with beam.Pipeline() as p:
    main, dlq = (p | beam.Create([('a', np.array([1.0])),
                                  ('zzz', np.array([1.0]))])
                 | RunInference(handler).with_exception_handling())
    assert_that(main | beam.Map(lambda kv: kv[0]), equal_to(['a']),
                label='main')
    assert_that(dlq.failed_inferences | beam.Map(lambda r: r[0][0][0]),
                equal_to(['zzz']), label='dlq')


def test_unkeyed_data_to_keyed_handler_says_so(five_model):
  handler = KeyedModelHandler(SklearnModelHandlerNumpy(five_model))
  with pytest.raises(Exception, match='expects \\(key, example\\) tuples'):
    with beam.Pipeline() as p:
      _ = p | beam.Create([np.array([1.0])]) | RunInference(handler)


def test_wrong_handler_argument():
  with pytest.raises(TypeError, match='ModelHandler'):
    RunInference('model.pkl')
  with pytest.raises(TypeError, match='inference_args'):
    RunInference(MultiplierHandler(), inference_args=[1])


def test_wrong_result_count_is_reported():
  class Short(MultiplierHandler):
    def run_inference(self, batch, model, inference_args=None):
      return list(super().run_inference(batch, model))[:-1]

  with pytest.raises(Exception, match='one per example'):
    with beam.Pipeline() as p:
      _ = p | beam.Create([1, 2, 3]) | RunInference(
          Short(min_batch_size=3, max_batch_size=3))


def test_preprocess_dead_letters_with_cross_bundle_batching():
  def parse(x):
    return int(x)

  handler = MultiplierHandler(
      max_batch_size=4, max_batch_duration_secs=1).with_preprocess_fn(parse)
  with beam.Pipeline() as p:
    main, dlq = (p | beam.Create(['1', 'x', '3'])
                 | RunInference(handler).with_exception_handling())
    assert_that(main | beam.Map(lambda r: r.inference), equal_to([2, 6]),
                label='main')
    assert_that(dlq.failed_preprocessing[0] | beam.Map(lambda r: r[0]),
                equal_to(['x']), label='pre')


def test_unknown_runinference_options_are_rejected():
  with pytest.raises(TypeError, match='bogus'):
    RunInference(MultiplierHandler(), bogus=1)
  with pytest.raises(NotImplementedError, match='monitoring_transform'):
    RunInference(MultiplierHandler(), monitoring_transform=lambda p: p)
  with pytest.raises(TypeError, match='use_model_manger'):
    RunInference(MultiplierHandler(), use_model_manger=True)
