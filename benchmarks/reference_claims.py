#!/usr/bin/env python
"""Checks the "reference" column of README's "What you get beyond the
reference" table on the installed Beam: each case runs the reference
(``apache_beam.ml.inference``) and runinference on the same tiny pipeline, in
a fresh process each, and prints what each did. Rerun it when
``constraints.txt`` takes a new Beam.

    .venv/bin/python benchmarks/reference_claims.py            # every case
    .venv/bin/python benchmarks/reference_claims.py ragged     # one case

Last run (Beam 2.78.0, 2026-12-06): the reference dead-letters a whole batch
for one bad row, raises on ragged tensors, gives a windowed batch one
timestamp (the window's end), fails with ``max_batch_duration_secs`` on
an unbounded source on the local runner ("... was not replaced as
expected"; on a bounded source that option runs on 2.77 and 2.78 alike), and
a multi-model KeyedModelHandler returns a batch's results grouped by key
(0 2 5 1 4 6 for input 0 1 2 4 5 6); runinference keeps the input order.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

CASES = ('bad_row', 'ragged', 'windowed', 'duration_streaming', 'keyed_order')


def _modules(impl: str):
  if impl == 'reference':
    from apache_beam.ml.inference import base, pytorch_inference
  else:
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))
    from runinference import base, pytorch_inference
  return base, pytorch_inference


def _echo(base, **batching):
  class Echo(base.ModelHandler):
    """Each result: (example, size of its batch); example 3 fails."""
    def __init__(self):
      super().__init__(**batching)

    def load_model(self):
      return None

    def run_inference(self, batch, model, inference_args=None):
      if 3 in batch:
        raise ValueError('example 3 cannot be scored')
      return [(x, len(batch)) for x in batch]
  return Echo()


def case(name: str, impl: str) -> str:
  import apache_beam as beam
  from apache_beam.options.pipeline_options import PipelineOptions
  from apache_beam.transforms import window
  base, pytorch_inference = _modules(impl)
  seen: list = []
  if name == 'bad_row':
    with beam.Pipeline() as p:
      main, dlq = (p | beam.Create(list(range(8))) | base.RunInference(
          _echo(base, min_batch_size=8, max_batch_size=8))
                   .with_exception_handling())
      _ = main | 'ok' >> beam.Map(lambda r: print('OUT', r))
      _ = dlq.failed_inferences | 'bad' >> beam.Map(lambda r: print('DEAD'))
    return 'ran'
  if name == 'ragged':
    import torch

    class Sum(torch.nn.Module):
      def forward(self, x):
        return x.sum(dim=-1)
    path = os.path.join(tempfile.mkdtemp(), 'sum.pt')
    torch.save(Sum().state_dict(), path)
    handler = pytorch_inference.PytorchModelHandlerTensor(
        state_dict_path=path, model_class=Sum, model_params={},
        min_batch_size=2, max_batch_size=2)
    with beam.Pipeline() as p:
      _ = (p | beam.Create([torch.ones(3), torch.ones(4)])
           | base.RunInference(handler) | beam.Map(lambda r: print('OUT', r)))
    return 'ran'
  if name == 'windowed':
    with beam.Pipeline() as p:
      _ = (p | beam.Create([(i, i * 10) for i in (0, 1, 2, 4)])
           | beam.MapTuple(window.TimestampedValue)
           | beam.WindowInto(window.FixedWindows(1000))
           | base.RunInference(_echo(base, min_batch_size=4, max_batch_size=4))
           | beam.Map(lambda r, ts=beam.DoFn.TimestampParam:
                      print('OUT', r[0], 'timestamp', float(ts))))
    return 'ran'
  if name == 'duration_streaming':
    from apache_beam.transforms.periodicsequence import PeriodicImpulse
    now = time.time()
    with beam.Pipeline(options=PipelineOptions(['--streaming'])) as p:
      _ = (p | PeriodicImpulse(start_timestamp=now, stop_timestamp=now + 2,
                               fire_interval=0.2)
           | 'one' >> beam.Map(lambda _: 1)
           | base.RunInference(_echo(base, max_batch_duration_secs=1,
                                     min_batch_size=2, max_batch_size=4))
           | 'show' >> beam.Map(lambda r: print('OUT', r)))
    return 'ran'
  if name == 'keyed_order':
    class SixPerBatch(base.KeyedModelHandler):
      def batch_elements_kwargs(self):
        return {'min_batch_size': 6, 'max_batch_size': 6}
    handler = SixPerBatch([
        base.KeyModelMapping(['a'], _echo(base)),
        base.KeyModelMapping(['b'], _echo(base))])
    rows = [('a', 0), ('b', 1), ('a', 2), ('b', 4), ('a', 5), ('b', 6)]
    with beam.Pipeline() as p:
      _ = (p | beam.Create([rows], reshuffle=False)
           | beam.FlatMap(lambda r: r)  # one bundle, in this order
           | base.RunInference(handler)
           | beam.Map(lambda kv: print('ORDER', kv[0], kv[1][0])))
    return 'ran'
  raise SystemExit(f'unknown case {name!r}; cases: {", ".join(CASES)}')


def main() -> None:
  if len(sys.argv) == 4 and sys.argv[1] == '--child':
    try:
      print('RESULT', case(sys.argv[2], sys.argv[3]))
    except Exception as e:  # pylint: disable=broad-except
      print('RESULT raises', type(e).__name__, str(e)[:200].replace('\n', ' '))
    return
  import apache_beam
  print(f'Beam {apache_beam.__version__}')
  for name in sys.argv[1:] or CASES:
    for impl in ('reference', 'runinference'):
      out = subprocess.run(
          [sys.executable, __file__, '--child', name, impl],
          capture_output=True, text=True, timeout=300).stdout.splitlines()
      result = next((l[7:] for l in out if l.startswith('RESULT ')), '?')
      order = ' '.join(l.split(' ', 2)[2] for l in out if l.startswith('ORDER'))
      if order:
        print(f'{name:20s} {impl:13s} output order: {order} (input 0 1 2 4 5 6)')
      lines = [l for l in out if l.startswith(('OUT', 'DEAD'))]
      outs = sorted({l for l in lines if l.startswith('OUT')})
      print(f'{name:20s} {impl:13s} {result}; {sum(l == "DEAD" for l in lines)} '
            f'dead letters; outputs: {outs[:6]}')


if __name__ == '__main__':
  main()
