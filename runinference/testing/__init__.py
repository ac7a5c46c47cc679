"""A conformance kit for model handlers, in the spirit of scikit-learn's
``check_estimator`` / ``parametrize_with_checks``: it proves a handler
honours what RunInference relies on (load, batch, empty batch, keys, bad
input named, dead letters, pickling, deep copy + ``update_model_path`` as
refresh does, ``large_model`` sharing, ``get_num_bytes``, metrics namespace,
repr and -- where the handler offers ``matrix_predictor()`` -- the same
predictions through ``RunInferenceColumnar``).

Describe the handler once::

    from runinference.testing import HandlerCase, check_model_handler

    case = HandlerCase(
        name='gazetteer',
        make_handler=lambda tmp, **options: MyHandler(write_model(tmp), **options),
        make_examples=lambda: ['Ada in Berlin.', 'Nothing here.'],
        bad_example=42)
    check_model_handler(case)          # raises ConformanceError listing failures

or, under pytest, one test per (case, check)::

    @parametrize_with_checks([case])
    def test_my_handler(case, check, tmp_path):
      check(case, tmp_path)

pytest is imported only by ``parametrize_with_checks``.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence, Union

from .._core.naming import relabel
from ..exceptions import ConfigurationError, ConfigurationTypeError

from ._case import (NO_EXAMPLE, ConformanceError, HandlerCase, SkipCheck,
                    default_compare)
from ._checks import (check_bad_input, check_batch, check_deepcopy_update_model_path,
                      check_empty_batch, check_load, check_metrics_namespace,
                      check_num_bytes, check_pickle, check_repr,
                      check_unkeyed_to_keyed)
from ._pipeline_checks import (check_columnar, check_dead_letter, check_keyed,
                               check_large_model, check_pipeline)

__all__ = [
    'CHECKS',
    'CheckResult',
    'ConformanceError',
    'HandlerCase',
    'NO_EXAMPLE',
    'SkipCheck',
    'check_model_handler',
    'default_compare',
    'gpu_available',
    'parametrize_with_checks',
]

#: Every check, by name, in the order they run.
CHECKS: dict[str, Callable[[HandlerCase, Path], None]] = {
    'load': check_load,
    'batch': check_batch,
    'empty_batch': check_empty_batch,
    'num_bytes': check_num_bytes,
    'metrics_namespace': check_metrics_namespace,
    'repr': check_repr,
    'bad_input': check_bad_input,
    'unkeyed_to_keyed': check_unkeyed_to_keyed,
    'pickle': check_pickle,
    'deepcopy_update_model_path': check_deepcopy_update_model_path,
    'pipeline': check_pipeline,
    'keyed': check_keyed,
    'dead_letter': check_dead_letter,
    'large_model': check_large_model,
    'columnar': check_columnar,
}


@dataclasses.dataclass(frozen=True)
class CheckResult:
  """The outcome of one check: ``status`` is 'passed', 'skipped' or
  'failed'; ``detail`` the skip reason or the error."""
  case: str
  check: str
  status: str
  detail: str = ''
  seconds: float = 0.0


def gpu_available() -> bool:
  """Whether a CUDA GPU can be used here (torch if installed, else
  ``nvidia-smi``)."""
  if importlib.util.find_spec('torch') is not None:
    import torch
    return bool(torch.cuda.is_available())
  if shutil.which('nvidia-smi') is None:
    return False
  try:
    return subprocess.run(['nvidia-smi', '-L'], capture_output=True,
                          timeout=30, check=False).returncode == 0
  except (OSError, subprocess.TimeoutExpired):
    return False


def _skip_reason(case: HandlerCase, name: str) -> Optional[str]:
  if name in case.skip:
    return case.skip[name]
  if case.gpu and not gpu_available():
    return 'needs a GPU (HandlerCase(gpu=True)); none here'
  return None


def _selected(checks: Optional[Iterable[str]]) -> list:
  names = list(CHECKS) if checks is None else list(checks)
  unknown = [n for n in names if n not in CHECKS]
  if unknown:
    raise ConfigurationError(f'unknown check(s) {unknown}; the checks are '
                     f'{list(CHECKS)}.')
  return names


def _as_case(case_or_factory, examples, bad_example) -> HandlerCase:
  if isinstance(case_or_factory, HandlerCase):
    if examples is not None:
      raise ConfigurationTypeError('give examples in the HandlerCase, not beside it.')
    return case_or_factory
  if not callable(case_or_factory):
    raise ConfigurationTypeError(
        'check_model_handler takes a HandlerCase or a handler factory '
        f'make_handler(tmp_path, **options), got {case_or_factory!r}.')
  if examples is None:
    raise ConfigurationTypeError('with a handler factory, pass examples=[...] (two or '
                    'more valid examples).')
  frozen = list(examples)
  return HandlerCase(
      name=getattr(case_or_factory, '__name__', 'handler'),
      make_handler=case_or_factory, make_examples=lambda: frozen,
      bad_example=bad_example)


def check_model_handler(
    case_or_factory: Union[HandlerCase, Callable],
    examples: Optional[Sequence] = None,
    *,
    bad_example=NO_EXAMPLE,
    checks: Optional[Iterable[str]] = None,
    tmp_path: Optional[Path] = None) -> list:
  """Runs the checks on one handler; returns a ``CheckResult`` per check or
  raises ``ConformanceError`` naming every check that failed.

  Args:
    case_or_factory: a ``HandlerCase``, or ``make_handler(tmp_path,
      **options)`` together with ``examples`` (and ``bad_example``).
    checks: names from ``CHECKS`` to run (default: all).
    tmp_path: where model files may be written (default: a temporary
      directory per check, removed afterwards).
  """
  case = _as_case(case_or_factory, examples, bad_example)
  results = []
  for name in _selected(checks):
    reason = _skip_reason(case, name)
    if reason is not None:
      results.append(CheckResult(case.name, name, 'skipped', reason))
      continue
    with tempfile.TemporaryDirectory(prefix=f'ri_check_{name}_') as tmp:
      where = Path(tmp) if tmp_path is None else Path(tmp_path) / name
      where.mkdir(parents=True, exist_ok=True)
      start = time.perf_counter()
      status, detail = 'passed', ''
      try:
        CHECKS[name](case, where)
      except SkipCheck as e:
        status, detail = 'skipped', str(e)
      except Exception as e:  # pylint: disable=broad-except
        status, detail = 'failed', f'{type(e).__name__}: {e}'
      results.append(CheckResult(case.name, name, status, detail,
                                 time.perf_counter() - start))
  failed = [r for r in results if r.status == 'failed']
  if failed:
    raise ConformanceError(
        f'{case.name}: {len(failed)} of {len(results)} checks failed:\n' +
        '\n'.join(f'  {r.check}: {r.detail}' for r in failed))
  return results


class _PytestCheck:
  """A check as pytest runs it: ``SkipCheck`` becomes ``pytest.skip``."""
  def __init__(self, name: str):
    self.name = name

  def __call__(self, case: HandlerCase, tmp_path: Path) -> None:
    import pytest
    reason = _skip_reason(case, self.name)
    if reason is not None:
      pytest.skip(reason)
    try:
      CHECKS[self.name](case, Path(tmp_path))
    except SkipCheck as e:
      pytest.skip(str(e))

  def __repr__(self):
    return f'check_{self.name}'


def parametrize_with_checks(cases: Iterable, *,
                            checks: Optional[Iterable[str]] = None):
  """A ``pytest.mark.parametrize('case, check', ...)`` over every case and
  check, with ids ``<case>-<check>``; decorate a test ``(case, check,
  tmp_path)`` that calls ``check(case, tmp_path)``. A case may be a
  ``pytest.param(case, marks=...)``; GPU cases get ``pytest.mark.gpu``
  (register the marker) and are skipped without a GPU."""
  import pytest
  names = _selected(checks)
  params = []
  for item in cases:
    marks = ()
    if hasattr(item, 'values') and hasattr(item, 'marks'):  # pytest.param
      item, marks = item.values[0], tuple(item.marks)
    if not isinstance(item, HandlerCase):
      raise ConfigurationTypeError(f'parametrize_with_checks takes HandlerCase items, got '
                      f'{item!r}.')
    if item.gpu:
      marks += (pytest.mark.gpu,)
    params.extend(
        pytest.param(item, _PytestCheck(n), id=f'{item.name}-{n}', marks=marks)
        for n in names)
  return pytest.mark.parametrize('case, check', params)


relabel(globals())
