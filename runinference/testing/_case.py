"""What the conformance kit needs to know about a handler: ``HandlerCase``,
plus the small helpers the checks share (comparing predictions, skipping)."""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Optional, Sequence

from ..exceptions import ConfigurationTypeError
from ..exceptions import ConformanceError, SkipCheck  # noqa: F401  (re-exported)

#: ``bad_example`` when the case has none (the bad-input checks are skipped).
NO_EXAMPLE = type('NoExample', (), {'__repr__': lambda self: 'NO_EXAMPLE'})()


@dataclasses.dataclass(frozen=True)
class HandlerCase:
  """One handler to put through the conformance checks.

  Attributes:
    name: short id of the case (test ids, reports).
    make_handler: ``make_handler(tmp_path, **options)`` builds the handler,
      writing any model file it needs under ``tmp_path`` (a
      ``pathlib.Path``). ``options`` are ``ModelHandler`` options the checks
      ask for (``large_model=True``): pass them to the handler's
      constructor.
    make_examples: at least two valid examples for one batch.
    bad_example: an example the handler must reject with an error that
      names it (``NO_EXAMPLE``: the bad-input checks are skipped).
    expected_namespace: the metrics namespace it must report (None: any
      non-empty string).
    check: ``check(example, inference)`` raises if a prediction is wrong
      (an oracle); optional.
    compare: ``compare(a, b)`` raises if two predictions of the same example
      differ (default: numeric arrays equal within ``rtol=1e-5``, others
      ``==``).
    make_keyed_examples: ``(key, example)`` pairs for the keyed check
      (default: ``('k0', example0)``, ...).
    make_chunk: ``make_chunk(examples) -> (chunk, feature_columns)`` for
      the columnar check: a pandas DataFrame / pyarrow table whose rows are
      the examples' rows in order (default: built from 1-D numeric arrays or
      DataFrame examples).
    gpu: the handler needs a GPU; without one every check is skipped.
    skip: ``{check name: reason}`` for checks that do not apply.
  """
  name: str
  make_handler: Callable[..., Any]
  make_examples: Callable[[], Sequence[Any]]
  bad_example: Any = NO_EXAMPLE
  expected_namespace: Optional[str] = None
  check: Optional[Callable[[Any, Any], None]] = None
  compare: Optional[Callable[[Any, Any], None]] = None
  make_keyed_examples: Optional[Callable[[], Sequence[tuple]]] = None
  make_chunk: Optional[Callable[[Sequence[Any]], tuple]] = None
  gpu: bool = False
  skip: Mapping[str, str] = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    if not isinstance(self.name, str) or not self.name:
      raise ConfigurationTypeError(f'HandlerCase.name must be a non-empty str, got '
                      f'{self.name!r}.')
    for field in ('make_handler', 'make_examples'):
      if not callable(getattr(self, field)):
        raise ConfigurationTypeError(f'HandlerCase.{field} must be callable, got '
                        f'{getattr(self, field)!r}.')

  def examples(self) -> list:
    examples = list(self.make_examples())
    if len(examples) < 2:
      raise ConformanceError(
          f'{self.name}: make_examples() gave {len(examples)} example(s); '
          'the checks need at least two.')
    return examples

  def keyed_examples(self) -> list:
    if self.make_keyed_examples is not None:
      return list(self.make_keyed_examples())
    return [(f'k{i}', x) for i, x in enumerate(self.examples())]


def to_numpy(value) -> Any:
  """``value`` as a numpy array when it is a tensor/frame/array-like of
  numbers; else unchanged."""
  import numpy
  if hasattr(value, 'detach') and hasattr(value, 'cpu'):  # torch
    value = value.detach().cpu().numpy()
  elif hasattr(value, 'numpy') and callable(value.numpy):  # tf
    value = value.numpy()
  elif hasattr(value, 'to_numpy'):  # pandas
    value = value.to_numpy()
  if isinstance(value, dict):
    return {k: to_numpy(v) for k, v in value.items()}
  try:
    array = numpy.asarray(value)
  except Exception:  # pylint: disable=broad-except
    return value
  return array if array.dtype.kind in 'biufc' else value


def default_compare(a, b) -> None:
  """Numeric predictions equal within ``rtol=1e-4`` / ``atol=1e-5`` (a
  batch's composition, e.g. padding, may change a float32 model's last
  bits); others ``==``."""
  import numpy
  a, b = to_numpy(a), to_numpy(b)
  if isinstance(a, dict) and isinstance(b, dict):
    if sorted(a) != sorted(b):
      raise ConformanceError(f'outputs {sorted(a)} != {sorted(b)}')
    for k in a:
      try:
        default_compare(a[k], b[k])
      except AssertionError as e:
        raise ConformanceError(f'output {k!r}: {str(e).strip()}') from None
    return
  if isinstance(a, numpy.ndarray) and isinstance(b, numpy.ndarray):
    try:
      numpy.testing.assert_allclose(
          a.astype(float), b.astype(float), rtol=1e-4, atol=1e-5)
    except AssertionError as e:
      raise ConformanceError(str(e).strip()) from None
    return
  if a != b:
    raise ConformanceError(f'{a!r} != {b!r}')


def compare(case: HandlerCase, a, b, what: str) -> None:
  try:
    (case.compare or default_compare)(a, b)
  except AssertionError as e:
    raise ConformanceError(f'{case.name}: {what} differ: {e}') from e


def fail(case: HandlerCase, message: str) -> ConformanceError:
  return ConformanceError(f'{case.name}: {message}')
