"""The checks that need no pipeline: each ``check_x(case, tmp_path)`` builds a
fresh handler, raises ``ConformanceError`` when the handler breaks what the
runtime relies on, or ``SkipCheck`` when the check does not apply."""
from __future__ import annotations

import copy
import os
import pickle
import re
import shutil
from pathlib import Path

from ..base import KeyedModelHandler, ModelHandler, PredictionResult
from ._case import NO_EXAMPLE, HandlerCase, SkipCheck, compare, fail


def build(case: HandlerCase, tmp_path: Path, **options) -> ModelHandler:
  handler = case.make_handler(tmp_path, **options)
  if not isinstance(handler, ModelHandler):
    raise fail(case, f'make_handler returned {type(handler).__name__}, not a '
               'runinference.base.ModelHandler.')
  return handler


def predict(case: HandlerCase, handler, examples, model=None) -> list:
  """``handler.run_inference`` on ``examples``, checked: one result per
  example, in order; a ``PredictionResult`` must carry its example. (A bare
  prediction is accepted, as RunInference wraps it, the way remote handlers
  return them.)"""
  model = handler.load_model() if model is None else model
  results = handler.run_inference(examples, model)
  if results is None:
    raise fail(case, 'run_inference returned None; return one '
               'PredictionResult per example.')
  results = list(results)
  if len(results) != len(examples):
    raise fail(case, f'run_inference returned {len(results)} results for '
               f'{len(examples)} examples; return exactly one per example.')
  for i, (example, result) in enumerate(zip(examples, results)):
    if not isinstance(result, PredictionResult):
      results[i] = PredictionResult(example, result)
    elif result.example is not example:
      raise fail(case, f'result {i} does not carry its example (got '
                 f'{_short(result.example)}): pass the input element itself '
                 'as PredictionResult.example.')
  return results


def inferences(case, handler, examples, model=None) -> list:
  return [r.inference for r in predict(case, handler, examples, model)]


def same_predictions(case, got: list, want: list, what: str) -> None:
  for i, (a, b) in enumerate(zip(got, want)):
    compare(case, a, b, f'{what} of example {i}')


def _short(value, limit: int = 60) -> str:
  text = repr(value)
  return text if len(text) <= limit else text[:limit - 3] + '...'


# -- the checks -------------------------------------------------------------------
def check_load(case: HandlerCase, tmp_path: Path) -> None:
  """``load_model()`` returns a model."""
  if build(case, tmp_path).load_model() is None:
    raise fail(case, 'load_model() returned None.')


def check_batch(case: HandlerCase, tmp_path: Path) -> None:
  """One ``PredictionResult`` per example, in order, each passing the case's
  oracle ``check``."""
  examples = case.examples()
  for example, result in zip(examples, predict(case, build(case, tmp_path),
                                               examples)):
    if case.check is not None:
      try:
        case.check(example, result.inference)
      except AssertionError as e:
        raise fail(case, f'wrong prediction {_short(result.inference)} for '
                   f'{_short(example)}: {e}') from e


def check_empty_batch(case: HandlerCase, tmp_path: Path) -> None:
  """An empty batch gives no results (not an error)."""
  handler = build(case, tmp_path)
  results = handler.run_inference([], handler.load_model())
  if results is None or list(results):
    raise fail(case, f'run_inference([]) returned {results!r}; an empty batch '
               'must give an empty list.')


def check_num_bytes(case: HandlerCase, tmp_path: Path) -> None:
  """``get_num_bytes(batch)`` is a positive int."""
  n = build(case, tmp_path).get_num_bytes(case.examples())
  if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
    raise fail(case, f'get_num_bytes(batch) returned {n!r}; it must be a '
               'positive int (bytes of the batch).')


def check_metrics_namespace(case: HandlerCase, tmp_path: Path) -> None:
  """``get_metrics_namespace()`` is a non-empty str (the expected one)."""
  ns = build(case, tmp_path).get_metrics_namespace()
  if not isinstance(ns, str) or not ns:
    raise fail(case, f'get_metrics_namespace() returned {ns!r}; it must be a '
               'non-empty str.')
  if case.expected_namespace is not None and ns != case.expected_namespace:
    raise fail(case, f'get_metrics_namespace() is {ns!r}, expected '
               f'{case.expected_namespace!r}.')


def check_repr(case: HandlerCase, tmp_path: Path) -> None:
  """``repr`` names the class and, if declared, the model location."""
  handler = build(case, tmp_path)
  text = repr(handler)
  name = type(handler).__name__
  if name not in text:
    raise fail(case, f'repr {text!r} does not name the class {name}.')
  location = handler.model_location
  if location is not None and location not in text:
    raise fail(case, f'repr {text!r} does not show the model location '
               f'{location!r}.')


