"""A model handler for a library runinference does not wrap.

The "model" here is a tiny rule-based NLP object with a spaCy-like interface
(``nlp.pipe(texts)`` yields documents with entities) -- any Python object
works the same way. A handler needs only ``load_model`` and
``run_inference``; batching, sharing the model, metrics, keys and dead
letters come from RunInference.

Run: python examples/custom_handler.py
"""
import json
import os
import re
import tempfile
from typing import Any, Iterable, Optional, Sequence

import apache_beam as beam

from runinference.base import (KeyedModelHandler, ModelHandler,
                               PredictionResult, RunInference)


class GazetteerNLP:
  """A stand-in for a third-party NLP pipeline: finds known names in text."""
  def __init__(self, entities: dict):
    self.entities = entities
    self.pattern = re.compile(
        r'\b(' + '|'.join(map(re.escape, sorted(entities, key=len,
                                                reverse=True))) + r')\b')

  def pipe(self, texts: Iterable[str]):
    for text in texts:
      yield [(m.group(0), self.entities[m.group(0)])
             for m in self.pattern.finditer(text)]


class GazetteerModelHandler(ModelHandler):
  """Loads a GazetteerNLP from a JSON file; runs it on a batch of strings."""
  def __init__(self, path: str, **kwargs):
    super().__init__(**kwargs)  # batching options: max_batch_size=..., etc.
    self._path = path

  def load_model(self) -> GazetteerNLP:
    # Runs once per worker process (or machine, with large_model=True).
    with open(self._path) as f:
      return GazetteerNLP(json.load(f))

  def run_inference(
      self,
      batch: Sequence[str],
      model: GazetteerNLP,
      inference_args: Optional[dict[str, Any]] = None
  ) -> Iterable[PredictionResult]:
    for i, text in enumerate(batch):
      if not isinstance(text, str):
        raise TypeError(f'example {i} is {type(text).__name__}, not text')
    # One call for the whole batch, like nlp.pipe in spaCy.
    return [
        PredictionResult(text, entities, self._path)
        for text, entities in zip(batch, model.pipe(batch))
    ]

  def get_metrics_namespace(self) -> str:
    return 'Gazetteer'


def main():
  with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, 'entities.json')
    with open(path, 'w') as f:
      json.dump({'Apache Beam': 'PRODUCT', 'Berlin': 'GPE', 'Ada': 'PERSON'},
                f)
    handler = KeyedModelHandler(GazetteerModelHandler(path, max_batch_size=32))
    texts = [('t1', 'Ada runs Apache Beam in Berlin.'),
             ('t2', 'Nothing to see here.')]
    with beam.Pipeline() as p:
      _ = (p | beam.Create(texts) | RunInference(handler)
           | beam.MapTuple(lambda key, r: f'{key}: {r.inference}')
           | beam.Map(print))


if __name__ == '__main__':
  main()
