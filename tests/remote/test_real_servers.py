"""The protocol handlers against real servers on 127.0.0.1: MLflow scoring,
MLServer (V2), KServe (V1, and Vertex AI's JSON), infinity (OpenAI
embeddings), ``transformers serve`` (OpenAI chat/completions, and as the
vLLM handlers' managed server)."""
import apache_beam as beam
import numpy as np
import pytest
from apache_beam.testing.util import assert_that, equal_to

from runinference.base import PredictionResult, RunInference
from runinference.remote import (KServeV1ModelHandler, KServeV2ModelHandler,
                                 MLflowModelHandler,
                                 OpenAIChatModelHandler,
                                 OpenAICompletionsModelHandler,
                                 OpenAIEmbeddingsModelHandler)
from runinference.vertex_ai_inference import VertexAIModelHandlerJSON
from runinference.vllm_inference import (OpenAIChatMessage,
                                         VLLMChatModelHandler,
                                         VLLMCompletionsModelHandler)
from tests import servers
from tests.helpers import metric, run_pipeline


@pytest.fixture
def mlflow_url(request, tmp_path_factory):
  return servers.shared_server(request, 'mlflow', lambda: servers.mlflow_server(
      tmp_path_factory.mktemp('mlflow'))).url


@pytest.fixture
def mlserver_url(request, tmp_path_factory):
  return servers.shared_server(
      request, 'mlserver',
      lambda: servers.mlserver_server(tmp_path_factory.mktemp('mlserver'))).url


@pytest.fixture
def kserve_url(request, tmp_path_factory):
  return servers.shared_server(request, 'kserve', lambda: servers.kserve_server(
      tmp_path_factory.mktemp('kserve'))).url


@pytest.fixture
def infinity_url(request, tmp_path_factory):
  return servers.shared_server(
      request, 'infinity',
      lambda: servers.infinity_server(tmp_path_factory.mktemp('inf'))).url


def _rows(n):
  frame, model = servers.frame_model()
  return frame.iloc[:n], model


def test_mlflow_dataframe_split_from_dict_rows(mlflow_url):
  frame, model = _rows(20)
  rows = frame.to_dict('records')
  expected = {tuple(r.values()): int(y) for r, y in zip(rows, model.predict(frame))}
  h = MLflowModelHandler(mlflow_url, max_batch_size=8, request_batch_size=4,
                         max_concurrent_requests=2)

  def build(p):
    out = (p | beam.Create(rows)
           | beam.Map(lambda r: (tuple(r.values()), r))
           | RunInference(_keyed(h)))
    assert_that(out, equal_to(list(expected.items())))
  result = run_pipeline(build)
  # 20 rows in batches of at most 8, split into requests of at most 4.
  assert metric(result, 'MLflowModelHandler', 'remote_requests') >= 5
  assert not metric(result, 'MLflowModelHandler', 'remote_retries')


def _keyed(h):
  from runinference.base import KeyedModelHandler
  return KeyedModelHandler(h)


@pytest.mark.parametrize('payload_format', ['instances', 'inputs'])
def test_mlflow_instances_and_inputs(mlflow_url, payload_format):
  frame, model = _rows(6)
  h = MLflowModelHandler(mlflow_url, payload_format=payload_format)
  got = h.run_inference(frame.to_dict('records'), h.load_model())
  assert got == model.predict(frame).tolist()


def test_mlflow_sequence_rows_with_columns(mlflow_url):
  frame, model = _rows(5)
  h = MLflowModelHandler(mlflow_url, columns=list(frame.columns))
  got = h.run_inference(list(frame.to_numpy()), h.load_model())
  assert got == model.predict(frame).tolist()


def test_mlserver_v2_tensors(mlserver_url):
  X, model = servers.iris_like()
  X = X[:12]
  h = KServeV2ModelHandler(mlserver_url, 'iris', max_batch_size=5)
  expected = dict(zip(map(tuple, X), model.predict(X).tolist()))

  def build(p):
    out = (p | beam.Create([(tuple(x), x) for x in X])
           | RunInference(_keyed(h)) | beam.MapTuple(lambda k, y: (k, int(np.asarray(y).item()))))
    assert_that(out, equal_to(list(expected.items())))
  run_pipeline(build)
  # Named outputs come back as dicts, float32 tensors are typed FP32.
  h2 = KServeV2ModelHandler(mlserver_url, 'iris', output_names=['predict'])
  got = h2.run_inference(list(X[:3].astype(np.float32)), h2.load_model())
  assert [int(np.asarray(g['predict']).item()) for g in got] == model.predict(X[:3]).tolist()


