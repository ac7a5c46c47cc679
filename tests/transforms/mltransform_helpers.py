"""Shared helpers of the MLTransform tests: run a pipeline, collect its rows."""
import os
import pickle
import tempfile

import apache_beam as beam


def _dump(rows, path):
  with open(path, 'wb') as f:
    pickle.dump(rows, f)


def collect(pcoll, label='Collect'):
  """Attach a sink to ``pcoll``; returns a function that reads what it got
  (call it after the pipeline ran)."""
  path = os.path.join(tempfile.mkdtemp(), 'rows.pkl')
  _ = (pcoll
       | f'{label}ToDicts' >> beam.Map(
           lambda r: r.as_dict() if hasattr(r, 'as_dict') else r)
       | f'{label}ToList' >> beam.combiners.ToList()
       | f'{label}Dump' >> beam.Map(_dump, path))

  def read():
    with open(path, 'rb') as f:
      return pickle.load(f)

  return read


def run(data, mltransform, dead_letters=False):
  """Runs ``data | mltransform``; returns its rows (and dead letters)."""
  with beam.Pipeline() as p:
    out = p | beam.Create(data) | mltransform
    if dead_letters:
      good, bad = out
      read_good, read_bad = collect(good, 'Good'), collect(bad, 'Bad')
    else:
      read_good = collect(out)
  if dead_letters:
    return read_good(), read_bad()
  return read_good()
