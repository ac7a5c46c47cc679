"""RunReport.to_html: the page, rendered by a real headless Chromium, shows
the run's own metrics."""
import html.parser
import os
import pickle
import re
import shutil
import struct
import subprocess
import tempfile
import threading
import time
import zlib

import apache_beam as beam
import pytest
from apache_beam.testing.util import assert_that

from runinference import live_metrics
from runinference.base import RunInference
from runinference.report import ErrorSample, RunReport, TimelinePoint
from tests.helpers import MultiplierHandler, run_pipeline

_NS = 'Test_Multiplier'


class LiveMultiplier(MultiplierHandler):
  """MultiplierHandler that also feeds ``live_metrics`` as each batch runs
  (as the CLI's registry is fed), and takes ~2 ms per batch so the run spans
  several timeline snapshots."""
  def run_inference(self, batch, model, inference_args=None):
    start = time.perf_counter()
    out = super().run_inference(batch, model, inference_args)
    time.sleep(0.002)
    micros = int((time.perf_counter() - start) * 1e6)
    live_metrics.counter_inc(_NS, 'num_inferences', len(out))
    live_metrics.distribution_update(_NS, 'inference_request_batch_size',
                                     len(out))
    live_metrics.distribution_update(
        _NS, 'inference_batch_latency_micro_secs', micros)
    return out


def _run_with_timeline(build):
  """Runs the pipeline in a thread, snapshotting live metrics every 20 ms."""
  live_metrics.reset()
  live_metrics.enable()
  box, points = {}, []
  thread = threading.Thread(target=lambda: box.update(r=run_pipeline(build)))
  start = time.monotonic()
  thread.start()
  try:
    while thread.is_alive():
      points.append(TimelinePoint.from_snapshot(time.monotonic() - start,
                                                live_metrics.snapshot()))
      thread.join(0.02)
    points.append(TimelinePoint.from_snapshot(time.monotonic() - start,
                                              live_metrics.snapshot()))
  finally:
    live_metrics.disable()
    live_metrics.reset()
  assert 'r' in box, 'the pipeline failed'
  return box['r'], points


@pytest.fixture(scope='module')
def run():
  """A real run: a good step, a step with dead letters, a real timeline."""
  fd, dlq_path = tempfile.mkstemp(suffix='.pkl')
  os.close(fd)

  def save(records):
    with open(dlq_path, 'wb') as f:
      pickle.dump(list(records), f)

  def build(p):
    data = p | beam.Create(list(range(600)))
    _ = data | 'Good' >> RunInference(
        LiveMultiplier(min_batch_size=4, max_batch_size=32))
    _, dlq = (data | 'Bad' >> RunInference(
        LiveMultiplier(fail_on={3, 250, 251}, min_batch_size=5,
                       max_batch_size=5)).with_exception_handling())
    assert_that(dlq.failed_inferences, save, label='SaveDeadLetters')

  result, points = _run_with_timeline(build)
  with open(dlq_path, 'rb') as f:
    dead = pickle.load(f)
  os.unlink(dlq_path)
  return result, points, dead


def _metrics(result):
  """(step, name) -> counter value or distribution, read straight from
  the pipeline result, independently of RunReport."""
  found = result.metrics().query()
  out = {}
  for kind in ('counters', 'distributions'):
    for m in found[kind]:
      step = m.key.step.split('/')[0]
      out[(step, m.key.metric.name)] = m.committed
  return out


class _Dom(html.parser.HTMLParser):
  """Elements as (tag, attrs, text inside), from Chromium's --dump-dom."""
  def __init__(self):
    super().__init__()
    self.elements, self._open = [], []

  def handle_starttag(self, tag, attrs):
    element = [tag, dict(attrs), '']
    self.elements.append(element)
    if tag not in ('meta', 'br', 'img', 'input', 'link', 'hr'):  # void
      self._open.append(element)

  def handle_endtag(self, tag):
    while self._open:
      if self._open.pop()[0] == tag:
        break

  def handle_data(self, data):
    for element in self._open:
      element[2] += data

  def find(self, **attrs):
    wanted = {k.replace('_', '-'): v for k, v in attrs.items()}
    return [e for e in self.elements
            if all(e[1].get(k) == v for k, v in wanted.items())]


def _chromium():
  path = shutil.which('chromium') or shutil.which('chromium-browser')
  if path is None:
    pytest.skip('chromium is not installed: `make test` installs Debian\'s '
                'chromium with apt-get, which was unavailable here')
  return path


