"""Every handler in the package honours the same small contract (in the
spirit of scikit-learn's check_estimator). Cases live in tests/handler_cases."""
import apache_beam as beam
import pytest
from apache_beam.internal import pickler
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.testing.util import assert_that, equal_to

from runinference.base import (KeyedModelHandler, ModelHandler,
                               PredictionResult, RunInference)
from tests.handler_cases import all_cases

CASES = all_cases()


@pytest.fixture(params=CASES)
def case(request):
  return request.param


@pytest.fixture
def handler(case, tmp_path):
  return case.make_handler(tmp_path)


def _results(handler, examples, model=None):
  model = model if model is not None else handler.load_model()
  return list(handler.run_inference(examples, model))


def test_load_and_batch(case, handler):
  assert isinstance(handler, ModelHandler)
  model = handler.load_model()
  assert model is not None
  examples = case.make_examples()
  results = _results(handler, examples, model)
  assert len(results) == len(examples)
  for example, result in zip(examples, results):
    assert isinstance(result, PredictionResult)
    assert result.example is example
    if case.check:
      case.check(example, result.inference)


def test_empty_batch(case, handler):
  assert list(handler.run_inference([], handler.load_model())) == []


def test_bad_input_is_a_clear_error(case, handler):
  with pytest.raises((TypeError, ValueError)) as info:
    _results(handler, [case.bad_example])
  assert len(str(info.value)) > 20


def test_metrics_namespace_and_pipeline(case, handler):
  assert handler.get_metrics_namespace() == case.expected_namespace
  examples = case.make_examples()
  p = beam.Pipeline()
  out = (
      p | beam.Create(list(enumerate(examples)))
      | beam.Map(lambda kv: kv[1])
      | RunInference(handler)
      | beam.Map(lambda r: 1))
  assert_that(out | beam.combiners.Count.Globally(), equal_to([len(examples)]))
  result = p.run()
  result.wait_until_finish()
  counters = result.metrics().query(
      MetricsFilter().with_namespace(case.expected_namespace).with_name(
          'num_inferences'))['counters']
  assert sum(c.committed for c in counters) == len(examples)


def test_keyed(case, handler):
  examples = case.make_examples()
  with beam.Pipeline() as p:
    out = (
        p | beam.Create(list(range(len(examples))))
        | beam.Map(lambda i, xs=examples: (f'k{i}', xs[i]))
        | RunInference(KeyedModelHandler(handler))
        | beam.Map(lambda kv: (kv[0], isinstance(kv[1], PredictionResult))))
    assert_that(out, equal_to([(f'k{i}', True) for i in range(len(examples))]))


def test_unkeyed_data_to_keyed_handler_says_so(case, handler):
  keyed = KeyedModelHandler(handler)
  with pytest.raises(TypeError, match='key'):
    keyed.run_inference([case.make_examples()[0]], keyed.load_model())


def test_bad_input_goes_to_dead_letter(case, handler):
  examples = case.make_examples()
  with beam.Pipeline() as p:
    data = p | beam.Create([0, 1, 2]) | beam.Map(
        lambda i, xs=examples, bad=case.bad_example: bad if i == 1 else xs[i])
    main, dlq = data | RunInference(handler).with_exception_handling()
    assert_that(main | 'CountGood' >> beam.combiners.Count.Globally(),
                equal_to([2]), label='good rows')
    assert_that(dlq.failed_inferences | 'CountBad' >> beam.combiners.Count.Globally(),
                equal_to([1]), label='bad row')


def test_pickles(case, handler):
  clone = pickler.loads(pickler.dumps(handler))
  examples = case.make_examples()
  assert len(_results(clone, examples)) == len(examples)
