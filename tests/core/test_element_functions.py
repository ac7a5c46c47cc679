"""User functions called per element (``element_size_fn``,
``batch_length_fn``): one that fails on an element dead-letters that element
alone; the others are scored."""
import apache_beam as beam
from apache_beam.testing.util import assert_that, equal_to

from runinference.base import RunInference
from tests.helpers import MultiplierHandler, run_pipeline


def test_element_size_fn_failing_on_one_element_dead_letters_it():
  def size(x):
    if x == 3:
      raise ValueError('cannot size 3')
    return 1

  handler = MultiplierHandler(
      max_batch_size=4, max_batch_weight=4, element_size_fn=size)

  def build(p):
    main, dlq = (p | beam.Create(list(range(6)))
                 | RunInference(handler).with_exception_handling())
    assert_that(main | beam.Map(lambda r: r.inference),
                equal_to([0, 2, 4, 8, 10]), label='main')
    assert_that(dlq.failed_inferences | beam.Map(lambda r: r[0]),
                equal_to([[3]]), label='dead')

  run_pipeline(build)


def test_batch_length_fn_failing_dead_letters_the_element():
  def length(x):
    if x == 2:
      raise TypeError('no length')
    return x

  handler = MultiplierHandler(max_batch_size=3, batch_length_fn=length)

  def build(p):
    main, dlq = (p | beam.Create(list(range(5)))
                 | RunInference(handler).with_exception_handling())
    assert_that(main | beam.Map(lambda r: r.example), equal_to([0, 1, 3, 4]),
                label='main')
    assert_that(dlq.failed_inferences | beam.Map(lambda r: r[0]),
                equal_to([[2]]), label='dead')

  run_pipeline(build)