def _names_it(message: str, bad, index: int) -> bool:
  if type(bad).__name__ in message:
    return True
  if _short(bad, 40) in message or str(bad)[:40] in message:
    return True
  parts = bad.values() if isinstance(bad, dict) else (
      bad if isinstance(bad, (list, tuple)) else ())
  if any(len(str(v)) >= 3 and str(v)[:40] in message for v in parts):
    return True  # names the bad value inside the example
  pattern = rf'\b(example|element|index|row|item|input)s?\b\D{{0,6}}\b{index}\b'
  return bool(re.search(pattern, message, re.IGNORECASE)) or (
      f'[{index}]' in message)


def check_bad_input(case: HandlerCase, tmp_path: Path) -> None:
  """A batch holding a bad example fails with an error naming it (its
  position, type or value)."""
  if case.bad_example is NO_EXAMPLE:
    raise SkipCheck('the case has no bad_example')
  handler = build(case, tmp_path)
  good = case.examples()
  batch = [good[0], case.bad_example, good[1]]
  try:
    list(handler.run_inference(batch, handler.load_model()))
  except Exception as e:  # pylint: disable=broad-except
    message = f'{type(e).__name__}: {e}'
    if not _names_it(message, case.bad_example, 1):
      raise fail(case, f'the error for a bad example does not say which: '
                 f'{message!r}; name its position (example 1), type '
                 f'({type(case.bad_example).__name__}) or value.') from e
    return
  raise fail(case, f'run_inference accepted the bad example '
             f'{_short(case.bad_example)}; reject it with a TypeError or '
             'ValueError that names it.')


def check_unkeyed_to_keyed(case: HandlerCase, tmp_path: Path) -> None:
  """Unkeyed examples given to ``KeyedModelHandler(handler)`` are a
  TypeError that mentions keys."""
  keyed = KeyedModelHandler(build(case, tmp_path))
  try:
    keyed.run_inference([case.examples()[0]], keyed.load_model())
  except TypeError as e:
    if 'key' not in str(e).lower():
      raise fail(case, f'unkeyed data to a KeyedModelHandler: {e!r} does not '
                 'mention keys.') from e
    return
  except Exception as e:  # pylint: disable=broad-except
    raise fail(case, f'unkeyed data to a KeyedModelHandler raised {e!r}, not '
               'a TypeError about keys.') from e
  raise fail(case, 'KeyedModelHandler accepted an unkeyed example.')


def check_pickle(case: HandlerCase, tmp_path: Path) -> None:
  """The handler survives pickle and cloudpickle (as Beam ships it to
  workers) and predicts the same afterwards."""
  import cloudpickle
  handler = build(case, tmp_path)
  examples = case.examples()
  want = inferences(case, handler, examples)
  for name, dumps, loads in (('pickle', pickle.dumps, pickle.loads),
                             ('cloudpickle', cloudpickle.dumps, pickle.loads)):
    try:
      clone = loads(dumps(handler))
    except Exception as e:  # pylint: disable=broad-except
      raise fail(case, f'the handler does not survive {name}: {e!r}. Keep '
                 'paths and options on it, load the model in load_model.'
                 ) from e
    same_predictions(case, inferences(case, clone, examples), want,
                     f'predictions after {name}')


def _copy_model(location: str, tmp_path: Path) -> str:
  source = Path(location)
  target = tmp_path / 'refreshed' / source.name
  target.parent.mkdir(parents=True, exist_ok=True)
  if source.is_dir():
    shutil.copytree(source, target)
  else:
    shutil.copy2(source, target)
  return str(target)


def check_deepcopy_update_model_path(case: HandlerCase, tmp_path: Path) -> None:
  """What refresh does: ``copy.deepcopy`` the handler, point the copy at a
  new model file with ``update_model_path``; the copy loads from there, the
  original is untouched."""
  handler = build(case, tmp_path)
  examples = case.examples()
  want = inferences(case, handler, examples)
  clone = copy.deepcopy(handler)
  same_predictions(case, inferences(case, clone, examples), want,
                   'predictions of a deep copy')
  location = handler.model_location
  if location is None or not os.path.exists(location):
    return  # no local model file to move: the deep copy is what applies
  moved = _copy_model(location, tmp_path)
  clone.update_model_path(moved)
  if clone.model_location != moved:
    raise fail(case, f'after update_model_path({moved!r}) model_location is '
               f'{clone.model_location!r}.')
  if handler.model_location != location:
    raise fail(case, 'update_model_path on a deep copy changed the original '
               f'handler (now {handler.model_location!r}).')
  same_predictions(case, inferences(case, clone, examples), want,
                   'predictions of the model at its new path')
  missing = copy.deepcopy(handler)
  missing.update_model_path(str(tmp_path / 'no-such-model' / Path(location).name))
  try:
    missing.load_model()
  except Exception:  # pylint: disable=broad-except
    return
  raise fail(case, 'load_model() succeeded after update_model_path pointed at '
             'a missing file: the handler does not load from its new path.')
