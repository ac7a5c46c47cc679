"""Beam YAML's own file IO through ``runinference run``: CSV, JSON, text,
Parquet, Avro and TFRecord written by one pipeline and read back by another
(Beam 2.77 needs pandas < 2.4 for its CSV and JSON IO and crcmod for TFRecord:
pyproject.toml's cli extra pins both)."""
import json

import pytest

pytest.importorskip('yaml')
pytest.importorskip('sklearn')

from runinference.cli import main  # noqa: E402
from tests.yaml_helpers import sklearn_linear  # noqa: E402

WRITE = '''\
pipeline:
  transforms:
    - type: ReadFromCsv
      config: {{path: "{d}/in.csv"}}
    - type: RunInference
      input: ReadFromCsv
      config:
        model_handler:
          type: SklearnModelHandlerNumpy
          config:
            model_uri: "{d}/five.pkl"
            preprocess: {{expression: '[value]'}}
            postprocess: {{expression: 'round(float(inference), 6)'}}
    - type: MapToFields
      name: Typed
      input: RunInference
      config:
        language: python
        fields:
          name: name
          value: value
          inference: {{expression: inference, output_type: number}}
    - type: WriteToJson
      input: Typed
      config: {{path: "{d}/out/json"}}
    - type: WriteToCsv
      input: Typed
      config: {{path: "{d}/out/csv"}}
    - type: WriteToParquet
      input: Typed
      config: {{path: "{d}/out/parquet"}}
    - type: WriteToAvro
      input: Typed
      config: {{path: "{d}/out/avro"}}
    - type: MapToFields
      name: Lines
      input: Typed
      config:
        language: python
        fields: {{line: "name + '=' + str(inference)"}}
    - type: WriteToText
      input: Lines
      config: {{path: "{d}/out/text"}}
    - type: MapToFields
      name: Records
      input: Lines
      config:
        language: python
        fields:
          record: {{expression: "line.encode('utf-8')", output_type: bytes}}
    - type: WriteToTFRecord
      input: Records
      config: {{file_path_prefix: "{d}/out/tfrecord"}}
'''

READ = '''\
pipeline:
  transforms:
    - type: ReadFromJson
      config: {{path: "{d}/out/json*"}}
    - type: ReadFromCsv
      config: {{path: "{d}/out/csv*"}}
    - type: ReadFromParquet
      config: {{path: "{d}/out/parquet*"}}
    - type: ReadFromAvro
      config: {{path: "{d}/out/avro*"}}
    - type: ReadFromText
      config: {{path: "{d}/out/text*"}}
    - type: ReadFromTFRecord
      config: {{file_pattern: "{d}/out/tfrecord*"}}
    - type: MapToFields
      name: Decoded
      input: ReadFromTFRecord
      config:
        language: python
        fields: {{line: "record.decode('utf-8')"}}
'''
SOURCES = {'ReadFromJson': 'json', 'ReadFromCsv': 'csv',
           'ReadFromParquet': 'parquet', 'ReadFromAvro': 'avro'}


@pytest.fixture
def written(tmp_path, capsys):
  (tmp_path / 'in.csv').write_text('value,name\n1.0,a\n2.0,b\n4.0,c\n')
  sklearn_linear(tmp_path / 'five.pkl')
  path = tmp_path / 'write.yaml'
  path.write_text(WRITE.format(d=tmp_path))
  assert main(['run', str(path), '--quiet']) == 0
  # Beam's "not as fast as it could be" note on crcmod is about its install
  err = capsys.readouterr().err
  assert 'crc32c' not in err, err
  return tmp_path


def test_every_file_io_writes_through_the_cli(written):
  out = written / 'out'
  rows = [json.loads(x) for f in out.glob('json*')
          for x in f.read_text().splitlines()]
  assert sorted((r['name'], r['inference']) for r in rows) == [
      ('a', 5.0), ('b', 10.0), ('c', 20.0)]
  csv = sorted(x for f in out.glob('csv*') for x in f.read_text().splitlines())
  assert csv == ['a,1.0,5.0', 'b,2.0,10.0', 'c,4.0,20.0', 'name,value,inference']
  text = sorted(x for f in out.glob('text*') for x in f.read_text().splitlines())
  assert text == ['a=5.0', 'b=10.0', 'c=20.0']
  for kind in ('parquet', 'avro', 'tfrecord'):
    assert any(f.stat().st_size > 0 for f in out.glob(kind + '*')), kind


def test_every_file_io_reads_back_through_the_cli(written):
  """Each source's rows, written back as JSON by a second pipeline."""
  transforms = READ.format(d=written)
  for source, name in SOURCES.items():
    transforms += (f'    - type: WriteToJson\n      name: Back{name}\n'
                   f'      input: {source}\n'
                   f'      config: {{path: "{written}/back/{name}"}}\n')
  transforms += ('    - type: WriteToJson\n      name: Backtext\n'
                 '      input: ReadFromText\n'
                 f'      config: {{path: "{written}/back/text"}}\n'
                 '    - type: WriteToJson\n      name: Backtfrecord\n'
                 '      input: Decoded\n'
                 f'      config: {{path: "{written}/back/tfrecord"}}\n')
  path = written / 'read.yaml'
  path.write_text(transforms)
  assert main(['run', str(path), '--quiet']) == 0
  for name in (*SOURCES.values(), 'text', 'tfrecord'):
    rows = [json.loads(x) for f in (written / 'back').glob(name + '*')
            for x in f.read_text().splitlines()]
    if name in ('text', 'tfrecord'):
      assert sorted(r['line'] for r in rows) == ['a=5.0', 'b=10.0', 'c=20.0']
    else:
      assert sorted((r['name'], r['value'], r['inference']) for r in rows) == [
          ('a', 1.0, 5.0), ('b', 2.0, 10.0), ('c', 4.0, 20.0)], name
