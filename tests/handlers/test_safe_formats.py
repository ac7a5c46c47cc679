"""Model formats that hold data only (skops, safetensors, ONNX) through real
pipelines; untrusted skops types refused; a warning when a pickle lies where
other users can write; a pickle with the wrong digest never runs."""
import hashlib
import logging
import os
import pickle

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.testing.util import assert_that, equal_to
from sklearn.base import BaseEstimator
from sklearn.linear_model import LinearRegression

from runinference.base import RunInference
from runinference.exceptions import (RunInferenceError,
                                     UntrustedModelTypesError)
from runinference.sklearn_inference import (ModelFileType,
                                            SklearnModelHandlerNumpy,
                                            SklearnModelHandlerPandas)

skops_io = pytest.importorskip('skops.io')
torch = pytest.importorskip('torch')
safetensors_torch = pytest.importorskip('safetensors.torch')

_X = np.arange(20, dtype=float).reshape(-1, 1)


def _linear(factor):
  return LinearRegression().fit(_X, factor * _X.ravel())


def _rounded(pcoll):
  return pcoll | beam.Map(lambda r: round(float(np.ravel(r.inference)[0]), 3))


class Doubler(BaseEstimator):
  """A custom estimator: not one of the types skops trusts by default."""
  def fit(self, x, y=None):
    return self

  def predict(self, x):
    return 2 * np.asarray(x)[:, 0]


class _Marker:
  """Unpickling it writes a file (what a malicious pickle could do)."""
  def __init__(self, path):
    self.path = path

  def __reduce__(self):
    return (open, (self.path, 'w'))


# -- skops ----------------------------------------------------------------------------


@pytest.mark.parametrize('file_type', [ModelFileType.SKOPS,
                                       ModelFileType.PICKLE])
def test_skops_model_runs_in_a_pipeline(tmp_path, file_type):
  # ModelFileType.SKOPS, or the default with a *.skops file name.
  path = str(tmp_path / 'three.skops')
  skops_io.dump(_linear(3), path)
  handler = SklearnModelHandlerNumpy(path, file_type)
  with beam.Pipeline() as p:
    out = p | beam.Create([np.array([1.0]), np.array([4.0])]) | RunInference(
        handler)
    assert_that(_rounded(out), equal_to([3.0, 12.0]))


def test_skops_pandas_handler(tmp_path):
  import pandas as pd
  path = str(tmp_path / 'm.skops')
  frame = pd.DataFrame({'a': _X.ravel()})
  skops_io.dump(LinearRegression().fit(frame, 4 * _X.ravel()), path)
  handler = SklearnModelHandlerPandas(path, ModelFileType.SKOPS)
  with beam.Pipeline() as p:
    out = p | beam.Create([pd.DataFrame({'a': [2.0]})]) | RunInference(handler)
    assert_that(_rounded(out), equal_to([8.0]))


def test_untrusted_skops_type_is_refused_naming_it(tmp_path):
  path = str(tmp_path / 'custom.skops')
  skops_io.dump(Doubler().fit(_X), path)
  name = f'{Doubler.__module__}.Doubler'
  assert name in skops_io.get_untrusted_types(file=path)
  with pytest.raises(Exception, match=name) as info:
    with beam.Pipeline() as p:
      _ = p | beam.Create([np.array([1.0])]) | RunInference(
          SklearnModelHandlerNumpy(path))
  assert 'trusted_types' in str(info.value)
  refused = SklearnModelHandlerNumpy(path)
  with pytest.raises(UntrustedModelTypesError, match='custom.skops'):
    refused.load_model()
  assert issubclass(UntrustedModelTypesError, RunInferenceError)
  # Trusted explicitly, it loads and runs.
  handler = SklearnModelHandlerNumpy(path, trusted_types=[name])
  with beam.Pipeline() as p:
    out = p | beam.Create([np.array([5.0])]) | RunInference(handler)
    assert_that(_rounded(out), equal_to([10.0]))