def _browse(page, tmp_path, *args):
  chromium = _chromium()
  profile = tempfile.mkdtemp(dir=tmp_path)
  cmd = [chromium, '--headless', '--no-sandbox', '--disable-gpu',
         '--disable-quic', '--no-first-run', '--disable-background-networking',
         '--disable-component-update', '--disable-sync', '--hide-scrollbars',
         '--disable-dev-shm-usage',
         f'--user-data-dir={profile}', *args, f'file://{page}']
  done = subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                        cwd=tmp_path)
  assert done.returncode == 0, done.stderr[-2000:]
  return done.stdout


def _num(text):
  return float(text.replace(',', ''))


def _shown(value):
  """A number as the page writes it."""
  if isinstance(value, float):
    return f'{value:.3g}' if value and abs(value) < 10 else f'{value:,.1f}'
  return f'{value:,}'


def test_page_renders_in_chromium_with_the_runs_numbers(run, tmp_path):
  result, points, dead = run
  report = RunReport.from_result(result)
  errors = [ErrorSample.from_dead_letter('Bad', r) for r in dead]
  page = str(tmp_path / 'report.html')
  assert report.write_html(page, timeline=points, errors=errors) == page
  dom = _Dom()
  dom.feed(_browse(page, tmp_path, '--dump-dom'))
  m = _metrics(result)
  bad = 'Bad'

  # The inline script ran and every chart has a real size in the layout.
  body = [e for e in dom.elements if e[0] == 'body'][0]
  laid_out, charts = body[1]['data-rendered'].split('/')
  assert laid_out == charts and int(charts) >= 6
  # No chart text overlaps another or is cut off by its chart (measured by
  # the page's script from Chromium's layout).
  assert body[1]['data-overlaps'] == '0', body[1]
  assert body[1]['data-clipped'] == '0', body[1]

  # Totals: the counters of both steps.
  rows = m[('Good', 'num_inferences')] + m[(bad, 'num_inferences')]
  assert rows == 600 + 597
  assert _num(dom.find(data_metric='total_inferences')[0][2]) == rows
  assert _num(dom.find(data_metric='total_failed')[0][2]) == m[
      (bad, 'failed_inferences')] == 3
  batches = (m[('Good', 'inference_request_batch_size')].count +
             m[(bad, 'inference_request_batch_size')].count)
  assert _num(dom.find(data_metric='total_batches')[0][2]) == batches

  # Per-model bars carry the counters.
  bars = {(e[1]['data-label'].split('/')[0], e[1]['data-series']):
          float(e[1]['data-value']) for e in dom.elements
          if e[0] == 'rect' and 'data-series' in e[1]}
  assert bars[('Good', 'rows')] == m[('Good', 'num_inferences')]
  assert bars[('Bad', 'rows')] == m[(bad, 'num_inferences')]
  assert bars[('Bad', 'failed')] == 3

  # Batch-size and latency ranges: min / mean / max of the distributions.
  sizes = dom.find(data_section='batch')[0][2]
  latency = dom.find(data_section='latency')[0][2]
  for step in ('Good', bad):
    d = m[(step, 'inference_request_batch_size')]
    assert (f'min {_shown(d.min)} · mean {_shown(d.mean)} · '
            f'max {_shown(d.max)} rows') in sizes
    us = m[(step, 'inference_batch_latency_micro_secs')]
    assert (f'min {_shown(us.min / 1000)} · mean {_shown(us.mean / 1000)} · '
            f'max {_shown(us.max / 1000)} ms') in latency

  # Histograms from the timeline: their bars add up to the batches seen in
  # the timeline's intervals.
  hist = [int(e[1]['data-count']) for e in dom.elements
          if e[0] == 'rect' and 'data-count' in e[1]]
  seen = points[-1].batches - points[0].batches
  assert sum(hist) == 2 * seen and seen > 0

  # Throughput: one dot per timeline interval, rows per second between them.
  dots = [float(e[1]['data-value']) for e in dom.elements
          if e[0] == 'circle' and 'data-value' in e[1]]
  expected = [(b.inferences - a.inferences) / (b.seconds - a.seconds)
              for a, b in zip(points, points[1:]) if b.seconds > a.seconds]
  assert len(dots) == len(expected) >= 2
  assert dots == pytest.approx(expected, rel=1e-3, abs=1e-3)
  steps = [(a, b) for a, b in zip(points, points[1:]) if b.seconds > a.seconds]
  assert sum(d * (b.seconds - a.seconds) for d, (a, b) in zip(dots, steps)
             ) == pytest.approx(points[-1].inferences - points[0].inferences,
                                rel=1e-3)

  # Dead letters: the counters and the sample errors themselves.
  dead_rows = {r[1]['data-step'].split('/')[0]: r[2] for r in dom.elements
               if r[0] == 'tr' and 'data-step' in r[1]}
  assert set(dead_rows) == {'Good', 'Bad'}
  failed = [_num(e[2]) for e in dom.elements
            if e[0] == 'td' and e[1].get('data-col') == 'failed_inferences']
  assert sorted(failed) == [0, m[(bad, 'failed_inferences')]]
  batches_failed = [_num(e[2]) for e in dom.elements if e[0] == 'td'
                    and e[1].get('data-col') == 'failed_batches']
  assert max(batches_failed) == m[(bad, 'failed_batches_counter')] > 0
  samples = [e[2] for e in dom.elements
             if e[0] == 'li' and e[1].get('data-step') == 'Bad']
  assert len(samples) == len(dead) == 3
  for record in dead:
    assert any(record[1][1] in s for s in samples)
  assert any("cannot score 250" in s for s in samples)

  # The table repeats RunReport's numbers.
  table = dom.find(data_section='table')[0][2]
  for row in report.rows():
    assert all(v in table for v in row)


