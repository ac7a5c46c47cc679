"""Small real handlers used by several tests (plain Python models: the thing
under test is RunInference, not a framework)."""
import threading
import time

import apache_beam as beam
from apache_beam.transforms import userstate
from apache_beam.transforms.timeutil import TimeDomain

from runinference.base import ModelHandler, PredictionResult


class Multiplier:
  def __init__(self, factor):
    self.factor = factor
    self.calls = []

  def predict(self, batch):
    self.calls.append(len(batch))
    return [self.factor * x for x in batch]


class MultiplierHandler(ModelHandler):
  """Multiplies numbers; raises on elements listed in ``fail_on``."""
  loads = 0
  lock = threading.Lock()

  def __init__(self, factor=2, fail_on=(), sleep_on=(), sleep=0.0, **kwargs):
    super().__init__(**kwargs)
    self.factor = factor
    self.fail_on = set(fail_on)
    self.sleep_on = set(sleep_on)
    self.sleep = sleep
    self.batches = []

  def load_model(self):
    with MultiplierHandler.lock:
      MultiplierHandler.loads += 1
    return Multiplier(self.factor)

  def run_inference(self, batch, model, inference_args=None):
    batch = list(batch)
    for x in batch:
      if x in self.fail_on:
        raise ValueError(f'cannot score {x!r}')
      if x in self.sleep_on:
        time.sleep(self.sleep)
    offset = (inference_args or {}).get('offset', 0)
    return [
        PredictionResult(x, y + offset, 'mult')
        for x, y in zip(batch, model.predict(batch))
    ]

  def get_num_bytes(self, batch):
    return 8 * len(batch)

  def get_metrics_namespace(self):
    return 'Test_Multiplier'


class NoInitHandler(ModelHandler):
  """Written for the reference, never calls super().__init__()."""
  def __init__(self, factor):
    self.factor = factor

  def load_model(self):
    return Multiplier(self.factor)

  def run_inference(self, batch, model, inference_args=None):
    return model.predict(list(batch))


class EchoBatchHandler(ModelHandler):
  """Each result's inference is the whole batch it ran in (as a tuple), so a
  test can see how elements were batched."""
  def load_model(self):
    return object()

  def run_inference(self, batch, model, inference_args=None):
    batch = list(batch)
    whole = tuple(batch)
    return [PredictionResult(x, whole) for x in batch]

  def get_num_bytes(self, batch):
    return len(batch)


def run_pipeline(build, streaming=False):
  """Runs ``build(p)`` on the DirectRunner; returns the PipelineResult."""
  import apache_beam as beam
  from apache_beam.options.pipeline_options import PipelineOptions
  options = PipelineOptions(runner='DirectRunner', streaming=streaming)
  p = beam.Pipeline(options=options)
  build(p)
  result = p.run()
  result.wait_until_finish()
  return result


def metric(result, namespace, name):
  from apache_beam.metrics.metric import MetricsFilter
  found = result.metrics().query(
      MetricsFilter().with_namespace(namespace).with_name(name))
  counters = found['counters']
  if counters:
    return sum(c.committed for c in counters)
  dists = found['distributions']
  return dists[0].committed if dists else None


class SumModel:
  """A model with a scikit-learn-like predict that accepts any width."""
  def predict(self, x):
    return x.sum(axis=1)


def save_pickle(path, obj):
  """Pickles ``obj`` to ``path`` atomically (a watcher never sees half a
  file); returns ``path``."""
  import os
  import pickle
  import uuid
  tmp = f'{path}.{uuid.uuid4().hex}.tmp'
  with open(tmp, 'wb') as f:
    pickle.dump(obj, f)
  os.replace(tmp, path)
  return path


def linear_model(factor, width=1):
  """A scikit-learn LinearRegression predicting ``factor * sum(row)`` for
  rows of ``width`` numbers."""
  import numpy as np
  from sklearn.linear_model import LinearRegression
  x = np.arange(10 * width, dtype=float).reshape(-1, width)
  return LinearRegression().fit(x, factor * x.sum(axis=1))


def sha256_of(path):
  import hashlib
  with open(path, 'rb') as f:
    return hashlib.sha256(f.read()).hexdigest()


def refreshable_engine(handler, **options):
  """The per-element engine, set up and loaded, without a pipeline:
  ``engine.run(batch)`` scores, ``engine.refresh(metadata)`` swaps models."""
  import uuid

  from runinference._core.batching import BatchConfig
  from runinference._core.engine import InferenceEngine
  from runinference._core.failures import ErrorPolicy
  engine = InferenceEngine(
      handler, namespace=None, inference_args=None, policy=ErrorPolicy(),
      batch_config=BatchConfig(), prebatched=False, tag=uuid.uuid4().hex,
      load_eagerly=True, refreshable=True, **options)
  engine.setup()
  return engine


class RealTimeTimerDoFn(beam.DoFn):
  """A stateful DoFn with a processing-time timer (never set): on the
  DirectRunner it sends the whole pipeline to the bundle-based runner."""
  TIMER = userstate.TimerSpec('t', TimeDomain.REAL_TIME)

  def process(self, kv, timer=beam.DoFn.TimerParam(TIMER)):
    yield kv

  @userstate.on_timer(TIMER)
  def fired(self):
    return []