def test_trusted_types_must_be_a_list_of_names(tmp_path):
  with pytest.raises(ValueError, match='trusted_types'):
    SklearnModelHandlerNumpy('m.skops', trusted_types='numpy.float64')
  with pytest.raises(ValueError, match='trusted_types'):
    SklearnModelHandlerNumpy('m.skops', trusted_types=[int])


def test_corrupt_skops_file_names_the_file(tmp_path):
  path = tmp_path / 'bad.skops'
  path.write_bytes(b'not a zip file')
  with pytest.raises(ValueError, match='bad.skops'):
    SklearnModelHandlerNumpy(str(path)).load_model()


def test_skops_refresh_through_watched_pattern_keeps_types_checked(tmp_path):
  # A refresh candidate with an untrusted type is refused like the first load.
  good = str(tmp_path / 'good.skops')
  skops_io.dump(_linear(2), good)
  handler = SklearnModelHandlerNumpy(good)
  model = handler.load_model()
  assert round(float(model.predict([[3.0]])[0]), 3) == 6.0
  evil = str(tmp_path / 'evil.skops')
  skops_io.dump(Doubler().fit(_X), evil)
  handler.update_model_path(evil)
  with pytest.raises(UntrustedModelTypesError):
    handler.load_model()


# -- safetensors ----------------------------------------------------------------------


class _Linear(torch.nn.Module):
  def __init__(self, n=2):
    super().__init__()
    self.linear = torch.nn.Linear(n, 1)

  def forward(self, x):
    return self.linear(x)


class _KeyedLinear(_Linear):
  def forward(self, a, b):  # pylint: disable=arguments-differ
    return self.linear(torch.cat([a, b], dim=1))


def _weights(module):
  with torch.no_grad():
    module.linear.weight.copy_(torch.tensor([[2.0, 3.0]]))
    module.linear.bias.fill_(1.0)
  return module.state_dict()


def test_safetensors_state_dict_runs_in_a_pipeline(tmp_path):
  from runinference.pytorch_inference import PytorchModelHandlerTensor
  path = str(tmp_path / 'w.safetensors')
  safetensors_torch.save_file(_weights(_Linear()), path)
  handler = PytorchModelHandlerTensor(
      state_dict_path=path, model_class=_Linear, model_params={'n': 2})
  with beam.Pipeline() as p:
    out = p | beam.Create([torch.tensor([1.0, 1.0]),
                           torch.tensor([0.0, 2.0])]) | RunInference(handler)
    assert_that(_rounded(out), equal_to([6.0, 7.0]))


def test_safetensors_keyed_tensor_handler(tmp_path):
  from runinference.pytorch_inference import PytorchModelHandlerKeyedTensor
  path = str(tmp_path / 'k.safetensors')
  safetensors_torch.save_file(_weights(_KeyedLinear()), path)
  handler = PytorchModelHandlerKeyedTensor(
      state_dict_path=path, model_class=_KeyedLinear)
  example = {'a': torch.tensor([1.0]), 'b': torch.tensor([2.0])}
  with beam.Pipeline() as p:
    out = p | beam.Create([example]) | RunInference(handler)
    assert_that(_rounded(out), equal_to([9.0]))


def test_safetensors_errors_name_the_file(tmp_path):
  from runinference.pytorch_inference import PytorchModelHandlerTensor
  bad = tmp_path / 'bad.safetensors'
  bad.write_bytes(b'\x08\x00\x00\x00\x00\x00\x00\x00{"a":1}')
  with pytest.raises(RuntimeError, match='bad.safetensors'):
    PytorchModelHandlerTensor(state_dict_path=str(bad),
                              model_class=_Linear).load_model()
  good = str(tmp_path / 'w.safetensors')
  safetensors_torch.save_file(_weights(_Linear()), good)
  with pytest.raises(RuntimeError, match='load_model_args'):
    PytorchModelHandlerTensor(
        state_dict_path=good, model_class=_Linear,
        load_model_args={'weights_only': False}).load_model()


