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
