#!/usr/bin/env python
"""MLTransform rows/s and peak RSS: runinference.transforms against Beam's
reference (apache_beam.ml.transforms on tensorflow-transform, from the venv of
benchmarks/reference_tft_venv.sh given as --reference-python).

Write mode: ScaleToZScore(a, b), ScaleTo01(b, after its z-score),
Bucketize(c, num_buckets=10) and ComputeAndApplyVocabulary(text). Read mode:
a fresh process applies MLTransform(read_artifact_location=...) to the same
rows, reading what that round's write run of the same implementation wrote.

Shapes (--shapes): list1 / list_many -- every cell a list, as in Beam's docs:
{'a': [0.3], 'b': [1.2], 'c': [55.0], 'text': ['w12', 'w7', 'w3']} (the words
are the list, no split); scalar1 / scalar_many -- plain scalars,
{'a': 0.3, 'b': 1.2, 'c': 55.0, 'text': 'w12 w7 w3'} split on ' ' (scalar1:
one word, not split: the reference fails splitting it). '1': one word per
text cell; 'many': 3-8 words (ragged). Words: 'w<k>' with k zipf(1.3)
modulo --vocab (2000: all 2000 seen; 200000: ~140k distinct in 1M rows).
Rows are made inside the pipeline, in blocks of 10k, by --source one
(Create([0]) | FlatMap(all rows)) or many (Create(range(chunks)) | Reshuffle |
FlatMap(50k-row chunk)). Runner: the DirectRunner's in-process FnApiRunner.

Every case (rows x shape x source x vocab) runs --rounds rounds of
ours_write, reference_write, ours_read, reference_read, each in a fresh
process; a run's rows/s is rows / wall seconds of pipeline construction + run
(imports before the clock), its peak RSS the child's ru_maxrss, and it checks
its output row count. Per case and mode: best rows/s of each, the MEDIAN OF
SAME-ROUND RATIOS ours/reference (the headline) and the ratio of bests, the
peak RSS of each (max over rounds) and the goal: median >= 10x and ours' peak
RSS <= the reference's.

  .venv/bin/python benchmarks/bench_mltransform.py \\
      --reference-python /tmp/ri-reference-tft/bin/python --update
  .venv/bin/python benchmarks/bench_mltransform.py --rows 20k --rounds 1 \\
      --shapes scalar_many --source many          # a smoke run, ours only
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _harness import finish, local_pipeline, pair_ratios, run_variants, timed_run

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / 'benchmarks' / 'results' / 'bench_mltransform.json'
SHAPES = {'list1': ('list', 1), 'list_many': ('list', 0),
          'scalar1': ('scalar', 1), 'scalar_many': ('scalar', 0)}
SOURCES = ('one', 'many')
CHUNK = 50_000   # rows per source element with --source many
BLOCK = 10_000   # rows drawn at a time inside a source element
GOAL_RATIO = 10.0


def make_rows(seed: int, n: int, shape: str, vocab: int):
  """Yields ``n`` rows of ``shape``, drawn ``BLOCK`` rows at a time."""
  import numpy as np
  form, words = SHAPES[shape]
  rng = np.random.RandomState(seed)
  for start in range(0, n, BLOCK):
    m = min(BLOCK, n - start)
    a = rng.normal(10, 3, m).tolist()
    b = rng.exponential(2, m).tolist()
    c = rng.uniform(0, 100, m).tolist()
    k = np.full(m, words) if words else rng.randint(3, 9, m)
    ends = np.cumsum(k).tolist()
    ids = (rng.zipf(1.3, ends[-1]) % vocab).astype(str)
    ws = np.char.add('w', ids).tolist()
    lo = 0
    for i in range(m):
      text, lo = ws[lo:ends[i]], ends[i]
      if form == 'list':
        yield {'a': [a[i]], 'b': [b[i]], 'c': [c[i]], 'text': text}
      else:
        yield {'a': a[i], 'b': b[i], 'c': c[i], 'text': ' '.join(text)}


def child(variant: str, shape: str, source: str, rows: int, vocab: int,
          artifacts: str) -> dict:
  load = os.getloadavg()[0]
  impl, mode = variant.split('_')
  import apache_beam as beam
  from apache_beam.metrics import Metrics
  if impl == 'noop':  # the same source and sink without MLTransform
    from runinference.transforms import tft
    version = {}
  elif impl == 'reference':
    import tensorflow_transform
    from apache_beam.ml.transforms import tft
    from apache_beam.ml.transforms.base import MLTransform
    version = {'tensorflow_transform': tensorflow_transform.__version__}
  else:
    from runinference.transforms import tft
    from runinference.transforms.base import MLTransform
    version = {}
  loc = os.path.join(artifacts, impl)
  if impl == 'noop':
    mlt = beam.Map(lambda row: row)
  elif mode == 'write':
    shutil.rmtree(loc, ignore_errors=True)
    os.makedirs(loc)
    # scalar1 is not split: the reference fails a batch whose rows all split
    # into one token (ValueError: Arrays were not all the same length).
    split = ' ' if SHAPES[shape] == ('scalar', 0) else None
    mlt = MLTransform(write_artifact_location=loc, transforms=[
        tft.ScaleToZScore(columns=['a', 'b']),
        tft.ScaleTo01(columns=['b']),
        tft.Bucketize(columns=['c'], num_buckets=10),
        tft.ComputeAndApplyVocabulary(columns=['text'],
                                      split_string_by_delimiter=split)])
  else:
    mlt = MLTransform(read_artifact_location=loc)
  counter = Metrics.counter('bench_mltransform', 'rows_out')

  def count(_):
    counter.inc()

  t0 = time.perf_counter()
  p = local_pipeline()
  if source == 'one':
    src = p | beam.Create([0]) | beam.FlatMap(make_rows, rows, shape, vocab)
  else:
    per = min(CHUNK, rows)
    rows = rows // per * per
    src = (p | beam.Create(list(range(rows // per))) | beam.Reshuffle()
           | beam.FlatMap(make_rows, per, shape, vocab))
  _ = src | mlt | beam.Map(count)
  build = time.perf_counter() - t0
  seconds, got = timed_run(p, 'rows_out')
  if got != rows:
    raise SystemExit(f'{variant}: {got} rows out, {rows} in')
  seconds += build
  rss = max(resource.getrusage(r).ru_maxrss
            for r in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
  return {'variant': variant, 'rows': rows, 'seconds': seconds,
          'build_seconds': build, 'rows_per_s': rows / seconds,
          'peak_rss_mb': rss / 1024.0, 'loadavg_1min': load,
          'versions': {'apache_beam': beam.__version__, **version}}


def _count(text: str) -> int:
  """'200k' -> 200000, '1M' -> 1000000, '20000' -> 20000."""
  mult = {'k': 1_000, 'm': 1_000_000}.get(text[-1:].lower(), 1)
  return int(float(text[:-1] if mult > 1 else text) * mult)


def _commit() -> str:
  def git(*a):
    return subprocess.run(['git', *a], capture_output=True, text=True,
                          cwd=REPO).stdout.strip()
  return git('rev-parse', '--short', 'HEAD') + ('-dirty' if git('status', '--porcelain') else '')


def summarize(runs: dict, best: dict, mode: str) -> dict:
  ours, ref = f'ours_{mode}', f'reference_{mode}'
  ratios = pair_ratios(runs, best, [(ours, ref)], 'rows_per_s')
  ceiling = pair_ratios(runs, best, [(ours, 'noop_write')], 'rows_per_s') \
      if 'noop_write' in runs else {}
  rss = {v: max((r['peak_rss_mb'] for r in runs.get(v, []) if 'error' not in r),
                default=None) for v in (ours, ref)}
  out = {'ours_rows_per_s': best.get(ours, {}).get('rows_per_s'),
         'reference_rows_per_s': best.get(ref, {}).get('rows_per_s'),
         'median_ratio': ratios[f'{ours}/{ref} (median of rounds)'],
         'best_ratio': ratios[f'{ours}/{ref}'],
         'ours_peak_rss_mb': rss[ours], 'reference_peak_rss_mb': rss[ref],
         'noop_rows_per_s': best.get('noop_write', {}).get('rows_per_s'),
         'ours_vs_noop_median': ceiling.get(f'{ours}/noop_write (median of rounds)')}
  if out['median_ratio'] is None or rss[ref] is None or rss[ours] is None:
    out['goal'] = 'n/a'
  else:
    fast = out['median_ratio'] >= GOAL_RATIO
    small = rss[ours] <= rss[ref]
    out['goal'] = 'met' if fast and small else 'NOT met (' + ', '.join(
        w for w, bad in (('rows/s', not fast), ('RSS', not small)) if bad) + ')'
  return out


def line(case: str, mode: str, s: dict) -> str:
  def num(v, fmt):
    return format(v, fmt) if v is not None else '-'
  return (f'{case:<36} {mode:<5}  ours {num(s["ours_rows_per_s"], ",.0f"):>9}/s '
          f'{num(s["ours_peak_rss_mb"], ",.0f"):>6} MB | reference '
          f'{num(s["reference_rows_per_s"], ",.0f"):>8}/s '
          f'{num(s["reference_peak_rss_mb"], ",.0f"):>6} MB | median '
          f'{num(s["median_ratio"], ".2f"):>6}x best {num(s["best_ratio"], ".2f"):>6}x'
          f' | goal {s["goal"]}' + (
              f' | ours/no-op pipeline {num(s["ours_vs_noop_median"], ".2f")}x'
              if s.get('ours_vs_noop_median') is not None else ''))


def main(argv=None) -> int:
  ap = argparse.ArgumentParser(
      description=__doc__.split('\n\n')[0],
      epilog='\n\n'.join(__doc__.split('\n\n')[1:]),
      formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument('--rows', type=_count, nargs='+', default=[200_000, 1_000_000],
                  help='row counts, e.g. 200k 1M (default both)')
  ap.add_argument('--shapes', nargs='+', choices=SHAPES, default=list(SHAPES),
                  help='default all four')
  ap.add_argument('--source', nargs='+', choices=SOURCES, default=list(SOURCES),
                  help='default both')
  ap.add_argument('--vocab', type=_count, nargs='+', default=[2000],
                  help='word vocabulary sizes, e.g. 2000 200k (default 2000)')
  ap.add_argument('--modes', nargs='+', choices=('write', 'read'),
                  default=['write', 'read'], help='default both')
  ap.add_argument('--rounds', type=int, default=3)
  ap.add_argument('--noop', action='store_true',
                  help='also run the same source and sink without MLTransform '
                  '(the ceiling any MLTransform can reach on this runner)')
  ap.add_argument('--reference-python', default=None,
                  help='python of the tensorflow-transform venv (omit: ours only)')
  ap.add_argument('--scratch', default=os.path.join(tempfile.gettempdir(),
                                                    'bench_mltransform'),
                  help='artifact locations (removed after each case)')
  ap.add_argument('--out', default=os.path.join(tempfile.gettempdir(),
                                                'bench_mltransform.json'))
  ap.add_argument('--update', action='store_true',
                  help=f'write {RESULTS.relative_to(REPO)} instead of --out')
  ap.add_argument('--_child', default=None, help=argparse.SUPPRESS)
  args = ap.parse_args(argv)
  if args._child:
    import json
    import traceback
    try:
      res = child(args._child, args.shapes[0], args.source[0], args.rows[0],
                  args.vocab[0], args.scratch)
    except BaseException:  # noqa: BLE001 -- reported by the parent
      traceback.print_exc()
      sys.stderr.flush()
      os._exit(1)
    sys.stdout.write(json.dumps(res) + '\n')
    sys.stdout.flush()
    os._exit(0)  # TF 2.21 can segfault at interpreter exit

  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
  os.environ['PYTHONPATH'] = os.pathsep.join(
      [str(REPO)] + [x for x in [os.environ.get('PYTHONPATH')] if x])
  impls = ['ours'] + (['reference'] if args.reference_python else [])
  variants = [f'{i}_{m}' for m in args.modes for i in impls]
  if args.noop:
    variants.append('noop_write')
  pythons = {f'reference_{m}': args.reference_python for m in args.modes}
  report = {'when': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='minutes'),
            'commit': _commit(), 'loadavg_at_start': os.getloadavg(),
            'machine': f'{platform.machine()}, {os.cpu_count()} CPUs',
            'argv': sys.argv[1:], 'goal': f'median ours/reference >= {GOAL_RATIO}x '
            'and ours peak RSS <= reference peak RSS', 'cases': {}}
  print(f"commit {report['commit']}, load average {report['loadavg_at_start'][0]:.2f}, "
        f"{args.rounds} round(s) of {', '.join(variants)}", flush=True)
  lines, all_best = [], {}
  for rows in args.rows:
    for shape in args.shapes:
      for source in args.source:
        for vocab in args.vocab:
          case = f'{shape}/{source}/{rows:,}/v{vocab:,}'
          scratch = os.path.join(args.scratch, case.replace('/', '_'))
          print(f'\n{case}', flush=True)
          runs, best = run_variants(
              __file__, variants, args.rounds,
              ['--shapes', shape, '--source', source, '--rows', str(rows),
               '--vocab', str(vocab), '--scratch', scratch],
              'rows_per_s', 'rows/s', pythons)
          shutil.rmtree(scratch, ignore_errors=True)
          entry = {'shape': shape, 'source': source, 'rows': rows, 'vocab': vocab,
                   'runs': runs, 'summary': {}}
          for mode in args.modes:
            entry['summary'][mode] = s = summarize(runs, best, mode)
            lines.append(line(case, mode, s))
            print(lines[-1], flush=True)
          report['cases'][case] = entry
          all_best.update({f'{case} {v}': b for v, b in best.items()})
  print('\nrows/s (best), peak RSS (max over rounds); ours/reference: median of '
        'same-round ratios and ratio of bests')
  print('\n'.join(lines))
  return finish({}, {}, report, all_best, RESULTS if args.update else args.out)


if __name__ == '__main__':
  sys.exit(main())
