"""Turning a framework's batched output into one result per example."""
from __future__ import annotations

from itertools import repeat
from typing import Any, Iterable, Optional

from ._types import PredictionResult


def to_results(
    batch: Iterable, predictions: Any, model_id: Optional[str] = None
) -> list[PredictionResult]:
  """Pairs each example with its prediction. ``predictions`` may also be a
  dict of per-output sequences, which becomes one dict per example."""
  if isinstance(predictions, dict):
    names = list(predictions)
    rows = [dict(zip(names, row)) for row in zip(*predictions.values())]
    return list(map(PredictionResult, batch, rows, repeat(model_id)))
  return list(map(PredictionResult, batch, predictions, repeat(model_id)))


def check_file(path: str, what: str) -> None:
  """Raises FileNotFoundError naming ``path`` when it does not exist."""
  from apache_beam.io.filesystems import FileSystems
  try:
    exists = FileSystems.exists(path)
  except Exception:  # pylint: disable=broad-except  # unknown scheme: let the load say
    return
  if not exists:
    raise FileNotFoundError(
        f'{what} file not found: {path!r}. Check the path (it must be '
        'readable from every worker), or train/save the model there first.')
