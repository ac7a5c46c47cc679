"""The report of `runinference run --report`, rendered by headless Chromium:
the run's context, wall-clock throughput, a timeline, histograms and sample
errors from a real YAML run, public step names, and no chart label that
overlaps another or is cut off."""
import html
import re

import pytest

pytest.importorskip('yaml')
pytest.importorskip('sklearn')

from runinference.cli import main  # noqa: E402
from tests.cli.test_report_html import _browse, _Dom, _num  # noqa: E402
from tests.yaml_helpers import sklearn_linear  # noqa: E402

# 300 rows, 4 of them failing; each row sleeps 5 ms in its preprocessing so
# the run spans several timeline snapshots. A long step name tests labels.
PIPELINE = '''\
pipeline:
  transforms:
    - type: Create
      config:
        elements: {elements}
    - type: RunInference
      name: ScoreEveryRowWithTheFiveTimesTableModelAndAVeryLongName
      input: Create
      config:
        model_handler:
          type: SklearnModelHandlerNumpy
          config:
            model_uri: "{model}"
            preprocess:
              callable: |
                def prep(row):
                  import time
                  time.sleep(0.005)
                  return [1 / row.value]
            postprocess: {{expression: 'float(inference)'}}
        error_handling: {{output: failed}}
    - type: MapToFields
      input: ScoreEveryRowWithTheFiveTimesTableModelAndAVeryLongName
      config:
        language: python
        fields: {{line: "str(inference)"}}
    - type: WriteToText
      input: MapToFields
      config: {{path: "{out}/good"}}
    - type: MapToFields
      name: FailedLines
      input: ScoreEveryRowWithTheFiveTimesTableModelAndAVeryLongName.failed
      config:
        language: python
        fields: {{line: "msg"}}
    - type: WriteToText
      name: WriteFailed
      input: FailedLines
      config: {{path: "{out}/failed"}}
'''
STEP = 'ScoreEveryRowWithTheFiveTimesTableModelAndAVeryLongName'


@pytest.fixture(scope='module')
def report(tmp_path_factory):
  d = tmp_path_factory.mktemp('cli_report')
  values = [float(i % 50) for i in range(300)]  # 0.0 six times: ZeroDivision
  elements = '[' + ', '.join(f'{{value: {v}}}' for v in values) + ']'
  path = d / 'score.yaml'
  path.write_text(PIPELINE.format(elements=elements,
                                  model=sklearn_linear(d / 'five.pkl'),
                                  out=d / 'out'))
  page = d / 'report.html'
  assert main(['run', str(path), '--quiet', '--report', str(page)]) == 0
  return path, page, values


def test_cli_report_in_chromium(report, tmp_path):
  path, page, values = report
  failing = values.count(0.0)
  dom = _Dom()
  dom.feed(_browse(str(page), tmp_path, '--window-size=1000,3000',
                   '--dump-dom'))
  body = [e for e in dom.elements if e[0] == 'body'][0][1]
  laid_out, charts = body['data-rendered'].split('/')
  assert laid_out == charts and int(charts) >= 6
  assert body['data-overlaps'] == '0' and body['data-clipped'] == '0', body

  # Run context.
  run = {e[1]['data-run']: e[2] for e in dom.elements if 'data-run' in e[1]}
  assert run['pipeline'] == str(path)
  assert run['runner'].startswith('DirectRunner')
  assert run['status'] == 'DONE'
  wall = float(run['wall-clock time'].split()[0])
  assert wall > 0

  # Totals and wall-clock throughput from the run's own numbers.
  good = len(values) - failing
  assert _num(dom.find(data_metric='total_inferences')[0][2]) == good
  assert _num(dom.find(data_metric='total_failed')[0][2]) == failing
  shown_rate = _num(dom.find(data_metric='wall_rows_per_s')[0][2])
  assert shown_rate == pytest.approx(good / wall, rel=0.06, abs=1)
  assert _num(dom.find(data_metric='wall_rate')[0][2]) == pytest.approx(
      good / wall, rel=0.06, abs=1)

  # A timeline: a throughput curve, and histograms over its intervals.
  dots = [e for e in dom.elements if e[0] == 'circle' and 'data-value' in e[1]]
  assert len(dots) >= 2
  hist = [int(e[1]['data-count']) for e in dom.elements
          if e[0] == 'rect' and 'data-count' in e[1]]
  assert sum(hist) > 0

  # Sample errors: the dead letters themselves, under the public step name.
  samples = [e[2] for e in dom.elements if e[0] == 'li' and
             e[1].get('data-step') == STEP]
  assert len(samples) == failing
  assert all('division by zero' in s for s in samples)

  # Public step names only; the failure bar says what it counts.
  text = html.unescape(page.read_text())
  assert 'ParDo(' not in text and 'BeamML_RunInference' not in text
  assert f'{STEP}/RunInference' not in text
  bars = {e[1]['data-series']: float(e[1]['data-value'])
          for e in dom.elements if e[0] == 'rect' and 'data-series' in e[1]}
  assert bars == {'rows': good, 'failed': failing}
  assert re.search(rf'>{failing} failed<', page.read_text())


def test_failed_run_still_writes_a_report_with_its_status(tmp_path):
  path = tmp_path / 'bad.yaml'
  path.write_text(PIPELINE.format(
      elements='[{value: 1.0}]', model=tmp_path / 'missing.pkl',
      out=tmp_path / 'out').replace("        error_handling: {output: failed}\n",
                                    '').replace(
      '    - type: MapToFields\n      name: FailedLines', '    - type: X\n'
      '      name: FailedLines').split('    - type: X')[0])
  page = tmp_path / 'r.html'
  assert main(['run', str(path), '--quiet', '--report', str(page)]) == 1
  text = page.read_text()
  assert 'data-run="status">FAILED' in text and str(path) in text
