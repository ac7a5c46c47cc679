"""examples/mltransform_csv.py runs and its read mode reproduces write mode."""
import csv
import importlib.util
import json
import os

import numpy as np

EXAMPLE = os.path.join(os.path.dirname(__file__), '..', '..', 'examples', 'mltransform_csv.py')


def test_example_write_then_read(tmp_path):
  spec = importlib.util.spec_from_file_location('mltransform_csv', EXAMPLE)
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  out = mod.main(['--out', str(tmp_path)])
  # Read mode on the training file itself must give the training output.
  train_csv = os.path.join(os.path.dirname(EXAMPLE), 'data', 'reviews_train.csv')
  again = mod.main(['--out', str(tmp_path / 'again'), '--new', train_csv])
  load = lambda p: sorted((json.loads(line) for line in open(p)), key=json.dumps)
  assert load(os.path.join(out, 'train.jsonl')) == load(os.path.join(again, 'new.jsonl'))
  with open(train_csv) as f:
    prices = np.array([float(r['price']) for r in csv.DictReader(f)], dtype=np.float32)
  z = [r['price'][0] for r in load(os.path.join(out, 'train.jsonl'))]
  np.testing.assert_allclose(sorted(z), sorted((prices - prices.astype(np.float64).mean())
                                               / prices.astype(np.float64).std()), rtol=1e-5)
  vocab = (tmp_path / 'artifacts').rglob('words_review')
  assert len(next(vocab).read_text().splitlines()) > 10
