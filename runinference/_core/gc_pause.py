"""Pausing Python's cyclic garbage collector around bulk allocations.

Building thousands of objects at once (a batch's results, a block of rows)
with the GC on triggers repeated full collections over the whole heap: the
new objects survive young collections, get promoted and push the old
generation past its threshold. Reference counting frees them either way; the
pause only stops the collector from scanning the heap again and again.
"""
from __future__ import annotations

import contextlib
import gc
from itertools import chain
from typing import Iterable


@contextlib.contextmanager
def gc_paused():
  """The cyclic GC off inside the block (unless it was off already)."""
  if not gc.isenabled():
    yield
    return
  gc.disable()
  try:
    yield
  finally:
    gc.enable()


class GcPause:
  """A pause that spans several calls (e.g. from the first row buffered into
  a block until the block is emitted). ``resume`` only re-enables a GC this
  object turned off; call it at the end of every unit of work and on
  teardown, so that a failure in between cannot leave the GC off."""
  def __init__(self):
    self._paused = False

  def pause(self) -> None:
    if not self._paused and gc.isenabled():
      gc.disable()
      self._paused = True

  def resume(self) -> None:
    if self._paused:
      self._paused = False
      gc.enable()

  def resume_once_sent(self, outputs: list) -> Iterable:
    """``outputs`` to return from a DoFn call made under this pause: once
    Beam has passed the last of them downstream, the list is emptied and the
    GC resumed. Had it resumed with them alive, the next collection would
    scan them all and move them to an older generation, to be scanned again
    there. (A bundle that fails before then is resumed by the caller's
    ``resume`` in start/finish_bundle or teardown.)"""
    return chain(outputs, _ResumeWhenIterated(self, outputs))


class _ResumeWhenIterated:
  def __init__(self, pause: GcPause, outputs: list):
    self._pause = pause
    self._outputs = outputs

  def __iter__(self):
    self._outputs.clear()
    self._pause.resume()
    return iter(())
