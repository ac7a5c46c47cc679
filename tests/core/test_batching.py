"""Batching: size, weight, length buckets, ragged inputs, config errors."""
import apache_beam as beam
import numpy as np
import pytest
import torch
from apache_beam.testing.util import assert_that, equal_to

from runinference._core.batching import (Batcher, BatchConfig, SizeEstimator,
                                         group_by_shape)
from runinference.base import RunInference
from runinference.pytorch_inference import PytorchModelHandlerTensor
from runinference.sklearn_inference import SklearnModelHandlerNumpy
from tests.helpers import EchoBatchHandler, MultiplierHandler, metric, run_pipeline


def _batches(handler, data, **kw):
  """Runs data through RunInference(handler); returns the batches seen."""
  import os
  import pickle
  import tempfile
  out = tempfile.mktemp(suffix='.pkl')

  def save(batches):
    with open(out, 'wb') as f:
      pickle.dump(list(batches), f)

  def build(p):
    res = (p | beam.Create(data) | RunInference(handler, **kw)
           | beam.Map(lambda r: r.inference) | beam.Distinct())
    assert_that(res, save)

  run_pipeline(build)
  with open(out, 'rb') as f:
    batches = pickle.load(f)
  os.unlink(out)
  return batches


def test_max_batch_size_is_respected():
  handler = EchoBatchHandler(min_batch_size=2, max_batch_size=5)
  batches = _batches(handler, list(range(23)))
  assert sorted(x for b in batches for x in b) == list(range(23))
  assert max(len(b) for b in batches) <= 5


def test_fixed_batch_size():
  handler = EchoBatchHandler(min_batch_size=4, max_batch_size=4)
  batches = _batches(handler, list(range(12)))
  assert sorted(len(b) for b in batches) == [4, 4, 4]


def test_max_batch_weight_with_element_size_fn():
  words = ['a' * n for n in (1, 9, 3, 3, 3, 8, 2, 2, 1, 10, 4)]
  handler = EchoBatchHandler(
      max_batch_size=100, max_batch_weight=10, element_size_fn=len)
  batches = _batches(handler, words)
  assert sorted(w for b in batches for w in b) == sorted(words)
  assert all(sum(map(len, b)) <= 10 for b in batches)


def test_length_buckets_keep_similar_lengths_together():
  texts = ['x' * n for n in (3, 40, 5, 45, 7, 41, 2)]
  handler = EchoBatchHandler(
      max_batch_size=100,
      batch_length_fn=len,
      batch_bucket_boundaries=[10, 30])
  batches = _batches(handler, texts)
  for b in batches:
    assert len({len(t) >= 10 for t in b}) == 1
  assert sorted(t for b in batches for t in b) == sorted(texts)


def test_max_batch_duration_batch_mode():
  handler = MultiplierHandler(max_batch_size=4, max_batch_duration_secs=1)
  with beam.Pipeline() as p:
    out = (p | beam.Create(list(range(10))) | RunInference(handler)
           | beam.Map(lambda r: r.inference))
    assert_that(out, equal_to([2 * x for x in range(10)]))


def test_ragged_numpy_batches_do_not_crash(tmp_path):
  import pickle

  from tests.helpers import SumModel
  path = tmp_path / 'sum.pkl'
  path.write_bytes(pickle.dumps(SumModel()))
  data = [np.ones(n % 3 + 1) * n for n in range(9)]
  expected = [float((n % 3 + 1) * n) for n in range(9)]
  with beam.Pipeline() as p:
    out = (p | beam.Create(data)
           | RunInference(SklearnModelHandlerNumpy(str(path), max_batch_size=9,
                                                   min_batch_size=9))
           | beam.Map(lambda r: float(r.inference)))
    assert_that(out, equal_to(expected))


class _Sum(torch.nn.Module):
  def forward(self, x):
    return x.sum(dim=1)


def test_ragged_torch_tensors_do_not_crash(tmp_path):
  path = str(tmp_path / 'sum.pt')
  torch.jit.save(torch.jit.script(_Sum()), path)
  handler = PytorchModelHandlerTensor(
      torch_script_model_path=path, min_batch_size=12, max_batch_size=12)
  data = [torch.ones(12 - i % 5) for i in range(12)]
  with beam.Pipeline() as p:
    out = (p | beam.Create(data) | RunInference(handler)
           | beam.Map(lambda r: int(r.inference)))
    assert_that(out, equal_to([12 - i % 5 for i in range(12)]))


