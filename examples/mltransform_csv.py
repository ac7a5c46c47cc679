"""Prepare training data with MLTransform, then reuse its artifacts on new rows.

1. Write mode: the training CSV (review text, price, rating, label) goes through
   ScaleToZScore(price), Bucketize(rating, 3 buckets),
   ComputeAndApplyVocabulary(review, split on spaces, 1 OOV bucket) and
   TFIDF(review). The statistics (mean/variance, bucket boundaries, the
   vocabulary, document frequencies) are computed over the whole file with
   Beam combiners and written, readable, under ``<out>/artifacts``.
2. Read mode: new rows get exactly the same transformation from those
   artifacts (no statistics recomputed) — what a serving pipeline does.

Both write JSON lines of the transformed rows to ``<out>``.

    python examples/mltransform_csv.py --out mlt_out
"""
import argparse
import csv
import json
import os
import sys

import apache_beam as beam
import numpy as np

try:
  from runinference.transforms import tft
  from runinference.transforms.base import MLTransform
except ImportError:  # run from a checkout without installing
  sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))
  from runinference.transforms import tft
  from runinference.transforms.base import MLTransform

HERE = os.path.dirname(os.path.abspath(__file__))
COLUMNS = ['review', 'price', 'rating', 'label']


def parse(line: str) -> dict:
  review, price, rating, label = next(csv.reader([line]))
  return {'review': review, 'price': float(price), 'rating': int(rating),
          'label': int(label)}


def to_json(row) -> str:
  return json.dumps({k: v.tolist() if isinstance(v, np.ndarray) else v
                     for k, v in row.as_dict().items()}, default=_bytes)


def _bytes(v):
  return v.decode() if isinstance(v, bytes) else str(v)


def read_csv(p, path, label):
  return (p
          | f'Read{label}' >> beam.io.ReadFromText(path, skip_header_lines=1)
          | f'Parse{label}' >> beam.Map(parse))


def main(argv=None) -> str:
  ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  ap.add_argument('--train', default=os.path.join(HERE, 'data', 'reviews_train.csv'))
  ap.add_argument('--new', default=os.path.join(HERE, 'data', 'reviews_new.csv'))
  ap.add_argument('--out', default='mlt_out')
  args = ap.parse_args(argv)
  artifacts = os.path.join(args.out, 'artifacts')

  # 1. Training data: compute the statistics, write the artifacts, transform.
  with beam.Pipeline() as p:
    _ = (read_csv(p, args.train, 'Train')
         | 'Prepare' >> MLTransform(write_artifact_location=artifacts, transforms=[
             tft.ScaleToZScore(columns=['price']),
             tft.Bucketize(columns=['rating'], num_buckets=3),
             tft.ComputeAndApplyVocabulary(
                 columns=['review'], split_string_by_delimiter=' ',
                 num_oov_buckets=1, vocab_filename='words'),
             tft.TFIDF(columns=['review']),
         ])
         | 'TrainJson' >> beam.Map(to_json)
         | 'WriteTrain' >> beam.io.WriteToText(
             os.path.join(args.out, 'train'), file_name_suffix='.jsonl',
             shard_name_template=''))

  # 2. New rows: the same transformation, from the saved artifacts only.
  with beam.Pipeline() as p:
    _ = (read_csv(p, args.new, 'New')
         | 'Apply' >> MLTransform(read_artifact_location=artifacts)
         | 'NewJson' >> beam.Map(to_json)
         | 'WriteNew' >> beam.io.WriteToText(
             os.path.join(args.out, 'new'), file_name_suffix='.jsonl',
             shard_name_template=''))

  with open(os.path.join(args.out, 'new.jsonl')) as f:
    print('first transformed new row:', f.readline().strip())
  print('artifacts:')
  for root, _, files in sorted(os.walk(artifacts)):
    for name in sorted(files):
      print('  ', os.path.relpath(os.path.join(root, name), artifacts))
  return args.out


if __name__ == '__main__':
  main()
