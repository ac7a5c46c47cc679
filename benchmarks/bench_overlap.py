#!/usr/bin/env python
"""Overlap where it pays: a remote model that spends its time waiting while
the pipeline has CPU work of its own.

A model server (a subprocess on loopback: Python's ``ThreadingHTTPServer``
that sleeps ``--latency-ms`` per request, then returns each row's sum -- the
wait of a remote model, using no CPU here) is called by a
``runinference.remote.HttpModelHandler`` subclass, one request per batch of
``--batch`` rows. Upstream, every element costs ``--work-us`` of Python CPU
work (parsing a JSON record, as a pipeline decoding its input would).
Variants, each in a fresh process, alternating:

* ``sync``    -- ``RunInference(handler, overlap=False)``: the step's thread
  waits for each response before it parses the next batch's records.
* ``overlap`` -- ``RunInference(handler)`` (remote handlers overlap by
  default): the next batch is parsed while the request is in flight.

With N rows the sync pipeline takes about N x work + N / batch x latency,
the overlapped one about the larger of the two.

    .venv/bin/python benchmarks/bench_overlap.py                 # 4,000 rows
    .venv/bin/python benchmarks/bench_overlap.py --repeat 3 --latency-ms 50
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from _harness import (add_out_args, finish, local_pipeline, out_path, paired,
                      provenance, ratio, run_variants, timed_run)

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
VARIANTS = ("sync", "overlap")

_SERVER = r"""
import json, sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
LATENCY = float(sys.argv[2]) / 1000
class H(BaseHTTPRequestHandler):
  def do_POST(self):
    body = json.loads(self.rfile.read(int(self.headers['Content-Length'])))
    time.sleep(LATENCY)
    out = json.dumps({'predictions': [sum(r) for r in body['rows']]}).encode()
    self.send_response(200)
    self.send_header('Content-Type', 'application/json')
    self.send_header('Content-Length', str(len(out)))
    self.end_headers()
    self.wfile.write(out)
  def log_message(self, *args):
    pass
ThreadingHTTPServer(('127.0.0.1', int(sys.argv[1])), H).serve_forever()
"""


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _start_server(latency_ms: float):
  port = _free_port()
  proc = subprocess.Popen([sys.executable, "-c", _SERVER, str(port),
                           str(latency_ms)])
  deadline = time.monotonic() + 30
  while time.monotonic() < deadline:
    try:
      socket.create_connection(("127.0.0.1", port), timeout=1).close()
      return proc, f"http://127.0.0.1:{port}"
    except OSError:
      time.sleep(0.1)
  proc.kill()
  raise SystemExit("the model server did not start within 30 s")


def _parse(i: int, work_us: int) -> list:
  """A record parsed from JSON, repeated until ``work_us`` of CPU is spent."""
  record = json.dumps({"id": i, "features": [i % 7, i % 11, i % 13, 1.5]})
  end = time.perf_counter() + work_us / 1e6
  row = json.loads(record)["features"]
  while time.perf_counter() < end:
    row = json.loads(record)["features"]
  return row


def run_pipeline_variant(variant, n, url, batch, work_us) -> dict:
  import apache_beam as beam
  from apache_beam.metrics.metric import Metrics
  sys.path.insert(0, str(REPO))
  from runinference.base import RunInference
  from runinference.remote import HttpModelHandler

  class SumServer(HttpModelHandler):
    def path(self, inference_args):
      return "/predict"

    def encode(self, rows, inference_args):
      return {"rows": [list(r) for r in rows]}

    def decode(self, answer, rows):
      return answer["predictions"]

  handler = SumServer(url, max_concurrent_requests=1, request_batch_size=batch,
                      min_batch_size=batch, max_batch_size=batch)
  kwargs = {"overlap": False} if variant == "sync" else {}
  counter = Metrics.counter("bench", "sunk")

  def sink(prediction):  # remote handlers return bare predictions
    assert prediction >= 1.5  # a row's sum; every row holds 1.5
    counter.inc()

  p = local_pipeline()
  _ = (p | beam.Impulse() | beam.FlatMap(lambda _: range(n))
       | beam.Map(_parse, work_us) | RunInference(handler, **kwargs)
       | beam.Map(sink))
  dt, got = timed_run(p, "sunk")
  out = {"seconds": dt, "elements": got, "el_per_s": n / dt}
  if got != n:
    out["error"] = f"sink saw {got} rows, expected {n}"
  return out


def main(argv=None) -> int:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--n", type=int, default=4000)
  ap.add_argument("--batch", type=int, default=64)
  ap.add_argument("--latency-ms", type=float, default=50.0)
  ap.add_argument("--work-us", type=int, default=500,
                  help="CPU work per element upstream, microseconds")
  ap.add_argument("--repeat", type=int, default=3)
  add_out_args(ap, "bench_overlap.json")
  ap.add_argument("--_child", help=argparse.SUPPRESS)
  ap.add_argument("--_url", help=argparse.SUPPRESS)
  args = ap.parse_args(argv)
  if args._child:
    print(json.dumps(run_pipeline_variant(
        args._child, args.n, args._url, args.batch, args.work_us)))
    return 0
  proc, url = _start_server(args.latency_ms)
  try:
    runs, best = run_variants(
        __file__, VARIANTS, args.repeat,
        ["--n", str(args.n), "--batch", str(args.batch), "--work-us",
         str(args.work_us), "--_url", url],
        rate_key="el_per_s", unit="el/s")
  finally:
    proc.kill()
  work_s = args.n * args.work_us / 1e6
  wait_s = args.n / args.batch * args.latency_ms / 1e3
  print(f"\n{args.n} rows: {work_s:.1f} s of upstream CPU work, "
        f"{wait_s:.1f} s of model waits ({args.n // args.batch} requests "
        f"x {args.latency_ms:g} ms)")
  ratios = {
      "overlap/sync": ratio(best["overlap"].get("el_per_s"),
                            best["sync"].get("el_per_s")),
      "overlap/sync (median of rounds)": paired(runs, "overlap", "sync",
                                                "el_per_s"),
  }
  report = {"benchmark": "bench_overlap",
            **provenance(),
            "args": {k: v for k, v in vars(args).items()
                     if not k.startswith("_")},
            "cpus": os.cpu_count(), "upstream_work_s": work_s,
            "model_wait_s": wait_s, "results": best, "all_runs": runs,
            "ratios": ratios}
  return finish(ratios, {}, report, best, out_path(args, "bench_overlap.json"))


if __name__ == "__main__":
  sys.exit(main())
