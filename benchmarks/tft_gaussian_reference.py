#!/usr/bin/env python
"""Reference numbers for ``runinference.transforms._gaussian`` from TFT itself.

Runs ``tft.scale_to_gaussian`` (plus ``tft.tukey_location`` / ``tukey_scale`` /
``tukey_h_params`` / ``var`` for the parameters) with
``tft_beam.AnalyzeAndTransformDataset`` on fixed-seed data sets and prints JSON:
inputs and outputs as base64 little-endian float32, parameters as floats.

Needs the reference venv (``benchmarks/reference_tft_venv.sh``), not the project
venv (takes ~10 minutes on 2 cores)::

    /tmp/ri-reference-tft/bin/python benchmarks/tft_gaussian_reference.py \
        > tests/data/tft_gaussian_reference.json

TFT computes L-moments per input batch and merges batches by count-weighted
averaging, so each whole-column set is fed as ONE instance holding every value
(one batch: full-sample L-moments) and the elementwise set uses
``desired_batch_size`` = its row count. ``adaptive_runs`` repeats the log-normal
set one value per row through TFT's default adaptive batching (what Beam's
MLTransform does); those results vary from run to run with timing. TensorFlow
may segfault at interpreter exit (rc 139) after the JSON is complete.
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import tempfile

import numpy as np

SEED = 20261122
N = 2000


def datasets() -> dict:
  rng = np.random.default_rng(SEED)
  cols = np.stack([rng.lognormal(0.0, 1.0, 800), rng.standard_t(3.0, 800),
                   rng.uniform(-1.0, 1.0, 800)], axis=1)
  sets = {
      'lognormal': rng.lognormal(mean=1.0, sigma=0.8, size=N),
      'heavy_tailed_t': rng.standard_t(df=2.5, size=N) * 3.0 + 10.0,
      'left_skewed': 50.0 - rng.lognormal(mean=0.0, sigma=0.6, size=N),
      'elementwise': cols,
      'beam_skewed': np.array([1, 2, 4, 8, 16, 32]),  # Beam's test, one batch
      'constant': np.full(N, 0.1),
  }
  return {k: v.astype(np.float32) for k, v in sets.items()}


def b64(a: np.ndarray) -> str:
  return base64.b64encode(np.ascontiguousarray(a, dtype='<f4').tobytes()).decode()


def _run(rows: list, shape: list, elementwise: bool, batch: int | None) -> dict:
  import apache_beam as beam
  import tensorflow as tf
  import tensorflow_transform as tft
  import tensorflow_transform.beam as tft_beam
  from tensorflow_transform.tf_metadata import dataset_metadata, schema_utils

  meta = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(
      {'x': tf.io.FixedLenFeature(shape, tf.float32),
       'i': tf.io.FixedLenFeature([1], tf.int64)}))

  def fn(inputs):
    x = inputs['x']
    red = not elementwise
    loc = tft.tukey_location(x, reduce_instance_dims=red)
    scale = tft.tukey_scale(x, reduce_instance_dims=red)
    hl, hr = tft.tukey_h_params(x, reduce_instance_dims=red)
    var = tft.var(x, reduce_instance_dims=red)
    zero = tf.zeros_like(x)
    return {'i': inputs['i'], 'y': tft.scale_to_gaussian(x, elementwise=elementwise),
            'loc': zero + loc, 'scale': zero + scale, 'hl': zero + hl,
            'hr': zero + hr, 'var': zero + var}

  out: list = []
  with tempfile.TemporaryDirectory() as tmp:
    with beam.Pipeline() as p, tft_beam.Context(
        temp_dir=tmp, desired_batch_size=batch):
      data = p | beam.Create(rows)
      (transformed, _), _ = ((data, meta) | tft_beam.AnalyzeAndTransformDataset(fn))
      _ = (transformed
           | beam.Map(lambda r: json.dumps(
               {k: np.asarray(v).tolist() for k, v in r.items()}))
           | beam.io.WriteToText(os.path.join(tmp, 'out')))
    for name in os.listdir(tmp):
      if name.startswith('out'):
        with open(os.path.join(tmp, name)) as f:
          out.extend(json.loads(line) for line in f if line.strip())
  out.sort(key=lambda r: int(np.asarray(r['i']).ravel()[0]))
  if len(out) == 1:  # one instance holding every value
    y = np.asarray(out[0]['y']).ravel()
  else:
    y = np.stack([np.asarray(r['y']) for r in out])
  first = out[0]
  params = {}
  for k in ('loc', 'scale', 'hl', 'hr', 'var'):
    v = np.asarray(first[k])
    params[k] = [float(t) for t in v] if elementwise else float(v.ravel()[0])
  return {'params': params, 'y': y}


def main() -> None:
  ap = argparse.ArgumentParser()
  ap.add_argument('--adaptive-runs', type=int, default=3)
  args = ap.parse_args()
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
  import tensorflow_transform as tft
  result: dict = {'seed': SEED, 'tft_version': tft.__version__, 'sets': {}}
  for name, x in datasets().items():
    if name == 'elementwise':
      rows = [{'x': r, 'i': [i]} for i, r in enumerate(x)]
      r = _run(rows, [x.shape[1]], True, batch=len(rows))
    else:
      r = _run([{'x': x, 'i': [0]}], [x.size], False, batch=None)
    result['sets'][name] = {'shape': list(x.shape), 'params': r['params'],
                            'x': b64(x), 'y': b64(np.reshape(r['y'], x.shape))}
    print(name, r['params'], file=sys.stderr)
  x = datasets()['lognormal']
  result['adaptive_runs'] = []
  for _ in range(args.adaptive_runs):
    rows = [{'x': [float(v)], 'i': [i]} for i, v in enumerate(x)]
    r = _run(rows, [1], False, batch=None)
    result['adaptive_runs'].append(r['params'])
    print('adaptive', r['params'], file=sys.stderr)
  json.dump(result, sys.stdout, indent=1)
  print()


if __name__ == '__main__':
  main()
