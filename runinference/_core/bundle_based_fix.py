"""Batched DoFns on Beam's bundle-based DirectRunner.

The DirectRunner runs a pipeline with a ``TestStream``, Pub/Sub or a
processing-time timer on its bundle-based runner, whose ParDo evaluator
calls ``process`` per element: a DoFn that defines only ``process_batch``
(MLTransform's row-gathering step) fails there with ``NotImplementedError``.
This fix makes that evaluator hand such a DoFn batches, as Beam's SDK
harness does: up to ``MAX_BATCH_SIZE`` elements, grouped by timestamp,
windows and pane, and the rest at the bundle's end. Other DoFns are left
to the evaluator as they were. Installed once when MLTransform's engine is
imported; a Beam without that evaluator is left alone.
"""
from __future__ import annotations

import logging

from .dofn_kinds import MAX_BATCH_SIZE, input_batches, takes_batches

_LOGGER = logging.getLogger(__name__)
_BUFFER = '_runinference_batch'
_installed = False


def _flush(evaluator) -> None:
  buffered = evaluator.__dict__.pop(_BUFFER, None)
  if not buffered:
    return
  dofn = evaluator._applied_ptransform.transform.dofn  # pylint: disable=protected-access
  for batch in input_batches(buffered, dofn):
    evaluator.runner.process_batch(batch)


def install() -> bool:
  """Makes the bundle-based ParDo evaluator batch; True if it did."""
  global _installed
  if _installed:
    return True
  try:
    from apache_beam.runners.direct import transform_evaluator
    cls = transform_evaluator._ParDoEvaluator  # pylint: disable=protected-access
    process_element, finish_bundle = cls.process_element, cls.finish_bundle
  except (ImportError, AttributeError):
    _LOGGER.warning('Beam has no bundle-based ParDo evaluator to fix; '
                    'batched DoFns stay per element there.')
    return False

  def batching_process_element(self, element):
    if not takes_batches(self._applied_ptransform.transform.dofn):  # pylint: disable=protected-access
      return process_element(self, element)
    buffered = self.__dict__.setdefault(_BUFFER, [])
    buffered.append(element)
    if len(buffered) >= MAX_BATCH_SIZE:
      _flush(self)
    return None

  def batching_finish_bundle(self):
    _flush(self)
    return finish_bundle(self)

  cls.process_element = batching_process_element  # type: ignore[method-assign]
  cls.finish_bundle = batching_finish_bundle  # type: ignore[method-assign]
  _installed = True
  return True


def installed() -> bool:
  return _installed
