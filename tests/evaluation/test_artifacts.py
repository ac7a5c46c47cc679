"""Evaluation artifacts: JSON, DuckDB tables, and the HTML page checked in
headless Chromium (validation banner, per-slice tables with candidate and
baseline side by side, confusion matrix, ROC/PR/calibration plots)."""
import html.parser
import json
import os
import shutil
import subprocess
import tempfile

import numpy as np
import pytest

from runinference.evaluation import (Block, ChangeThreshold, SliceSpec,
                                     ValueThreshold, evaluate_blocks,
                                     write_duckdb, write_html, write_json)
from runinference.evaluation._registry import resolve_metrics
from runinference.evaluation._thresholds import validate


@pytest.fixture(scope='module')
def evaluation():
  rng = np.random.default_rng(0)
  n = 2000
  y = rng.integers(0, 2, n)
  good = np.clip(0.4 * y + 0.6 * rng.random(n), 0, 1)
  bad = rng.random(n)
  feats = {'country': rng.choice(['de', '<fr>'], n)}
  blocks = {'cand': [Block(y, good, np.ones(n), feats)],
            'base': [Block(y, bad, np.ones(n), feats)]}
  records = evaluate_blocks(
      blocks, resolve_metrics('binary'),
      [SliceSpec(), SliceSpec(('country',))], bootstrap=10, seed=1)
  v = validate(records, [ValueThreshold('accuracy', lower=0.99),
                         ChangeThreshold('roc_auc')], 'cand', 'base')
  return records, v


def test_json_round_trip(evaluation, tmp_path):
  records, v = evaluation
  path = write_json(records, v, str(tmp_path / 'e.json'))
  with open(path) as f:
    doc = json.load(f)
  assert doc['validation']['blessed'] is False
  assert [f['metric'] for f in doc['validation']['failures']] == ['accuracy']
  overall = [m for m in doc['metrics'] if m['model'] == 'cand' and
             not m['slice']][0]
  rec = [r for r in records if r.model == 'cand' and r.slice == ()][0]
  assert overall['metrics']['roc_auc'] == rec.metrics['roc_auc']
  assert overall['intervals']['accuracy']['lower'] <= rec.metrics['accuracy']
  assert len(doc['metrics']) == 2 * 3


def test_duckdb_tables(evaluation, tmp_path):
  duckdb = pytest.importorskip('duckdb')
  records, v = evaluation
  path = write_duckdb(records, v, str(tmp_path / 'e.duckdb'))
  con = duckdb.connect(path, read_only=True)
  (auc,) = con.execute(
      "SELECT value FROM metrics WHERE model='cand' AND slice='Overall' AND "
      "metric='roc_auc'").fetchone()
  assert auc == pytest.approx(
      [r for r in records if r.model == 'cand' and r.slice == ()][0]
      .metrics['roc_auc'])
  assert con.execute('SELECT blessed FROM validation').fetchone() == (False,)
  assert con.execute("SELECT count(*) FROM plots WHERE metric='roc_curve'"
                     ).fetchone()[0] == 6


class _Dom(html.parser.HTMLParser):
  def __init__(self):
    super().__init__()
    self.elements, self._stack = [], []

  def handle_starttag(self, tag, attrs):
    self.elements.append([tag, dict(attrs), ''])
    self._stack.append(self.elements[-1])

  def handle_endtag(self, tag):
    while self._stack and self._stack.pop()[0] != tag:
      pass

  def handle_data(self, data):
    for e in self._stack:
      e[2] += data


def _chromium():
  path = shutil.which('chromium') or shutil.which('chromium-browser')
  if path is None:
    pytest.skip('chromium is not installed')
  return path


def _browse(page, tmp_path, *args):
  profile = tempfile.mkdtemp(dir=tmp_path)
  cmd = [_chromium(), '--headless', '--no-sandbox', '--disable-gpu',
         '--no-first-run', '--disable-background-networking',
         '--disable-component-update', '--disable-sync', '--hide-scrollbars',
         '--disable-dev-shm-usage', f'--user-data-dir={profile}', *args,
         f'file://{page}']
  done = subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                        cwd=tmp_path)
  assert done.returncode == 0, done.stderr[-2000:]
  return done.stdout


def test_html_page_in_chromium(evaluation, tmp_path):
  records, v = evaluation
  page = write_html(records, v, str(tmp_path / 'e.html'))
  text = open(page).read()
  assert '<script' not in text and 'src=' not in text  # self-contained
  dom = _Dom()
  dom.feed(_browse(page, tmp_path, '--dump-dom'))
  banner = [e for e in dom.elements if e[1].get('id') == 'validation'][0]
  assert 'NOT BLESSED' in banner[2] and 'accuracy >= 0.99' in banner[2]
  # Per-slice tables: each cell holds candidate, baseline and the change.
  tables = [e for e in dom.elements if e[1].get('class') == 'slices']
  assert len(tables) == 2
  assert '&lt;fr&gt;' not in tables[1][2] and 'country=<fr>' in tables[1][2]
  cand = [r for r in records if r.model == 'cand' and r.slice == ()][0]
  base = [r for r in records if r.model == 'base' and r.slice == ()][0]
  shown = [e[2] for e in dom.elements if e[1].get('data-model') == 'cand'
           and e[0] == 'span']
  assert f"{cand.metrics['roc_auc']:.4f}" in shown
  assert f"base {base.metrics['roc_auc']:.4f}" in tables[0][2]
  delta = cand.metrics['roc_auc'] - base.metrics['roc_auc']
  assert f'Δ {delta:+.4f}' in tables[0][2]
  assert 'cand (candidate)' in dom.elements[0][2]
  # A confusion matrix per model, with the counts.
  conf = [e for e in dom.elements if e[1].get('class') == 'confusion']
  assert {e[1]['data-model'] for e in conf} == {'cand', 'base'}
  m = cand.metrics['confusion_matrix']
  assert f'{m[1][1]:g}' in [e for e in conf if e[1]['data-model'] ==
                            'cand'][0][2]
  # ROC, PR and calibration plots, each with both models drawn.
  svgs = [e for e in dom.elements if e[0] == 'svg']
  assert [s[1]['aria-label'] for s in svgs] == [
      'ROC curve', 'Precision-recall curve', 'Calibration (reliability)']
  lines = [e[1]['data-series'] for e in dom.elements if e[0] == 'polyline']
  assert lines.count('cand') == 3 and lines.count('base') == 3
  shot = str(tmp_path / 'e.png')
  _browse(page, tmp_path, f'--screenshot={shot}', '--window-size=1200,1600')
  assert os.path.getsize(shot) > 10_000
