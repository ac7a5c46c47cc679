"""Handler cases for the conformance suite (tests/handlers/test_conformance.py).

Each module here defines ``CASES``: a list of ``HandlerCase``. A case builds a
real handler over a tiny model it trains/saves into ``tmp_path``."""
from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from typing import Any, Callable


@dataclasses.dataclass
class HandlerCase:
  name: str
  # (tmp_path, **options) -> ModelHandler; options (e.g. large_model=True)
  # go to the handler's constructor.
  make_handler: Callable[..., Any]
  make_examples: Callable[[], list]  # at least 3 valid examples
  bad_example: Any  # an input the handler must reject with a clear error
  expected_namespace: str
  # Optional: check one prediction against its example.
  check: Callable[[Any, Any], None] | None = None
  # Optional: compare(a, b) raises if two predictions of one example differ
  # (e.g. a float tolerance for models whose numerics depend on padding).
  compare: Callable[[Any, Any], None] | None = None


def all_cases() -> list:
  """pytest params: one per case; a module whose framework is missing
  (``pytest.importorskip`` at its top) gives one skipped param."""
  import pytest
  params = []
  for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    try:
      module = importlib.import_module(f'{__name__}.{info.name}')
    except pytest.skip.Exception as e:
      params.append(
          pytest.param(None, id=info.name, marks=pytest.mark.skip(str(e))))
      continue
    params.extend(pytest.param(c, id=c.name) for c in module.CASES)
  return params
