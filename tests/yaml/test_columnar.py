"""RunInferenceColumnar and MLTransform in Beam YAML through the CLI: Parquet
and DuckDB sources, a Parquet sink or rows, and the progress line's counts."""
import json

import numpy as np
import pytest

pytest.importorskip('yaml')
pytest.importorskip('sklearn')
pa = pytest.importorskip('pyarrow')
pq = pytest.importorskip('pyarrow.parquet')

from runinference.cli import main  # noqa: E402
from tests.yaml_helpers import sklearn_linear  # noqa: E402


@pytest.fixture
def data(tmp_path):
  for i in range(3):
    ids = np.arange(i * 500, (i + 1) * 500)
    pq.write_table(pa.table({'id': ids, 'x': ids.astype(float)}),
                   tmp_path / f'in-{i}.parquet')
  return tmp_path, sklearn_linear(tmp_path / 'five.pkl')


def test_parquet_to_parquet_one_call_per_chunk(data, capsys):
  d, model = data
  path = d / 'p.yaml'
  path.write_text(f'''\
pipeline:
  transforms:
    - type: RunInferenceColumnar
      name: Score
      config:
        source: {{parquet: "{d}/in-*.parquet"}}
        model_handler:
          type: SklearnModelHandlerNumpy
          config: {{model_uri: "{model}"}}
        feature_columns: [x]
        sink: {{parquet: "{d}/out/scored"}}
''')
  assert main(['run', str(path)]) == 0
  captured = capsys.readouterr()
  table = pa.concat_tables([pq.read_table(f) for f in
                            sorted((d / 'out').glob('scored-*.parquet'))])
  assert table.num_rows == 1500
  got = dict(zip(table['id'].to_pylist(), table['prediction'].to_pylist()))
  assert all(abs(got[i] - 5 * i) < 1e-6 for i in range(1500))
  assert '1,500 rows in · 1,500 inferred' in captured.err
  # one model call (batch) per Parquet chunk, under the step's own name
  line = next(line for line in captured.out.splitlines()
              if line.startswith('Score '))
  assert line.split()[1:3] == ['1500', '3'], line


def test_duckdb_source_to_rows_for_the_next_step(data):
  duckdb = pytest.importorskip('duckdb')
  d, model = data
  with duckdb.connect(str(d / 'db.duckdb')) as con:
    con.execute(f"CREATE TABLE t AS SELECT * FROM read_parquet('{d}/in-*.parquet')")
  path = d / 'p.yaml'
  path.write_text(f'''\
pipeline:
  transforms:
    - type: RunInferenceColumnar
      config:
        source: {{duckdb: {{database: "{d}/db.duckdb", query: "SELECT id, x FROM t WHERE id < 20"}}}}
        model_handler:
          type: SklearnModelHandlerNumpy
          config: {{model_uri: "{model}"}}
        feature_columns: [x]
        output_column: y
    - type: WriteToJson
      input: RunInferenceColumnar
      config: {{path: "{d}/out/rows"}}
''')
  assert main(['run', str(path), '--quiet']) == 0
  rows = [json.loads(x) for f in (d / 'out').glob('rows*')
          for x in f.read_text().splitlines()]
  assert sorted(r['id'] for r in rows) == list(range(20))
  assert all(abs(r['y'] - 5 * r['x']) < 1e-6 for r in rows)


def test_columnar_config_errors_name_the_field(data, capsys):
  d, model = data
  path = d / 'p.yaml'
  path.write_text(f'''\
pipeline:
  transforms:
    - type: RunInferenceColumnar
      config:
        source: {{parquet: "{d}/in-*.parquet"}}
        model_handler:
          type: SklearnModelHandlerNumpy
          config: {{model_uri: "{model}"}}
        feature_column: [x]
''')
  assert main(['validate', str(path)]) == 2
  err = capsys.readouterr().err
  assert f'{path}:' in err and 'feature_column' in err and \
      "did you mean 'feature_columns'" in err, err


def test_mltransform_rows_show_in_the_progress_line(tmp_path, capsys):
  path = tmp_path / 'p.yaml'
  path.write_text(f'''\
pipeline:
  transforms:
    - type: Create
      config:
        elements: [{{value: 1.0}}, {{value: 2.0}}, {{value: 3.0}}, {{value: 7.0}}]
    - type: MLTransform
      input: Create
      config:
        write_artifact_location: "{tmp_path}/artifacts"
        transforms:
          - type: ScaleTo01
            config: {{columns: [value]}}
    - type: MapToFields
      input: MLTransform
      config: {{language: python, fields: {{line: "str(value)"}}}}
    - type: WriteToText
      input: MapToFields
      config: {{path: "{tmp_path}/out/scaled"}}
''')
  assert main(['run', str(path), '--log-level', 'warning']) == 0
  assert 'MLTransform 4 rows in · 4 out' in capsys.readouterr().err


def test_parquet_to_parquet_under_beams_own_main(data):
  """The same step under `python -m apache_beam.yaml.main`, the provider
  declared in the file."""
  from apache_beam.yaml import main as yaml_main
  d, model = data
  path = d / 'p.yaml'
  path.write_text(f'''\
providers:
  - type: python
    config: {{}}
    transforms:
      RunInferenceColumnar: runinference.yaml.RunInferenceColumnar
pipeline:
  transforms:
    - type: RunInferenceColumnar
      config:
        source: {{parquet: "{d}/in-*.parquet"}}
        model_handler:
          type: SklearnModelHandlerNumpy
          config: {{model_uri: "{model}"}}
        feature_columns: [x]
        sink: {{parquet: "{d}/out/scored"}}
''')
  yaml_main.run([f'--yaml_pipeline_file={path}', '--runner=apache_beam.runners.'
                 'portability.fn_api_runner.fn_runner.FnApiRunner'])
  table = pa.concat_tables([pq.read_table(f) for f in
                            sorted((d / 'out').glob('scored-*.parquet'))])
  assert sorted(table['prediction'].to_pylist()) == pytest.approx(
      [5.0 * i for i in range(1500)])
