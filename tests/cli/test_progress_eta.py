"""Progress with the share done and an ETA when the source's size is known
(issue 19 item 6): a one-source pipeline reading a Create's elements or
local Parquet files; nothing claimed for any other source."""
import pytest

pytest.importorskip('yaml')
pytest.importorskip('sklearn')

from runinference.cli import main  # noqa: E402
from runinference.cli.progress import Counts, describe, source_rows  # noqa: E402
from tests.yaml_helpers import sklearn_linear  # noqa: E402


def _spec(*transforms, **pipeline):
  return {'pipeline': {'transforms': list(transforms), **pipeline}}


def test_source_rows_of_a_create_and_of_parquet_files(tmp_path):
  pq = pytest.importorskip('pyarrow.parquet')
  import pyarrow as pa
  for i, n in enumerate((3, 4)):
    pq.write_table(pa.table({'x': list(range(n))}), tmp_path / f'p{i}.parquet')
  create = {'type': 'Create', 'config': {'elements': [1, 2, 3],
                                         '__line__': 3}, '__line__': 2}
  step = {'type': 'RunInference', 'input': 'Create', 'config': {}}
  assert source_rows(_spec(create, step)) == 3
  assert source_rows({'pipeline': [create, step]}) == 3  # a bare list
  parquet = {'type': 'ReadFromParquet',
             'config': {'path': str(tmp_path / 'p*.parquet')}}
  assert source_rows(_spec(parquet, step)) == 7
  assert source_rows(_spec(step, parquet, type='chain')) is None  # chain: first


@pytest.mark.parametrize('spec', [
    _spec({'type': 'ReadFromCsv', 'config': {'path': 'x.csv'}}),
    _spec({'type': 'Create', 'config': {'elements': [1]}},
          {'type': 'Create', 'name': 'B', 'config': {'elements': [2]}}),
    _spec({'type': 'ReadFromParquet', 'config': {'path': '/nonexistent/*'}}),
    _spec({'type': 'Create', 'config': {'elements': '{{ not a list }}'}}),
    {'pipeline': None},
])
def test_no_size_claimed_for_other_sources(spec):
  assert source_rows(spec) is None


def test_line_shows_share_done_and_eta():
  steps = {'A': {'in': 250, 'out': 250}, 'B': {'in': 100, 'out': 90}}
  c = Counts(350, 340, 0, 10.0, steps=steps, expected=1000)
  assert c.source_rows_done == 250 and c.eta_s == pytest.approx(30.0)
  assert '· 25% of 1,000 source rows · ETA 30s |' in describe(c)
  one = Counts(1000, 1000, 0, 4.0, expected=1000)  # done: no ETA
  assert describe(one).endswith('100% of 1,000 source rows')
  slow = Counts(1, 1, 0, 10.0, expected=1000)
  assert describe(slow).endswith('0% of 1,000 source rows · ETA 2h46m')
  unknown = Counts(5, 5, 0, 1.0)
  assert 'source rows' not in describe(unknown) and unknown.eta_s is None


def test_run_prints_the_share_of_a_known_source(tmp_path, capsys):
  model = sklearn_linear(tmp_path / 'five.pkl')
  path = tmp_path / 'p.yaml'
  path.write_text(f'''\
pipeline:
  transforms:
    - type: Create
      config:
        elements: [{{value: 1.0}}, {{value: 2.0}}, {{value: 4.0}}]
    - type: RunInference
      input: Create
      config:
        model_handler:
          type: SklearnModelHandlerNumpy
          config:
            model_uri: "{model}"
            preprocess: {{expression: '[value]'}}
''')
  assert main(['run', str(path), '--log-level', 'warning']) == 0
  err = capsys.readouterr().err
  assert '3 rows in' in err and '100% of 3 source rows' in err, err
