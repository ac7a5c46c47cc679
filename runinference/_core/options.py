"""Rejecting unknown options with a clear error naming the likely intended
one (shared by RunInference and ModelHandler)."""
from __future__ import annotations

import difflib
from typing import Iterable, Optional

from ..exceptions import ConfigurationTypeError


def suggest(name: str, valid: Iterable[str]) -> Optional[str]:
  """The valid option ``name`` most likely misspells, if any."""
  close = difflib.get_close_matches(name, list(valid), n=1, cutoff=0.6)
  return close[0] if close else None


def reject_unknown(owner: str, given: Iterable[str], valid: Iterable[str],
                   extra: str = '') -> None:
  """Raises ``ConfigurationTypeError`` if ``given`` holds a name not in
  ``valid``, naming each unknown option and what it probably meant."""
  valid = sorted(set(valid))
  unknown = sorted(set(given) - set(valid))
  if not unknown:
    return
  parts = []
  for name in unknown:
    guess = suggest(name, valid)
    parts.append(f'{name!r} (did you mean {guess!r}?)' if guess else repr(name))
  raise ConfigurationTypeError(
      f'{owner} got unknown option(s): {", ".join(parts)}. '
      f'Valid options: {", ".join(valid)}.{extra}')
