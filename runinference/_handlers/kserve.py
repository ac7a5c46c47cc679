"""KServe's inference protocols over REST: V2 (Open Inference Protocol, also
spoken by Triton, MLServer, TorchServe) with typed tensors, and V1
(``{"instances": [...]}`` → ``{"predictions": [...]}``)."""
from __future__ import annotations

import math
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from ..exceptions import InvalidInputError
from .._core.naming import publish
from .http_handler import HttpModelHandler, expect_list, to_json
from .remote_errors import AnswerFormatError

__all__ = ['KServeV2ModelHandler', 'KServeV1ModelHandler']

_V2_TYPES = {
    'bool': 'BOOL', 'uint8': 'UINT8', 'uint16': 'UINT16', 'uint32': 'UINT32',
    'uint64': 'UINT64', 'int8': 'INT8', 'int16': 'INT16', 'int32': 'INT32',
    'int64': 'INT64', 'float16': 'FP16', 'float32': 'FP32',
    'float64': 'FP64',
}
_NUMPY_TYPES = {v: k for k, v in _V2_TYPES.items()}


def _model_path(model_name: str, model_version: Optional[str]) -> str:
  path = f'/models/{model_name}'
  return path + (f'/versions/{model_version}' if model_version else '')


class KServeV2ModelHandler(HttpModelHandler):
  """Runs rows on a model served with the V2 inference protocol.

  A row is an array (one input tensor named ``input_name``) or a dict of
  arrays (one tensor per key). Rows are stacked along a new first axis; the
  answer's tensors are split back into rows. A prediction is the row of the
  only output, or a dict ``{output name: row}`` when there are several (or
  ``output_names`` asks for them).
  """
  def __init__(
      self,
      base_url: str,
      model_name: str,
      *,
      model_version: Optional[str] = None,
      input_name: str = 'input-0',
      output_names: Optional[Sequence[str]] = None,
      parameters: Optional[Mapping[str, Any]] = None,
      **kwargs):
    """
    Args:
      base_url: the server, e.g. ``http://127.0.0.1:8080``.
      model_name, model_version: the served model.
      input_name: tensor name for array rows.
      output_names: outputs to ask for (default: all the model gives).
      parameters: V2 request ``parameters`` sent with every request.
      **kwargs: ``HttpModelHandler`` options.
    """
    super().__init__(base_url, **kwargs)
    self.model_name = model_name
    self.model_version = model_version
    self.input_name = input_name
    self.output_names = list(output_names) if output_names else None
    self.parameters = dict(parameters or {})

  def path(self, inference_args):
    return f'/v2{_model_path(self.model_name, self.model_version)}/infer'

  def encode(self, batch, inference_args):
    if isinstance(batch[0], Mapping):
      names = list(batch[0])
      tensors = {n: _stack([row[n] for row in batch], n) for n in names}
    else:
      tensors = {self.input_name: _stack(batch, self.input_name)}
    body: dict = {'inputs': [_tensor(n, a) for n, a in tensors.items()]}
    if self.output_names:
      body['outputs'] = [{'name': n} for n in self.output_names]
    params = {**self.parameters, **inference_args}
    if params:
      body['parameters'] = to_json(params)
    return body

  def decode(self, answer, batch):
    outputs = expect_list(answer['outputs'], '"outputs"')
    if not outputs:
      raise AnswerFormatError('expected at least one output, got "outputs": []')
    arrays = {o['name']: _array(o) for o in outputs}
    arrays = {k: a.reshape(1) if a.ndim == 0 else a for k, a in arrays.items()}
    if len(arrays) == 1 and not self.output_names:
      (array,) = arrays.values()
      return list(array)  # a wrong row count is reported by the caller
    for name, a in arrays.items():
      if len(a) != len(batch):
        raise AnswerFormatError(
            f'output {name!r}: expected shape[0] = {len(batch)} (one per '
            f'row), got shape {list(a.shape)}')
    return [{name: a[i] for name, a in arrays.items()}
            for i in range(len(batch))]

  def __repr__(self):
    return (f'KServeV2ModelHandler(base_url={self.base_url!r}, '
            f'model_name={self.model_name!r})')


def _stack(values: Sequence[Any], name: str) -> np.ndarray:
  try:
    return np.stack([np.asarray(v) for v in values])
  except ValueError as e:
    shapes = sorted({np.shape(v) for v in values})
    raise InvalidInputError(
        f'KServeV2ModelHandler: the rows of input {name!r} must share a shape '
        f'to be sent as one tensor; got shapes {shapes}.') from e


def _tensor(name: str, array: np.ndarray) -> dict:
  if array.dtype.kind in 'USO':
    datatype, data = 'BYTES', [str(x) for x in array.reshape(-1)]
  else:
    datatype = _V2_TYPES.get(array.dtype.name)
    if datatype is None:
      raise InvalidInputError(
          f'KServeV2ModelHandler: input {name!r} has dtype {array.dtype}, '
          f'which the V2 protocol has no type for; use one of '
          f'{sorted(_V2_TYPES)}.')
    data = array.reshape(-1).tolist()
  return {'name': name, 'shape': list(array.shape), 'datatype': datatype,
          'data': data}


def _array(output: Mapping[str, Any]) -> np.ndarray:
  """An output tensor as an array, checked against its ``shape`` and
  ``datatype``."""
  name, datatype = output['name'], output.get('datatype')
  shape = expect_list(output['shape'], f'output {name!r} "shape"')
  if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
             for d in shape):
    raise AnswerFormatError(
        f'expected output {name!r} "shape" to hold sizes, got {shape!r}')
  data = expect_list(output['data'], f'output {name!r} "data"')
  dtype = _NUMPY_TYPES.get(datatype)
  try:
    array = np.asarray(data, dtype=None if dtype else object)
  except (TypeError, ValueError) as e:  # ragged nested lists
    raise AnswerFormatError(
        f'output {name!r}: "data" is not a tensor ({e})') from e
  if dtype is not None:
    if array.size and array.dtype.kind not in 'biuf':
      bad = next((x for x in array.reshape(-1) if isinstance(x, (str, bytes))
                  or x is None or isinstance(x, (dict, list))), array.dtype)
      raise AnswerFormatError(
          f'output {name!r}: expected {datatype} numbers in "data", got '
          f'{bad!r}')
    array = array.astype(dtype, copy=False)
  if array.size != math.prod(shape):
    raise AnswerFormatError(
        f'output {name!r}: "shape" {shape} holds {math.prod(shape)} values, '
        f'"data" has {array.size}')
  return array.reshape(shape)



class KServeV1ModelHandler(HttpModelHandler):
  """Runs rows on a model served with KServe's V1 protocol
  (``POST /v1/models/<name>:predict``): each row is one JSON instance and
  each prediction the server's JSON answer for it."""
  def __init__(self, base_url: str, model_name: str, **kwargs):
    super().__init__(base_url, **kwargs)
    self.model_name = model_name

  def path(self, inference_args):
    return f'/v1/models/{self.model_name}:predict'

  def encode(self, batch, inference_args):
    body: dict = {'instances': [to_json(row) for row in batch]}
    if inference_args:
      body['parameters'] = to_json(inference_args)
    return body

  def decode(self, answer, batch):
    return expect_list(answer['predictions'], '"predictions"')

  def __repr__(self):
    return (f'KServeV1ModelHandler(base_url={self.base_url!r}, '
            f'model_name={self.model_name!r})')


publish(globals(), 'runinference.remote')
