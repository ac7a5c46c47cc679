"""A model that returns fewer or more predictions than the batch has rows
fails the batch: no row is silently dropped or given a None result, in a
mixed keyed/unkeyed batch too."""
import pickle

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.testing.util import assert_that, equal_to

from runinference.base import MaybeKeyedModelHandler, ModelHandler, RunInference
from runinference.sklearn_inference import SklearnModelHandlerNumpy
from tests.helpers import run_pipeline


class ShortModelHandler(ModelHandler):
  """A faulty model: returns ``len(batch) + extra`` predictions."""
  def __init__(self, extra, **kwargs):
    super().__init__(**kwargs)
    self.extra = extra

  def load_model(self):
    return None

  def run_inference(self, batch, model, inference_args=None):
    preds = [x * 10 for x in batch]
    if self.extra < 0:
      return preds[:len(preds) + self.extra]
    return preds + [0] * self.extra


def test_maybe_keyed_mixed_batch_with_missing_predictions_loses_nothing():
  data = [('k', 1), 2, ('k', 3), 4, 5, ('k', 6), 7, 8, ('k', 9), 10]
  handler = MaybeKeyedModelHandler(
      ShortModelHandler(-1, min_batch_size=10, max_batch_size=10))

  def build(p):
    main, dlq = (p | beam.Create(data)
                 | RunInference(handler).with_exception_handling())
    assert_that(main | beam.combiners.Count.Globally(), equal_to([0]),
                label='no output is a silent None')
    assert_that(
        dlq.failed_inferences
        | beam.Map(lambda rec: (rec[0][0], rec[1][0].__name__)),
        equal_to([(x, 'ResultCountError') for x in data]), label='all dead')

  run_pipeline(build)


class ExtraRowsModel:
  def predict(self, x):
    return np.concatenate([x.sum(axis=1), [0.0]])


def test_too_many_predictions_fail_the_batch(tmp_path):
  path = str(tmp_path / 'extra.pkl')
  with open(path, 'wb') as f:
    pickle.dump(ExtraRowsModel(), f)
  handler = SklearnModelHandlerNumpy(path)
  with pytest.raises(Exception, match=r'returned \d+ predictions for a batch of \d+ examples'):
    with beam.Pipeline() as p:
      _ = (p | beam.Create([np.array([1.0]), np.array([2.0]), np.array([3.0])])
           | RunInference(handler))