def test_batch_size_metrics():
  handler = MultiplierHandler(min_batch_size=3, max_batch_size=3)
  result = run_pipeline(
      lambda p: p | beam.Create(list(range(9))) | RunInference(handler))
  dist = metric(result, 'Test_Multiplier', 'inference_request_batch_size')
  assert dist.max == 3 and dist.sum == 9
  assert metric(result, 'Test_Multiplier', 'num_inferences') == 9


@pytest.mark.parametrize(
    'kwargs, message',
    [
        (dict(min_batch_size=10, max_batch_size=2), 'min_batch_size'),
        (dict(max_batch_size=0), 'max_batch_size'),
        (dict(max_batch_weight=10), 'element_size_fn'),
        (dict(batch_bucket_boundaries=[5, 10]), 'batch_length_fn'),
        (dict(batch_length_fn=len, batch_bucket_boundaries=[10, 5]), 'sorted'),
        (dict(max_batch_duration_secs=-1), 'max_batch_duration_secs'),
    ])
def test_bad_batching_config_is_a_clear_error(kwargs, message):
  with pytest.raises(ValueError, match=message):
    BatchConfig.from_kwargs(EchoBatchHandler(**kwargs).batch_elements_kwargs())
  p = beam.Pipeline()
  with pytest.raises(ValueError, match=message):
    _ = p | beam.Create([1]) | RunInference(EchoBatchHandler(**kwargs))


def test_unknown_batching_option():
  class Custom(EchoBatchHandler):
    def batch_elements_kwargs(self):
      return {'max_batch_sise': 3}

  with pytest.raises(ValueError, match='max_batch_sise'):
    BatchConfig.from_kwargs(Custom().batch_elements_kwargs())


def test_batcher_unit_weight_and_drain():
  cfg = BatchConfig.from_kwargs(
      dict(min_batch_size=100, max_batch_size=100, max_batch_weight=5,
           element_size_fn=int))
  b = Batcher(cfg)
  full = [b.add(x, x) for x in (2, 2, 2, 4, 1)]
  assert full[2] == [2, 2]  # the third 2 would exceed 5
  assert full[3] == [2]
  assert b.drain() == [[4, 1]]
  assert len(b) == 0


def test_element_size_fn_alone_counts_toward_the_batch_size():
  """As Beam's BatchElements: without max_batch_weight each element adds
  element_size_fn(element) to the size that min/max_batch_size bound."""
  handler = EchoBatchHandler(min_batch_size=6, max_batch_size=6,
                             element_size_fn=len)
  words = ['aaa', 'bbb', 'cc', 'dddd', 'e', 'ffffff', 'g']
  with beam.Pipeline() as p:
    out = (p | beam.Create(words, reshuffle=False) | RunInference(handler)
           | beam.Map(lambda r: r.inference))
    assert_that(out | beam.Distinct(),
                equal_to([('aaa', 'bbb'), ('cc', 'dddd'), ('e', 'ffffff'),
                          ('g',)]))
  b = Batcher(BatchConfig.from_kwargs(handler.batch_elements_kwargs()))
  assert b.measure(['ab', 'cde']) == 5


def test_weight_budget_holds_within_each_length_bucket():
  """Beam 2.78 refuses max_batch_weight with length buckets; ours keeps a
  weight budget per bucket."""
  cfg = BatchConfig.from_kwargs(
      dict(min_batch_size=100, max_batch_size=100, max_batch_weight=10,
           element_size_fn=len, batch_length_fn=len,
           batch_bucket_boundaries=[5]))
  b = Batcher(cfg)
  words = ['ab', 'abcdef', 'cd', 'ghijkl', 'ef', 'mn', 'opqrst']
  full = [batch for w in words if (batch := b.add(w, w))]
  batches = full + b.drain()
  assert sorted(w for batch in batches for w in batch) == sorted(words)
  for batch in batches:
    assert len({len(w) < 5 for w in batch}) == 1  # one bucket per batch
    assert sum(map(len, batch)) <= 10
  assert ['abcdef'] in full  # the second 6-letter word would exceed 10


def test_group_by_shape():
  values = [np.zeros(2), np.zeros(3), np.zeros(2), ('k', np.zeros(3))]
  assert group_by_shape(values) == [[0, 2], [1], [3]]


def test_adaptive_batches_grow():
  handler = EchoBatchHandler()
  batches = _batches(handler, list(range(300)))
  sizes = sorted(len(b) for b in batches)
  assert sizes[0] == 1 and sizes[-1] >= 64


