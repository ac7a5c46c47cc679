"""Pipeline elements -> flat records of plain values that Arrow stores as
DuckDB columns (nested dicts become STRUCTs, arrays and lists LISTs)."""
from __future__ import annotations

import dataclasses
import datetime
import decimal
from typing import Any

import numpy as np

from runinference.exceptions import (InvalidInputError,
                                     InvalidInputTypeError)

_PLAIN = (str, bytes, bool, int, float, decimal.Decimal, datetime.date,
          datetime.time, datetime.timedelta)
_EXACT = frozenset((str, bytes, bool, int, float, type(None)))


def _as_mapping(element: Any):
  if isinstance(element, dict):
    return element
  if hasattr(element, '_asdict'):  # NamedTuple, PredictionResult, beam.Row
    return element._asdict()
  if dataclasses.is_dataclass(element) and not isinstance(element, type):
    return {f.name: getattr(element, f.name)
            for f in dataclasses.fields(element)}
  return None


def to_record(element: Any) -> dict:
  """One element -> one record (column name -> plain value).

  dicts, NamedTuples (``PredictionResult``), ``beam.Row``s and dataclasses
  are records; ``(key, record)`` pairs (keyed RunInference output) become the
  record with a ``key`` column first.
  """
  mapping = _as_mapping(element)
  if mapping is None and isinstance(element, tuple) and len(element) == 2:
    inner = _as_mapping(element[1])
    if inner is not None:
      if 'key' in inner:
        raise InvalidInputError(
            'WriteToDuckDB: a (key, record) pair whose record already has a '
            "'key' field; map the pairs to dicts yourself")
      mapping = {'key': element[0], **inner}
  if mapping is None:
    raise InvalidInputTypeError(
        'WriteToDuckDB writes dicts, NamedTuples (e.g. PredictionResult), '
        'beam.Rows, dataclasses or (key, one of those) pairs; got '
        f'{type(element).__name__}: {element!r:.80}. Map the elements to '
        'dicts first.')
  return {str(k): _plain(v, str(k)) for k, v in mapping.items()}


def _plain(value: Any, path: str) -> Any:
  if type(value) in _EXACT:  # the common case, checked first
    return value
  if isinstance(value, _PLAIN):
    return value
  if isinstance(value, np.ndarray):
    if value.dtype == object:
      return [_plain(v, f'{path}[]') for v in value.tolist()]
    return value.tolist()
  if isinstance(value, np.generic):
    return value.item()
  if isinstance(value, (list, tuple)) and not hasattr(value, '_asdict'):
    return [_plain(v, f'{path}[]') for v in value]
  mapping = _as_mapping(value)
  if mapping is not None:
    return {str(k): _plain(v, f'{path}.{k}') for k, v in mapping.items()}
  if hasattr(value, 'tolist'):  # torch / TensorFlow tensors and the like
    return _plain(value.tolist(), path)
  raise InvalidInputTypeError(
      f'WriteToDuckDB: field {path!r} holds a {type(value).__name__}, which '
      'has no DuckDB column type; convert it (e.g. to a list, dict or str) '
      'before writing')
