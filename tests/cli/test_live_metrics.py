"""Live metrics: the registry, its Prometheus endpoint, and a scrape of a
running pipeline parsed with prometheus_client's own parser."""
import threading
import time
import urllib.request

import pytest

from runinference import live_metrics

prometheus_client = pytest.importorskip('prometheus_client')
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402


@pytest.fixture(autouse=True)
def clean_registry():
  live_metrics.disable()
  live_metrics.reset()
  yield
  live_metrics.disable()
  live_metrics.reset()


def scrape(url: str) -> dict:
  """``{(sample name, labels as sorted tuple): value}`` from one scrape."""
  with urllib.request.urlopen(url, timeout=10) as r:
    text = r.read().decode()
  return {(s.name, tuple(sorted(s.labels.items()))): s.value
          for fam in text_string_to_metric_families(text) for s in fam.samples}


def test_disabled_records_nothing():
  live_metrics.counter_inc('ns', 'num_inferences', 5)
  live_metrics.distribution_update('ns', 'inference_request_batch_size', 5)
  snap = live_metrics.snapshot()
  assert snap.counters == {} and snap.distributions == {}


def test_counts_from_many_threads_add_up():
  live_metrics.enable()

  def work():
    for _ in range(5000):
      live_metrics.counter_inc('ns', 'num_inferences', 2)
      live_metrics.distribution_update('ns', 'inference_request_batch_size', 3)

  threads = [threading.Thread(target=work) for _ in range(8)]
  for t in threads:
    t.start()
  for t in threads:
    t.join(60)
  snap = live_metrics.snapshot()
  assert snap.counter('num_inferences') == 8 * 5000 * 2
  dist = snap.distribution('inference_request_batch_size', 'ns')
  assert (dist.count, dist.sum, dist.min, dist.max) == (40000, 120000, 3, 3)


def test_exporter_serves_prometheus_text():
  server = live_metrics.serve(0)
  try:
    live_metrics.counter_inc('BeamML_Sklearn', 'num_inferences', 7)
    live_metrics.counter_inc('BeamML_Sklearn', 'five-_num_inferences', 4)
    for v in (2, 8):
      live_metrics.distribution_update(
          'BeamML_Sklearn', 'inference_batch_latency_micro_secs', v)
    got = scrape(server.url)
  finally:
    server.stop()
  ns = ('namespace', 'BeamML_Sklearn')
  assert got[('runinference_num_inferences_total', (('model', ''), ns))] == 7
  assert got[('runinference_num_inferences_total', (('model', 'five'), ns))] == 4
  key = (('model', ''), ns)
  assert got[('runinference_inference_batch_latency_micro_secs_count', key)] == 2
  assert got[('runinference_inference_batch_latency_micro_secs_sum', key)] == 10
  assert got[('runinference_inference_batch_latency_micro_secs_max', key)] == 8
  assert server.host == '127.0.0.1'


def test_scrape_during_a_run(tmp_path):
  """A slow YAML pipeline runs through the CLI with --metrics-port; scrapes
  while it runs see counts grow, and parse."""
  pytest.importorskip('yaml')
  import socket

  from runinference.cli.run import run_file
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
  n = 40
  pipeline = tmp_path / 'slow.yaml'
  pipeline.write_text(f'''
pipeline:
  transforms:
    - type: Create
      config:
        elements: [{', '.join(f'{{value: {i}}}' for i in range(n))}]
    - type: RunInference
      input: Create
      config:
        model_handler:
          type: tests.helpers.MultiplierHandler
          config:
            factor: 2
            sleep_on: {list(range(n))}
            sleep: 0.1
            max_batch_size: 2
            preprocess: {{expression: value}}
            postprocess: {{expression: inference}}
''')
  box = {}
  runner = threading.Thread(
      target=lambda: box.setdefault('outcome', run_file(
          str(pipeline), metrics_port=port, timeout=120)), daemon=True)
  runner.start()
  scrapes = []
  deadline = time.monotonic() + 120
  while runner.is_alive() and time.monotonic() < deadline:
    try:
      got = scrape(f'http://127.0.0.1:{port}/metrics')
    except OSError:  # not serving yet (or already stopped)
      got = None
    if got is not None and runner.is_alive():
      scrapes.append(got)
    time.sleep(0.2)
  runner.join(10)
  assert 'outcome' in box, 'the pipeline did not finish'

  def inferred(got):
    return max([v for (name, labels), v in got.items()
                if name in ('runinference_num_inferences_total',
                            'runinference_rows_inferred_total')
                and ('model', '') in labels] or [0])

  during = [inferred(g) for g in scrapes]
  assert any(0 < v < n for v in during), during  # seen mid-run
  assert during == sorted(during)  # counters only grow
  assert box['outcome'].counts.inferred == n


def test_live_counter_and_distribution_feed_beam_and_the_registry():
  """The wrappers the core's metrics collector uses: Beam's metric always,
  the registry only when enabled."""
  import apache_beam as beam
  from apache_beam.options.pipeline_options import PipelineOptions

  def record(x):
    live_metrics.counter('ns', 'num_inferences').inc(x)
    live_metrics.distribution('ns', 'inference_request_batch_size').update(x)
    return x

  live_metrics.enable()
  p = beam.Pipeline(options=PipelineOptions(runner='DirectRunner'))
  _ = p | beam.Create([1, 2, 3]) | beam.Map(record)
  result = p.run()
  result.wait_until_finish()
  counters = result.metrics().query()['counters']
  assert sum(c.committed or c.attempted for c in counters
             if c.key.metric.name == 'num_inferences') == 6
  snap = live_metrics.snapshot()
  assert snap.counter('num_inferences', 'ns') == 6
  assert snap.distribution('inference_request_batch_size').max == 3


def test_core_metrics_are_live():
  """A plain Python RunInference pipeline: the core's collector feeds the
  registry (counters and distributions, per key cohort too)."""
  import apache_beam as beam
  from apache_beam.options.pipeline_options import PipelineOptions

  from runinference.base import KeyedModelHandler, KeyModelMapping, RunInference
  from tests.helpers import MultiplierHandler

  live_metrics.enable()
  p = beam.Pipeline(options=PipelineOptions(runner='DirectRunner'))
  keyed = KeyedModelHandler([KeyModelMapping(['a'], MultiplierHandler(2)),
                             KeyModelMapping(['b'], MultiplierHandler(3))])
  _ = (p | beam.Create([('a', 1), ('b', 2), ('a', 3), ('b', 4), ('b', 5)])
       | RunInference(keyed))
  p.run().wait_until_finish()
  snap = live_metrics.snapshot()
  assert snap.counter('num_inferences') == 5
  assert snap.counter('a-_num_inferences') == 2
  assert snap.counter('b-_num_inferences') == 3
  assert snap.distribution('inference_request_batch_size').sum == 5
  assert snap.distribution('inference_batch_latency_micro_secs').count >= 1