def test_screenshot_is_a_drawn_page(run, tmp_path):
  result, points, dead = run
  page = str(tmp_path / 'report.html')
  RunReport.from_result(result).write_html(page, timeline=points)
  shot = tmp_path / 'shot.png'
  _browse(page, tmp_path, '--window-size=1000,2400', f'--screenshot={shot}')
  data = shot.read_bytes()
  assert data[:8] == b'\x89PNG\r\n\x1a\n'
  width, height = struct.unpack('>II', data[16:24])
  assert (width, height) == (1000, 2400)
  chunks, i = [], 8
  while i < len(data):
    n, kind = struct.unpack('>I4s', data[i:i + 8])
    if kind == b'IDAT':
      chunks.append(data[i + 8:i + 8 + n])
    i += 12 + n
  pixels = zlib.decompress(b''.join(chunks))
  # A blank page compresses to a handful of byte values; charts and text
  # give many.
  assert len(set(pixels)) > 100
  if os.environ.get('RUNINFERENCE_KEEP_SCREENSHOT'):
    shutil.copy(shot, os.environ['RUNINFERENCE_KEEP_SCREENSHOT'])
    shutil.copy(page, os.environ['RUNINFERENCE_KEEP_SCREENSHOT'] + '.html')


def test_page_without_timeline_or_errors_says_so(run):
  result, _, _ = run
  page = RunReport.from_result(result).to_html(title='nightly <scoring>')
  assert '<title>nightly &lt;scoring&gt;</title>' in page
  assert 'No timeline was given' in page and 'No sample errors' in page
  assert 'data-metric="model_rows_per_s"' in page
  # Self-contained: nothing to fetch.
  assert not re.search(r'<link|\bsrc=|url\(|@import', page)


def test_bad_timeline_is_a_clear_error(run):
  result, _, _ = run
  report = RunReport.from_result(result)
  with pytest.raises(TypeError, match='timeline takes TimelinePoint'):
    report.to_html(timeline=[(0.0, 10)])
  with pytest.raises(TypeError, match='errors takes ErrorSample'):
    report.to_html(errors=['boom'])
  with pytest.raises(TypeError):
    report.to_html(samples=[])  # unknown option


def test_empty_report_page():
  page = RunReport([]).to_html()
  assert 'No RunInference metrics in this run' in page


def test_error_sample_from_a_dead_letter_record():
  record = (7, (ValueError, "ValueError('no')", ['tb']))
  sample = ErrorSample.from_dead_letter('S', record)
  assert sample == ErrorSample('S', "ValueError('no')", '7')


def test_a_timeline_without_batches_says_so(run):
  result, _, _ = run
  idle = [TimelinePoint(0.0, 0), TimelinePoint(1.0, 0)]
  page = RunReport.from_result(result).to_html(timeline=idle)
  assert page.count("No batch ran between the timeline's snapshots") == 2
  assert 'data-chart="throughput"' in page
