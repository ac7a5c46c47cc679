"""KeyedModelHandler's two forms behind one public name."""
import copy
import pickle

import apache_beam as beam
import pytest
from apache_beam.testing.util import assert_that, equal_to

from runinference.base import (KeyedModelHandler, KeyModelMapping,
                               MaybeKeyedModelHandler, RunInference)
from runinference.exceptions import (ConfigurationError, ResultCountError,
                                     UnknownModelKeyError)
from tests.helpers import MultiplierHandler, run_pipeline
from tests.core.test_result_counts import ShortModelHandler


def test_both_forms_are_keyed_model_handlers_and_survive_pickling():
  single = KeyedModelHandler(MultiplierHandler(3))
  multi = KeyedModelHandler([KeyModelMapping(['a'], MultiplierHandler(3))])
  assert type(single) is not type(multi)
  for h in (single, multi):
    assert isinstance(h, KeyedModelHandler)
    assert type(pickle.loads(pickle.dumps(h))) is type(h)
    assert type(copy.deepcopy(h)) is type(h)
    assert type(h).__module__ == 'runinference.base'


def test_both_forms_run_in_a_pipeline():
  single = KeyedModelHandler(MultiplierHandler(3))
  multi = KeyedModelHandler([
      KeyModelMapping(['a'], MultiplierHandler(2)),
      KeyModelMapping(['b', 'c'], MultiplierHandler(10))])

  def build(p):
    data = p | beam.Create([('a', 1), ('b', 2), ('c', 3)])
    one = data | 'Single' >> RunInference(single)
    many = data | 'Multi' >> RunInference(multi)
    assert_that(one | 'S' >> beam.Map(lambda kv: (kv[0], kv[1].inference)),
                equal_to([('a', 3), ('b', 6), ('c', 9)]), label='single')
    assert_that(many | 'M' >> beam.Map(lambda kv: (kv[0], kv[1].inference)),
                equal_to([('a', 2), ('b', 20), ('c', 30)]), label='multi')

  run_pipeline(build)


def test_unknown_key_is_a_key_error_naming_the_key():
  multi = KeyedModelHandler([KeyModelMapping(['a'], MultiplierHandler(2))])
  model = multi.load_model()
  with pytest.raises(UnknownModelKeyError, match="'zz'"):
    multi.run_inference([('zz', 1)], model)
  with pytest.raises(KeyError):
    multi.run_inference([('zz', 1)], model)


def test_single_form_rejects_too_many_predictions():
  keyed = KeyedModelHandler(ShortModelHandler(2))
  with pytest.raises(ResultCountError):
    keyed.run_inference([('a', 1), ('b', 2)], None)


def test_maybe_keyed_rejects_a_short_part_of_a_mixed_batch():
  maybe = MaybeKeyedModelHandler(ShortModelHandler(-1))
  with pytest.raises(ResultCountError):
    maybe.run_inference([('a', 1), 2, 3], None)


def test_multi_form_validates_its_mappings():
  with pytest.raises(ConfigurationError, match='no keys'):
    KeyedModelHandler([KeyModelMapping([], MultiplierHandler(2))])
  with pytest.raises(ConfigurationError, match='more than one'):
    KeyedModelHandler([KeyModelMapping(['a'], MultiplierHandler(2)),
                       KeyModelMapping(['a'], MultiplierHandler(3))])


def test_keyed_over_a_no_batching_handler_takes_pre_batched_pairs():
  keyed = KeyedModelHandler(MultiplierHandler(2).with_no_batching())
  assert keyed.should_skip_batching()
  assert not KeyedModelHandler(MultiplierHandler(2)).should_skip_batching()
  with beam.Pipeline() as p:
    out = (p | beam.Create([[('a', 1), ('b', 2)], [('c', 3)]])
           | RunInference(keyed) | beam.MapTuple(lambda k, r: (k, r.inference)))
    assert_that(out, equal_to([('a', 2), ('b', 4), ('c', 6)]))


def test_multi_model_keyed_warns_that_inner_no_batching_is_ignored(caplog):
  with caplog.at_level('WARNING'):
    keyed = KeyedModelHandler([
        KeyModelMapping(['a'], MultiplierHandler(2).with_no_batching()),
        KeyModelMapping(['b'], MultiplierHandler(3))])
  assert not keyed.should_skip_batching()
  assert any('skips batching' in r.getMessage() for r in caplog.records)


def test_handler_manager_limit_raised_once_per_process():
  from runinference.base import _ModelHandlerManager
  manager = _ModelHandlerManager(
      {k: MultiplierHandler(i) for i, k in enumerate('xyz', 1)})
  manager.increment_max_models(1, process_id=1)
  manager.increment_max_models(1, process_id=1)  # a second copy, same process
  for key in 'xyz':
    manager.load(key)
  assert manager.load('z').load_latency is None  # held
  assert manager.load('y').load_latency is not None  # evicted: limit 1


def test_bad_batching_options_fail_when_the_handler_is_built():
  with pytest.raises(ValueError, match='max_batch_weight requires element_size_fn'):
    MultiplierHandler(max_batch_weight=10)
  with pytest.raises(ValueError,
                     match='batch_bucket_boundaries requires batch_length_fn'):
    MultiplierHandler(batch_bucket_boundaries=[10, 20])


def test_maybe_keyed_sizes_and_lengths_the_example_not_the_pair():
  inner = MultiplierHandler(max_batch_weight=10, element_size_fn=len,
                            batch_length_fn=len)
  kwargs = MaybeKeyedModelHandler(inner).batch_elements_kwargs()
  for fn in ('element_size_fn', 'length_fn'):
    assert kwargs[fn](('key', 'abc')) == 3
    assert kwargs[fn]('abcd') == 4
  assert inner.batch_elements_kwargs()['element_size_fn'] is len


class _OneAtATime(KeyedModelHandler):
  """A user's subclass of KeyedModelHandler (as Beam's own tests write)."""
  def batch_elements_kwargs(self):
    return {'min_batch_size': 1, 'max_batch_size': 1}


@pytest.mark.parametrize('multi', [False, True])
def test_a_subclass_of_keyed_model_handler_takes_both_forms(multi):
  inner = MultiplierHandler(3)
  handler = _OneAtATime(
      [KeyModelMapping(['a', 'b'], inner)] if multi else inner)
  assert isinstance(handler, _OneAtATime)
  assert handler.batch_elements_kwargs()['max_batch_size'] == 1
  again = pickle.loads(pickle.dumps(handler))
  assert type(again) is type(handler)
  import cloudpickle
  assert type(cloudpickle.loads(cloudpickle.dumps(handler))) is type(handler)
  with beam.Pipeline() as p:
    out = (p | beam.Create([('a', 1), ('b', 2)]) | RunInference(handler)
           | beam.MapTuple(lambda k, r: (k, getattr(r, 'inference', r))))
    assert_that(out, equal_to([('a', 3), ('b', 6)]))
