"""XGBoost in a Beam pipeline: one predict call per batch.

Run: python examples/frameworks/xgboost_example.py   (needs xgboost)
"""
import os
import tempfile

import apache_beam as beam
import numpy as np
import xgboost

from runinference.base import KeyedModelHandler, RunInference
from runinference.xgboost_inference import XGBoostModelHandlerNumpy


def build_model(directory: str) -> str:
  rng = np.random.default_rng(0)
  x = rng.uniform(0, 10, size=(50, 3))
  y = (x[:, 0] + x[:, 1] > 10).astype(int)
  model = xgboost.XGBClassifier(n_estimators=20, max_depth=3).fit(x, y)
  path = os.path.join(directory, 'model.json')
  model.save_model(path)
  return path


def main():
  with tempfile.TemporaryDirectory() as tmp:
    handler = KeyedModelHandler(
        XGBoostModelHandlerNumpy(xgboost.XGBClassifier, build_model(tmp)))
    rows = {'a': [1.0, 2.0, 0.0], 'b': [9.0, 8.0, 1.0], 'c': [5.0, 6.0, 3.0]}
    with beam.Pipeline() as p:
      _ = (
          p | beam.Create([(k, np.array(v)) for k, v in rows.items()])
          | RunInference(handler)  # a 1-D array is one row
          | beam.MapTuple(lambda key, r: f'{key}: class {int(r.inference)}')
          | beam.Map(print))


if __name__ == '__main__':
  main()