def _converge(cost, steps=30, **cfg):
  sizer = SizeEstimator(BatchConfig(**cfg))
  sizes = []
  for _ in range(steps):
    sizer.observe(sizer.size, cost(sizer.size))
    sizes.append(sizer.size)
  return sizes


def test_size_estimator_first_steps():
  sizer = SizeEstimator(BatchConfig(min_batch_size=1, max_batch_size=1000))
  assert sizer.size == 1
  sizer.observe(1, 0.01)  # one size seen: doubles, as BatchElements starts
  assert sizer.size == 2
  sizer.observe(2, 0.02)  # two sizes: 10 ms per element; grows at most 8x
  assert sizer.size == 16
  sizer.observe(16, 8.0)  # per element ~0.57 s: shrinks, at most 2x a step
  assert sizer.size == 8
  sizer = SizeEstimator(BatchConfig(min_batch_size=2, max_batch_size=1000))
  sizer.observe(2, 1.5)  # over the target at the minimum: tries a larger one
  assert sizer.size == 4


def test_size_estimator_targets_the_per_element_time():
  # 10 ms per element: 100 elements make the 1 s target.
  sizes = _converge(lambda n: 0.01 * n)
  assert 90 <= sizes[-1] <= 110 and sizes[:4] == sorted(sizes[:4])


def test_size_estimator_ignores_a_fixed_cost():
  # A model reload of 1.3 s in every call (thrashing) plus 1 ms per element:
  # every batch is over twice the target, yet batches must grow (to about
  # 1,000) so the reload is paid per 1,000 elements, not per element.
  sizes = _converge(lambda n: 1.3 + 0.001 * n)
  assert 900 <= sizes[-1] <= 1100


def test_size_estimator_shrinks_slow_batches_and_stays_in_bounds():
  sizes = _converge(lambda n: 0.5 * n, min_batch_size=1, max_batch_size=64)
  assert sizes[-1] == 2
  sizes = _converge(lambda n: 1e-7 * n, max_batch_size=5000)
  assert sizes[-1] == 5000  # never past max_batch_size


def test_keyed_handler_applies_size_fn_to_the_value():
  words = [('k', 'a' * n) for n in (4, 4, 4, 4)]
  from runinference.base import KeyedModelHandler
  handler = KeyedModelHandler(
      EchoBatchHandler(
          min_batch_size=10, max_batch_size=10, max_batch_weight=8,
          element_size_fn=len))
  with beam.Pipeline() as p:
    out = (p | beam.Create(words) | RunInference(handler)
           | beam.Map(lambda kv: sum(len(w) for w in kv[1].inference)))
    assert_that(out, equal_to([8, 8, 8, 8]))


class _FakeClock:
  def __init__(self):
    self.ns = 0

  def time_ns(self):
    return self.ns


class _LoadsInsideHandler(EchoBatchHandler):
  """Loads one more model per 4 elements inside each call (as a multi-model
  KeyedModelHandler does when a batch holds more keys), 5 s per load, and
  takes 1 ms per element; time runs on ``clock``."""
  def __init__(self, clock):
    super().__init__()
    self.clock = clock

  def run_inference(self, batch, model, inference_args=None):
    from runinference._core.model_holder import timed_load
    for _ in range(len(batch) // 4):
      timed_load(lambda: setattr(self.clock, 'ns', self.clock.ns + 5 * 10**9),
                 'inner', self.clock)
    self.clock.ns += 10**6 * len(batch)
    return super().run_inference(batch, model, inference_args)


def test_models_loaded_inside_a_call_do_not_shrink_batches():
  import uuid
  from runinference._core.engine import InferenceEngine
  from runinference._core.failures import ErrorPolicy
  clock = _FakeClock()
  engine = InferenceEngine(
      _LoadsInsideHandler(clock), namespace=None, inference_args=None,
      policy=ErrorPolicy(), batch_config=BatchConfig(min_batch_size=4),
      prebatched=False, tag=uuid.uuid4().hex, load_eagerly=True, clock=clock)
  engine.setup()
  for _ in range(3):
    size = engine.batcher.sizer.size
    assert len(engine.run(list(range(size))).outputs) == size
  # Counted as call time, the loads (5 s per 4 elements) would read as
  # 1.25 s per element and keep batches at 4; left out, 1 ms per element
  # grows them toward the 1 s target.
  assert engine.batcher.sizer.size >= 64
