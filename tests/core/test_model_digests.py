"""Model-file digests (``model_sha256``): checked before a model loads, at
start and on refresh (a candidate with another digest is never unpickled),
and the option itself is validated."""
import pickle

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.testing.util import assert_that, equal_to
from sklearn.linear_model import LinearRegression

from runinference.base import ModelMetadata, RunInference
from runinference.exceptions import (ConfigurationError, ModelIntegrityError,
                                     RunInferenceError)
from runinference.sklearn_inference import SklearnModelHandlerNumpy
from tests.helpers import (MultiplierHandler, linear_model, refreshable_engine,
                           save_pickle, sha256_of)


def test_model_sha256_is_checked_before_loading(tmp_path):
  path = save_pickle(str(tmp_path / 'm.pkl'), linear_model(2))
  ok = SklearnModelHandlerNumpy(path, model_sha256=[sha256_of(path), '0' * 64])
  with beam.Pipeline() as p:
    out = p | beam.Create([np.array([1.0])]) | RunInference(ok)
    assert_that(out | beam.Map(lambda r: round(float(r.inference), 3)),
                equal_to([2.0]))
  bad = SklearnModelHandlerNumpy(path, model_sha256='f' * 64)
  with pytest.raises(Exception, match=f'{sha256_of(path)}') as info:
    with beam.Pipeline() as p:
      _ = p | beam.Create([np.array([1.0])]) | RunInference(bad)
  assert 'm.pkl' in str(info.value)


def test_refresh_candidate_with_another_digest_is_never_loaded(tmp_path):
  first = save_pickle(str(tmp_path / 'a.pkl'), linear_model(2))
  marker = tmp_path / 'ran'
  evil = str(tmp_path / 'evil.pkl')
  with open(evil, 'wb') as f:
    pickle.dump(_Marker(str(marker)), f)
  engine = refreshable_engine(
      SklearnModelHandlerNumpy(first, model_sha256=sha256_of(first)))
  engine.refresh(ModelMetadata(evil, 'evil'))
  assert not marker.exists()  # the pickle's code never ran
  assert engine.run([np.array([1.0])]).outputs[0].model_id == first


def test_model_integrity_error_and_bad_digest_option():
  assert issubclass(ModelIntegrityError, RunInferenceError)
  with pytest.raises(ConfigurationError, match='64-character'):
    MultiplierHandler(model_sha256='abc')


class _Marker:
  """Unpickling it writes a file (what a malicious pickle could do)."""
  def __init__(self, path):
    self.path = path

  def __reduce__(self):
    return (_touch, (self.path,))


def _touch(path):
  with open(path, 'w') as f:
    f.write('ran')
  return LinearRegression()