# -- ONNX ------------------------------------------------------------------------------


def test_onnx_model_runs_in_a_pipeline(tmp_path):
  pytest.importorskip('onnxruntime')
  skl2onnx = pytest.importorskip('skl2onnx')
  from skl2onnx.common.data_types import FloatTensorType

  from runinference.onnx_inference import OnnxModelHandlerNumpy
  onx = skl2onnx.convert_sklearn(
      _linear(7), initial_types=[('x', FloatTensorType([None, 1]))])
  path = str(tmp_path / 'm.onnx')
  with open(path, 'wb') as f:
    f.write(onx.SerializeToString())
  with beam.Pipeline() as p:
    out = p | beam.Create([np.array([2.0], dtype=np.float32)]) | RunInference(
        OnnxModelHandlerNumpy(path))
    assert_that(_rounded(out), equal_to([14.0]))


# -- pickles from paths others can write -----------------------------------------------


def _pickle(path, model):
  with open(path, 'wb') as f:
    pickle.dump(model, f)
  return str(path)


def _writable_warnings(caplog, path):
  return [r for r in caplog.records
          if r.levelno == logging.WARNING and path in r.getMessage() and
          'chmod go-w' in r.getMessage()]


def test_pickle_in_a_group_writable_folder_warns_once(tmp_path, caplog):
  shared = tmp_path / 'shared'
  shared.mkdir()
  path = _pickle(shared / 'm.pkl', _linear(2))
  os.chmod(shared, 0o775)
  handler = SklearnModelHandlerNumpy(path)
  with caplog.at_level(logging.WARNING):
    handler.load_model()
    handler.load_model()
  warnings = _writable_warnings(caplog, path)
  assert len(warnings) == 1
  assert 'drwxrwxr-x' in warnings[0].getMessage()


def test_other_writable_file_warns_and_private_one_does_not(tmp_path, caplog):
  private = tmp_path / 'private'
  private.mkdir(mode=0o700)
  os.chmod(private, 0o700)
  quiet = _pickle(private / 'ok.pkl', _linear(2))
  os.chmod(quiet, 0o644)
  loud = _pickle(private / 'loud.pkl', _linear(2))
  os.chmod(loud, 0o666)
  with caplog.at_level(logging.WARNING):
    SklearnModelHandlerNumpy(quiet).load_model()
    SklearnModelHandlerNumpy(loud).load_model()
  assert not _writable_warnings(caplog, quiet)
  assert 'rw-rw-rw-' in _writable_warnings(caplog, loud)[0].getMessage()


def test_torch_pickle_warns_but_safetensors_does_not(tmp_path, caplog):
  from runinference.pytorch_inference import PytorchModelHandlerTensor
  shared = tmp_path / 'open'
  shared.mkdir()
  os.chmod(shared, 0o777)
  pt = str(shared / 'w.pt')
  torch.save(_weights(_Linear()), pt)
  st = str(shared / 'w.safetensors')
  safetensors_torch.save_file(_weights(_Linear()), st)
  with caplog.at_level(logging.WARNING):
    PytorchModelHandlerTensor(state_dict_path=pt,
                              model_class=_Linear).load_model()
    PytorchModelHandlerTensor(state_dict_path=st,
                              model_class=_Linear).load_model()
  assert len(_writable_warnings(caplog, pt)) == 1
  assert not _writable_warnings(caplog, st)


def test_pickle_with_wrong_digest_never_runs_in_a_pipeline(tmp_path):
  marker = tmp_path / 'ran'
  evil = _pickle(tmp_path / 'evil.pkl', _Marker(str(marker)))
  with open(evil, 'rb') as f:
    actual = hashlib.sha256(f.read()).hexdigest()
  handler = SklearnModelHandlerNumpy(evil, model_sha256='e' * 64)
  with pytest.raises(Exception, match=actual):
    with beam.Pipeline() as p:
      _ = p | beam.Create([np.array([1.0])]) | RunInference(handler)
  assert not marker.exists()
