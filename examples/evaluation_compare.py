"""Compare a candidate model with the serving one inside a Beam pipeline, per
slice, and decide whether it may be deployed.

Two scikit-learn classifiers are trained on synthetic loan data (the
candidate sees one more feature). ``EvaluateModel`` runs both through
RunInference on held-out rows, computes metrics overall, per region and per
income bucket, checks thresholds, and writes ``evaluation.json`` and
``evaluation.html`` (open it in a browser).

Run:  python examples/evaluation_compare.py [--workdir DIR]
"""
import argparse
import os
import pickle
import tempfile

import apache_beam as beam
import numpy as np
from sklearn.linear_model import LogisticRegression

from runinference.evaluation import (Bucket, ChangeThreshold, EvaluateModel,
                                     ValueThreshold, WriteEvaluation)
from runinference.sklearn_inference import SklearnModelHandlerNumpy


def make_data(n, rng):
  income = rng.gamma(4, 12_000, n)
  debt = rng.random(n)
  age = rng.integers(20, 70, n)
  logit = 2.5 * debt - income / 40_000 + 0.03 * (age - 45)
  default = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
  region = rng.choice(['north', 'south', 'east', 'west'], n)
  x = np.stack([income / 50_000, debt, (age - 45) / 10], axis=1)
  return x, default, region, income


def predict_proba(model, batch, inference_args=None):
  return list(model.predict_proba(np.stack(batch))[:, 1])


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument('--workdir', default=None)
  args = ap.parse_args()
  work = args.workdir or tempfile.mkdtemp(prefix='ri-evaluation-')
  os.makedirs(work, exist_ok=True)
  rng = np.random.default_rng(7)
  x, y, _, _ = make_data(5000, rng)
  serving = LogisticRegression().fit(x[:, :2], y)          # no age
  candidate = LogisticRegression().fit(x, y)
  paths = {}
  for name, model, cols in (('candidate', candidate, 3), ('serving', serving, 2)):
    paths[name] = os.path.join(work, f'{name}.pkl')
    with open(paths[name], 'wb') as f:
      pickle.dump(_Cols(model, cols), f)

  hx, hy, hregion, hincome = make_data(4000, rng)
  rows = [{'x': hx[i], 'label': int(hy[i]), 'region': hregion[i],
           'income': float(hincome[i])} for i in range(len(hy))]
  with beam.Pipeline() as p:
    ev = (p | beam.Create(rows)
          | EvaluateModel(
              handlers={n: SklearnModelHandlerNumpy(
                  paths[n], inference_fn=predict_proba) for n in paths},
              features='x', label_key='label', metrics='binary',
              slices=[(), 'region', Bucket('income', [30_000, 60_000])],
              thresholds=[ValueThreshold('roc_auc', lower=0.6),
                          ChangeThreshold('log_loss',
                                          direction='lower_is_better'),
                          ChangeThreshold('roc_auc', absolute=-0.02,
                                          slices=['region'])],
              bootstrap=50, seed=1))
    ev['validation'] | beam.Map(lambda v: print('verdict:', v))
    ev | WriteEvaluation(work) | beam.Map(
        lambda paths: print('\n'.join(f'{k}: {v}' for k, v in paths.items())))


class _Cols:
  """A model that reads the first ``cols`` features."""
  def __init__(self, model, cols):
    self.model, self.cols = model, cols

  def predict_proba(self, x):
    return self.model.predict_proba(x[:, :self.cols])


if __name__ == '__main__':
  main()
