"""A model handler for a library runinference does not wrap.

The "model" here is a tiny rule-based NLP object with a spaCy-like interface
(``nlp.pipe(texts)`` yields documents with entities) -- any Python object
works the same way. A handler needs only ``load_model`` and
``run_inference``; batching, sharing the model, metrics, keys and dead
letters come from RunInference.

``--check`` puts the handler through the conformance kit
(``runinference.testing``): the same checks every handler of ours passes.

Run: python examples/custom_handler.py [--check]
"""
import argparse
import json
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

import apache_beam as beam

from runinference.base import (KeyedModelHandler, ModelHandler,
                               PredictionResult, RunInference)
from runinference.testing import HandlerCase, check_model_handler

ENTITIES = {'Apache Beam': 'PRODUCT', 'Berlin': 'GPE', 'Ada': 'PERSON'}


class GazetteerNLP:
  """A stand-in for a third-party NLP pipeline: finds known names in text."""
  def __init__(self, entities: dict):
    self.entities = entities
    self.pattern = re.compile(
        r'\b(' + '|'.join(map(re.escape, sorted(entities, key=len,
                                                reverse=True))) + r')\b')

  def pipe(self, texts: Iterable[str]) -> list:
    # A list, not a generator: with large_model=True the model lives in
    # another process and what its methods return is pickled back.
    return [[(m.group(0), self.entities[m.group(0)])
             for m in self.pattern.finditer(text)] for text in texts]


class GazetteerModelHandler(ModelHandler):
  """Loads a GazetteerNLP from a JSON file; runs it on a batch of strings."""
  # Where the model is: repr, model refresh (update_model_path) and the
  # results' model_id read it.
  _model_location_attr = '_path'

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


def write_model(directory) -> str:
  path = os.path.join(directory, 'entities.json')
  with open(path, 'w') as f:
    json.dump(ENTITIES, f)
  return path


def conformance_case() -> HandlerCase:
  """The handler described for the conformance kit."""
  def check(text, entities):
    assert sorted(name for name, _ in entities) == sorted(
        name for name in ENTITIES if name in text), entities
  return HandlerCase(
      name='gazetteer',
      # options: what a check asks the handler for (large_model=True).
      make_handler=lambda tmp, **options: GazetteerModelHandler(
          write_model(tmp), **options),
      make_examples=lambda: ['Ada runs Apache Beam in Berlin.',
                             'Nothing to see here.'],
      bad_example=42,
      expected_namespace='Gazetteer',
      check=check)


def run_checks() -> int:
  results = check_model_handler(conformance_case())  # raises if one fails
  for r in results:
    print(f'{r.check:<28} {r.status:<8} {r.detail}')
  return 0


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--check', action='store_true',
                      help='run the conformance kit on the handler')
  if parser.parse_args(argv).check:
    return run_checks()
  with tempfile.TemporaryDirectory() as tmp:
    path = write_model(Path(tmp))
    handler = KeyedModelHandler(GazetteerModelHandler(path, max_batch_size=32))
    texts = [('t1', 'Ada runs Apache Beam in Berlin.'),
             ('t2', 'Nothing to see here.')]
    with beam.Pipeline() as p:
      _ = (p | beam.Create(texts) | RunInference(handler)
           | beam.MapTuple(lambda key, r: f'{key}: {r.inference}')
           | beam.Map(print))


if __name__ == '__main__':
  sys.exit(main())