def test_kserve_v1_and_vertex_json(kserve_url):
  X, model = servers.iris_like()
  X = X[:10]
  want = model.predict_proba(X)[:, 1]
  v1 = KServeV1ModelHandler(kserve_url, 'iris')
  got = v1.run_inference(list(X), v1.load_model())
  np.testing.assert_allclose(got, want, rtol=1e-6)

  vertex = VertexAIModelHandlerJSON(
      endpoint_id='iris', project='p', location='us-central1',
      endpoint_url=f'{kserve_url}/v1/models/iris:predict', max_batch_size=4)

  def build(p):
    out = p | beam.Create([x.tolist() for x in X]) | RunInference(vertex)
    assert_that(
        out | beam.Map(lambda r: (tuple(r.example), round(r.inference, 6))),
        equal_to([(tuple(x), round(float(w), 6)) for x, w in zip(X, want)]))
  run_pipeline(build)


def test_vertex_private_endpoint_needs_network_and_address():
  with pytest.raises(ValueError, match='VPC network'):
    VertexAIModelHandlerJSON('1', 'p', 'l', private=True)
  with pytest.raises(ValueError, match='endpoint_url'):
    VertexAIModelHandlerJSON('1', 'p', 'l', private=True, network='n')


def test_infinity_embeddings_match_sentence_transformers(infinity_url):
  st = pytest.importorskip('sentence_transformers')
  sentences = ['a cat sat on the mat', 'remote inference with retries',
               'the five times table', 'beam pipelines on one machine']
  h = OpenAIEmbeddingsModelHandler(f'{infinity_url}/v1', 'minilm',
                                   max_batch_size=2)
  got = h.run_inference(sentences, h.load_model())
  want = st.SentenceTransformer(servers.minilm_path()).encode(sentences)
  for g, w in zip(got, want):
    cos = float(g @ w / np.linalg.norm(g) / np.linalg.norm(w))
    assert cos > 0.99

  def build(p):
    out = p | beam.Create(sentences) | RunInference(h)
    assert_that(out | beam.Map(lambda v: v.shape), equal_to([(384,)] * 4))
  run_pipeline(build)


@pytest.fixture(scope='module')
def llm(tmp_path_factory):
  """A tiny causal LM behind `transformers serve`, started and watched by
  the vLLM completions handler (server_command overrides `vllm serve`)."""
  pytest.importorskip('openai', reason='transformers serve needs openai')
  path = servers.tiny_causal_lm(tmp_path_factory.mktemp('llm'))
  h = VLLMCompletionsModelHandler(
      path, server_command=servers.transformers_serve_command(path),
      startup_timeout_secs=150)
  try:
    served = h.load_model()
  except Exception as e:  # pylint: disable=broad-except
    pytest.skip(f'transformers serve could not start here: {e}'[:2000])
  yield path, h, served
  served.server.stop()


def test_vllm_completions_against_transformers_serve(llm):
  """The handler's managed server is the real ``transformers serve`` here;
  its restart after a kill is tested with a fast stub server
  (test_server_process.py)."""
  path, h, served = llm
  args = {'max_tokens': 4, 'temperature': 0}
  first = h.run_inference(['hello', 'the cat'], served, args)
  assert [r.example for r in first] == ['hello', 'the cat']
  assert all(isinstance(r, PredictionResult) and
             isinstance(r.inference['choices'][0]['text'], str) for r in first)
  again = h.run_inference(['hello'], served, args)
  assert again[0].inference['choices'][0]['text'] == (
      first[0].inference['choices'][0]['text'])  # greedy: deterministic


def test_openai_chat_and_completions_and_vllm_chat(llm):
  path, _, served = llm
  url = served.server.url + '/v1'
  chat = OpenAIChatModelHandler(url, path, request_params={'max_tokens': 4},
                                max_concurrent_requests=3)
  conversations = ['hi', [{'role': 'user', 'content': 'two'}],
                   [OpenAIChatMessage('user', 'three')]]
  got = chat.run_inference(conversations, chat.load_model())
  assert len(got) == 3 and all(isinstance(g, str) for g in got)
  comp = OpenAICompletionsModelHandler(url, path,
                                       request_params={'max_tokens': 3})

  def build(p):
    out = p | beam.Create(['a', 'b', 'c']) | RunInference(comp)
    assert_that(out | beam.Map(lambda t: isinstance(t, str)),
                equal_to([True] * 3))
  run_pipeline(build)
  vchat = VLLMChatModelHandler(path, server_command=['true'])
  assert vchat.server_command()[0] == 'true'
