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
