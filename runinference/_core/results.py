"""Turning a framework's batched output into one result per example."""
from __future__ import annotations

from itertools import repeat
from typing import Any, Iterable, Optional

from ..exceptions import ModelFileNotFoundError, ResultCountError
from .types import PredictionResult

_tuple_new = tuple.__new__


def to_results(
    batch: Iterable, predictions: Any, model_id: Optional[str] = None
) -> list[PredictionResult]:
  """Pairs each example with its prediction. ``predictions`` may also be a
  dict of per-output sequences, which becomes one dict per example."""
  if isinstance(predictions, dict):
    for name, column in predictions.items():
      _check_count(batch, column, f'output {name!r}')
    names = list(predictions)
    predictions = [dict(zip(names, row)) for row in zip(*predictions.values())]
  else:
    _check_count(batch, predictions, 'the model')
  # tuple.__new__ over zip builds the NamedTuples without a Python-level call
  # per example (about twice as fast as calling PredictionResult).
  return list(
      map(_tuple_new, repeat(PredictionResult),
          zip(batch, predictions, repeat(model_id))))


def _check_count(batch, predictions, what: str) -> None:
  # zip would silently drop extra predictions: an error for the batch. Too
  # few give fewer results, which the engine rejects (a direct call keeps
  # the reference's behaviour, which Beam's own tests rely on).
  try:
    n, m = len(batch), len(predictions)
  except TypeError:  # unsized (a generator): the engine counts the results
    return
  if m > n:
    raise ResultCountError(
        f'{what} returned {m} predictions for a batch of {n} examples; it '
        'must return one per example.')


def check_file(path: str, what: str) -> None:
  """Raises FileNotFoundError naming ``path`` when it does not exist."""
  from apache_beam.io.filesystems import FileSystems
  try:
    exists = FileSystems.exists(path)
  except Exception:  # pylint: disable=broad-except  # unknown scheme: let the load say
    return
  if not exists:
    raise ModelFileNotFoundError(
        f'{what} file not found: {path!r}. Check the path (it must be '
        'readable from every worker), or train/save the model there first.')
