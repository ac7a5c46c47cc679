"""The soak's memory growth (issue 18, "Also"): Beam's FnApiRunner kept every
bundle's metrics alive (a lazily nested ``consolidate(chain(...))`` per
bundle), so a long streaming pipeline grew without bound, RunInference's
faster (more metrics per bundle). Importing RunInference makes the
consolidation eager. A real streaming pipeline on the DirectRunner."""
import gc
import itertools
import pickle
import time

import apache_beam as beam
import numpy as np
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.transforms.periodicsequence import PeriodicImpulse
from sklearn.linear_model import LinearRegression

from runinference.base import RunInference
from runinference.sklearn_inference import SklearnModelHandlerNumpy


def _live_chains() -> int:
  gc.collect()
  return sum(1 for o in gc.get_objects() if type(o) is itertools.chain)


def test_runner_keeps_no_chain_of_bundle_metrics(tmp_path):
  path = str(tmp_path / 'lin.pkl')
  x = np.random.RandomState(0).rand(20, 2)
  with open(path, 'wb') as f:
    pickle.dump(LinearRegression().fit(x, x.sum(axis=1)), f)
  n = 400
  before = _live_chains()
  seen_file = str(tmp_path / 'seen.txt')

  def probe(r):  # pickled by value: writes what it sees to a file
    if int(r.example[0]) in (n // 2, n - 1):
      with open(seen_file, 'a') as f:
        f.write(f'{_live_chains()}\n')
    return r

  p = beam.Pipeline(options=PipelineOptions(runner='DirectRunner',
                                            streaming=True))
  _ = (p
       | PeriodicImpulse(data=list(range(n)), fire_interval=0.004,
                         start_timestamp=time.time())
       | beam.Map(lambda i: np.array([float(i), 1.0]))
       | RunInference(SklearnModelHandlerNumpy(path))
       | beam.Map(probe))
  p.run().wait_until_finish()
  with open(seen_file) as f:
    seen = [int(line) for line in f]
  assert len(seen) == 2
  # Before the fix: two more live chains per bundle (hundreds here).
  assert max(seen) - before < 40, (before, seen)


def test_consolidation_is_eager_and_keeps_the_totals():
  from apache_beam.metrics import monitoring_infos
  from apache_beam.runners.portability.fn_api_runner import fn_runner
  a = monitoring_infos.int64_counter(monitoring_infos.ELEMENT_COUNT_URN, 2,
                                     pcollection='pc')
  b = monitoring_infos.int64_counter(monitoring_infos.ELEMENT_COUNT_URN, 3,
                                     pcollection='pc')
  merged = fn_runner.consolidate_monitoring_infos(iter([a, b]))
  assert isinstance(merged, list) and len(merged) == 1
  assert monitoring_infos.extract_counter_value(merged[0]) == 5
