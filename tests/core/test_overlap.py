"""Overlap: model calls on a thread of their own (RunInference(overlap=...)),
against the same pipeline with the model called on the step's thread."""
import threading

import apache_beam as beam
import pytest
from apache_beam.metrics import Metrics
from apache_beam.testing.util import assert_that, equal_to

from runinference.base import ModelHandler, PredictionResult, RunInference
from runinference.exceptions import ConfigurationTypeError
from runinference.sklearn_inference import SklearnModelHandlerNumpy
from tests.helpers import MultiplierHandler, metric, run_pipeline

torch = pytest.importorskip('torch')
from runinference.pytorch_inference import PytorchModelHandlerTensor  # noqa: E402


class ThreadRecordingHandler(ModelHandler):
  """Doubles numbers; records the thread that loaded the model and the ones
  that called it, counts calls in a Beam counter from inside the call, and
  fails on the elements in ``fail_on`` and on batches over ``oom_over``
  (as MemoryError)."""
  seen: dict = {}

  def __init__(self, run_id, fail_on=(), oom_over=None, **kwargs):
    super().__init__(**kwargs)
    self.run_id = run_id
    self.fail_on = set(fail_on)
    self.oom_over = oom_over

  def _log(self, what):
    ThreadRecordingHandler.seen.setdefault(self.run_id, []).append(
        (what, threading.get_ident(), threading.current_thread().name))

  def load_model(self):
    self._log('load')
    return 2

  def run_inference(self, batch, model, inference_args=None):
    self._log('call')
    Metrics.counter('overlap_test', 'calls_from_handler').inc()
    if self.oom_over is not None and len(batch) > self.oom_over:
      raise MemoryError(f'batch of {len(batch)} does not fit')
    for x in batch:
      if x in self.fail_on:
        raise ValueError(f'cannot score {x}')
    return [PredictionResult(x, model * x) for x in batch]


def _run(handler, n, overlap, dlq=False):
  out = {}

  def build(p):
    step = RunInference(handler, overlap=overlap)
    if dlq:
      step = step.with_exception_handling()
    res = p | beam.Create(list(range(n))) | step
    main = res[0] if dlq else res
    assert_that(main | beam.Map(lambda r: (r.example, r.inference)),
                equal_to([(i, 2 * i) for i in range(n)
                          if i not in getattr(handler, 'fail_on', ())]))
    if dlq:
      failed = res[1].failed_inferences | beam.Map(lambda rec: rec[0][0])
      assert_that(failed, equal_to(sorted(handler.fail_on)), label='dead')
  out['result'] = run_pipeline(build)
  return out['result']


@pytest.mark.parametrize('overlap', [True, False])
def test_every_element_once_and_metrics_kept(overlap):
  run_id = f'metrics-{overlap}'
  handler = ThreadRecordingHandler(run_id, min_batch_size=7, max_batch_size=7)
  result = _run(handler, 100, overlap)
  assert metric(result, 'overlap_test', 'calls_from_handler') == 15
  ns = handler.get_metrics_namespace()
  assert metric(result, ns, 'num_inferences') == 100
  log = ThreadRecordingHandler.seen[run_id]
  loads = {ident for what, ident, _ in log if what == 'load'}
  calls = {ident for what, ident, _ in log if what == 'call'}
  names = {name for what, _, name in log if what == 'call'}
  if overlap:
    # Loaded and called on the same thread, which is not Beam's.
    assert calls == loads and names == {'runinference-model-calls'}
  else:
    assert 'runinference-model-calls' not in names


def test_failures_are_bisected_with_overlap():
  handler = ThreadRecordingHandler(
      'fail', fail_on=(13, 61), min_batch_size=8, max_batch_size=8)
  result = _run(handler, 80, True, dlq=True)
  ns = handler.get_metrics_namespace()
  assert metric(result, ns, 'failed_inferences') == 2


def test_out_of_memory_backs_off_with_overlap():
  handler = ThreadRecordingHandler(
      'oom', oom_over=5, min_batch_size=16, max_batch_size=16)
  result = _run(handler, 64, True)
  assert metric(result, handler.get_metrics_namespace(), 'oom_backoffs') >= 1


def test_a_failure_without_exception_handling_fails_the_pipeline():
  handler = MultiplierHandler(fail_on=(40,), min_batch_size=4, max_batch_size=4)
  with pytest.raises(Exception, match='cannot score 40'):
    with beam.Pipeline() as p:
      _ = p | beam.Create(list(range(60))) | RunInference(handler, overlap=True)


class _Linear(torch.nn.Module):
  def __init__(self):
    super().__init__()
    self.linear = torch.nn.Linear(3, 2)

  def forward(self, x):
    return self.linear(x)


def test_torch_outputs_equal_the_model_with_and_without_overlap(tmp_path):
  torch.manual_seed(0)
  model = _Linear()
  path = str(tmp_path / 'linear.pt')
  torch.save(model.state_dict(), path)
  with torch.no_grad():
    want = [(i, tuple(round(v, 4) for v in model(
        torch.tensor([i, i / 2, -i], dtype=torch.float32)).tolist()))
            for i in range(50)]
  for overlap in (True, False):
    handler = PytorchModelHandlerTensor(
        state_dict_path=path, model_class=_Linear, model_params={},
        min_batch_size=8, max_batch_size=8)

    def build(p, handler=handler, overlap=overlap):
      out = (p | beam.Create(list(range(50)))
             | beam.Map(lambda i: torch.tensor([i, i / 2, -i],
                                               dtype=torch.float32))
             | RunInference(handler, overlap=overlap)
             | beam.Map(lambda r: (int(r.example[0]), tuple(
                 round(v, 4) for v in r.inference.tolist()))))
      assert_that(out, equal_to(want))
    run_pipeline(build)


def test_defaults_per_handler():
  # On by default where the CPU is free while the model runs (a server, a
  # GPU); off where the model's own threads keep the cores busy.
  from runinference._handlers.common import cuda_usable
  from runinference.base import KeyedModelHandler
  from runinference.remote import RemoteModelHandler
  assert RemoteModelHandler.overlap_by_default(None)
  assert not SklearnModelHandlerNumpy(model_uri='x.pkl').overlap_by_default()
  cpu = PytorchModelHandlerTensor(
      state_dict_path='x.pt', model_class=_Linear, device='CPU')
  assert not cpu.overlap_by_default()
  gpu = PytorchModelHandlerTensor(
      state_dict_path='x.pt', model_class=_Linear, device='GPU')
  assert gpu.overlap_by_default() == cuda_usable()
  assert KeyedModelHandler(gpu).overlap_by_default() == cuda_usable()
  assert gpu.with_preprocess_fn(lambda x: x).overlap_by_default() == (
      cuda_usable())


def test_overlap_must_be_a_bool():
  with pytest.raises(ConfigurationTypeError, match='overlap must be'):
    RunInference(MultiplierHandler(), overlap='yes')


@pytest.mark.parametrize('overlap', [True, False])
def test_metrics_from_a_call_under_a_timeout_are_kept(overlap):
  handler = ThreadRecordingHandler(
      f'timeout-{overlap}', min_batch_size=10, max_batch_size=10)

  def build(p):
    main, _ = (p | beam.Create(list(range(30)))
               | RunInference(handler, overlap=overlap)
               .with_exception_handling(timeout=30))
    assert_that(main | beam.Map(lambda r: r.inference),
                equal_to([2 * i for i in range(30)]))
  result = run_pipeline(build)
  assert metric(result, 'overlap_test', 'calls_from_handler') == 3
