"""The private refresh helpers of ``apache_beam.ml.inference.utils`` that
Beam's own tests use (re-exported by ``runinference.utils``): a file's
metadata to the newest ``ModelMetadata``, and a keyed first-seen filter."""
from __future__ import annotations

import apache_beam as beam
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec

from .watch import _START_TIME_STAMP, metadata_for

__all__ = ['_GetLatestFileByTimeStamp', '_ConvertIterToSingleton']


class _GetLatestFileByTimeStamp(beam.DoFn):
  """Keyed by path: ``(path, FileMetadata)`` in, ``(path, ModelMetadata)`` out
  when the file is newer than anything seen for that key (and than the start),
  else ``('', ModelMetadata('', ''))``."""
  LATEST = ReadModifyWriteStateSpec('latest', beam.coders.PickleCoder())

  def process(self, element, latest=beam.DoFn.StateParam(LATEST)):
    _, file_metadata = element
    seen = latest.read()
    if seen is None:
      seen = _START_TIME_STAMP
    updated = file_metadata.last_updated_in_seconds
    path = ''
    if updated > seen:
      latest.write(updated)
      path = file_metadata.path
    yield path, metadata_for(path)


class _ConvertIterToSingleton(beam.DoFn):
  """Keyed: passes the value on the first time a key is seen, drops repeats."""
  SEEN = ReadModifyWriteStateSpec('seen', beam.coders.BooleanCoder())

  def process(self, element, seen=beam.DoFn.StateParam(SEEN)):
    if not seen.read():
      seen.write(True)
      yield element[1]
