"""The run report as one self-contained HTML page: inline CSS, inline SVG
plots drawn here, a few lines of inline JS; nothing is fetched."""
from __future__ import annotations

import dataclasses
import datetime
import html
from typing import Sequence

from .names import public_step_name

_W = 760  # SVG user units; the page scales it to its width
_LABEL_W = 230


def _e(text) -> str:
  return html.escape(str(text), quote=True)


def _num(value) -> str:
  if isinstance(value, float):
    if value and abs(value) < 10:
      return f'{value:.3g}'  # small latencies keep their digits
    return f'{value:,.1f}'
  return f'{value:,}'


def _step_label(step) -> str:
  label = public_step_name(step.step)
  return f'{label} · {step.model}' if step.model else label


def _fits(text: str, width: float, px: float = 7.0) -> bool:
  """Whether ``text`` at the page's 12px font fits in ``width`` units
  (7 units a character: wider than the font's average)."""
  return len(text) * px <= width


@dataclasses.dataclass(frozen=True)
class _Interval:
  """What happened between two timeline points."""
  start: float
  end: float
  rows: int
  failed: int
  batches: int
  batch_rows: int
  latency_us: int


def _intervals(points) -> list[_Interval]:
  out = []
  for a, b in zip(points, points[1:]):
    # Totals only grow; a drop means the counters were reset: skip it.
    if b.seconds > a.seconds and b.inferences >= a.inferences and (
        b.batches >= a.batches and b.batch_latency_us >= a.batch_latency_us):
      out.append(_Interval(a.seconds, b.seconds, b.inferences - a.inferences,
                           b.failed - a.failed, b.batches - a.batches,
                           b.batch_rows - a.batch_rows,
                           b.batch_latency_us - a.batch_latency_us))
  return out


# --- SVG charts -------------------------------------------------------------


def _svg(height: int, body: str, name: str) -> str:
  return (f'<svg class="chart" data-chart="{name}" viewBox="0 0 {_W} {height}" '
          f'width="100%" role="img" xmlns="http://www.w3.org/2000/svg">'
          f'{body}</svg>')


def _text(x, y, text, cls='', anchor='start') -> str:
  return (f'<text x="{x:.1f}" y="{y:.1f}" class="{cls}" '
          f'text-anchor="{anchor}">{_e(text)}</text>')


def _bars(items, name: str) -> str:
  """Horizontal bars: items are (label, [(value, css class, series)]). The
  label has a line of its own above its bars, and each bar's value says
  what it counts ("3 failed"), so nothing overlaps whatever the names."""
  top = max([v for _, series in items for v, _, _ in series] + [1])
  span = _W - 160
  y, parts = 4, []
  for label, series in items:
    parts.append(_text(0, y + 12, label, 'label'))
    y += 18
    for value, cls, what in series:
      width = span * value / top
      parts.append(
          f'<rect class="{cls}" x="0" y="{y}" width="{width:.1f}" '
          f'height="16" data-series="{_e(what)}" data-label="{_e(label)}" '
          f'data-value="{value}"><title>{_e(what)}: {_num(value)}</title>'
          '</rect>')
      parts.append(_text(width + 6, y + 13, f'{_num(value)} {what}', 'value'))
      y += 19
    y += 10
  return _svg(y, ''.join(parts), name)


def _ranges(items, unit: str, name: str) -> str:
  """min..max lines with the mean marked: items are (label, min, mean, max)."""
  top = max([hi for _, _, _, hi in items] + [1e-9])
  span = _W - _LABEL_W - 20
  y, parts = 8, []
  for label, lo, mean, hi in items:
    xlo, xmean, xhi = (_LABEL_W + span * v / top for v in (lo, mean, hi))
    shown = label
    while not _fits(shown, _LABEL_W - 10) and len(shown) > 4:
      shown = shown[:-2] + '…'
    parts.append(_text(0, y + 12, shown, 'label')[:-7] +
                 f'<title>{_e(label)}</title></text>')
    parts.append(f'<line class="range" x1="{xlo:.1f}" x2="{xhi:.1f}" '
                 f'y1="{y + 8}" y2="{y + 8}"/>')
    parts.append(f'<circle class="mean" cx="{xmean:.1f}" cy="{y + 8}" r="5">'
                 f'<title>mean {_num(mean)} {unit}</title></circle>')
    parts.append(_text(_LABEL_W, y + 30, f'min {_num(lo)} · mean '
                       f'{_num(mean)} · max {_num(hi)} {unit}', 'value'))
    y += 44
  return _svg(y, ''.join(parts), name)


def _histogram(values: Sequence[float], weights: Sequence[float], unit: str,
               name: str) -> str:
  lo, hi = min(values), max(values)
  bins = min(10, len(set(values)))
  width = (hi - lo) / bins if hi > lo else 1.0
  counts = [0] * bins
  for v, w in zip(values, weights):
    counts[min(int((v - lo) / width), bins - 1)] += w
  top, height, base, left = max(counts), 140, 160, 50
  step = (_W - left - 10) / bins
  # Axis labels: each bin's start under its left edge (and the last bin's
  # end), every k-th only when they would not fit side by side.
  ticks = [_num(lo + i * width) for i in range(bins)] + [_num(hi)]
  every = 1
  # (the last is anchored at its end, so it needs room for 1.5 labels)
  while any(not _fits(t, (step * every - 6) / 1.5) for t in ticks) and \
      every < bins:
    every += 1
  parts = []
  for i, count in enumerate(counts):
    h = height * count / top
    x = left + i * step
    start = lo + i * width
    end = start + width if hi > lo else hi
    parts.append(
        f'<rect class="bar" x="{x + 2:.1f}" y="{base - h:.1f}" '
        f'width="{step - 4:.1f}" height="{h:.1f}" data-count="{count}">'
        f'<title>{_num(start)}–{_num(end)} {unit}: {count}</title></rect>')
    if count and _fits(_num(count), step):
      parts.append(_text(x + step / 2, base - h - 4, _num(count), 'value',
                         'middle'))
    if i % every == 0:
      parts.append(_text(x, base + 16, ticks[i], 'axis', 'middle'))
  if bins % every == 0:
    parts.append(_text(left + bins * step, base + 16, ticks[-1], 'axis',
                       'end'))
  parts.append(_text(left, base + 34, f'{unit} (bars: batches)', 'axis'))
  return _svg(base + 40, ''.join(parts), name)


def _line(xs, ys, unit: str, name: str) -> str:
  top = max(ys + [1e-9])
  end = max(xs + [1e-9])
  height, left = 170, 70

  def point(x, y):
    return (left + (_W - left - 20) * x / end, 10 + height * (1 - y / top))

  coords = [point(x, y) for x, y in zip(xs, ys)]
  path = ' '.join(f'{x:.1f},{y:.1f}' for x, y in coords)
  parts = [f'<polyline class="line" points="{path}"/>']
  for (cx, cy), x, y in zip(coords, xs, ys):
    parts.append(f'<circle class="dot" cx="{cx:.1f}" cy="{cy:.1f}" r="3" '
                 f'data-value="{y:.3f}"><title>{x:.2f}s: {y:,.1f} {unit}'
                 '</title></circle>')
  parts.append(_text(left - 6, 16, f'{top:,.0f}', 'axis', 'end'))
  parts.append(_text(left - 6, 14 + height / 2, f'{top / 2:,.0f}', 'axis',
                     'end'))
  parts.append(_text(left - 6, 10 + height, '0', 'axis', 'end'))
  parts.append(_text(_W - 20, height + 30, f'{end:,.1f} s', 'axis', 'end'))
  parts.append(_text(left, height + 30, f'{unit} over seconds since start',
                     'axis'))
  return _svg(height + 40, ''.join(parts), name)


# --- sections ---------------------------------------------------------------


def _section(title: str, made_from: str, body: str, name: str) -> str:
  return (f'<section data-section="{name}"><h2>{_e(title)}</h2>'
          f'<p class="source">Made from: {_e(made_from)}</p>{body}</section>')


def _counts(steps) -> str:
  items = [(_step_label(s), [(s.inferences, 'ok', 'rows'),
                             (s.failed_inferences, 'bad', 'failed')])
           for s in steps]
  return _section(
      'Rows per step and model', 'the num_inferences and failed_inferences '
      'counters of each step (a key cohort row is part of its step row).',
      _bars(items, 'counts'), 'counts')


def _distribution(steps, intervals, kind: str) -> str:
  if kind == 'batch':
    items = [(_step_label(s), s.min_batch_size, s.mean_batch_size,
              s.max_batch_size) for s in steps if s.batches]
    pairs = [(i.batch_rows / i.batches, i.batches) for i in intervals
             if i.batches]
    title, unit, metric = 'Batch sizes', 'rows', 'inference_request_batch_size'
  else:
    items = [(_step_label(s), s.min_batch_latency_ms, s.mean_batch_latency_ms,
              s.max_batch_latency_ms) for s in steps if s.batches]
    pairs = [(i.latency_us / i.batches / 1000, i.batches) for i in intervals
             if i.batches]
    title, unit = 'Inference latency per batch', 'ms'
    metric = 'inference_batch_latency_micro_secs'
  body = (_ranges(items, unit, f'{kind}-range') if items else
          '<p class="empty">No batches ran.</p>')
  source = (f'the {metric} distribution of each step: Beam keeps its count, '
            'sum, min and max (not single values), shown as min–mean–max.')
  if pairs:
    body += ('<h3>Histogram over the run</h3>' + _histogram(
        [v for v, _ in pairs], [w for _, w in pairs], unit, f'{kind}-hist'))
    source += (f' The histogram: the mean per batch in each of the '
               f'{len(intervals)} intervals of the timeline, weighted by the '
               'batches run in it.')
  elif intervals:
    body += ('<p class="empty">No batch ran between the timeline\'s '
             'snapshots, so no histogram.</p>')
  else:
    body += ('<p class="empty">No timeline was given, so no histogram '
             '(see <code>TimelinePoint</code> in docs/report.md).</p>')
  return _section(title, source, body, kind)


def _rates(steps, context) -> str:
  """Rows per wall-clock second (when the run's duration is known) and per
  second of model time, each labelled as what it is."""
  model_ms = sum(s.mean_batch_latency_ms * s.batches for s in steps
                 if not s.cohort)
  rows = sum(s.inferences for s in steps if not s.cohort)
  model = f'{rows / model_ms * 1000:,.0f}' if model_ms else 'n/a'
  text = ''
  wall = getattr(context, 'wall_seconds', None)
  if wall:
    text += (f'Rows per wall-clock second over the whole run: <span '
             f'data-metric="wall_rows_per_s">{rows / wall:,.0f}</span> '
             f'({_num(rows)} rows in {wall:,.1f} s). ')
  return text + (
      'Rows per second of model time (the sum of the batches\' inference '
      f'latency, not the run\'s duration): <span data-metric='
      f'"model_rows_per_s">{model}</span>.')


def _throughput(steps, points, intervals, context) -> str:
  rates = f'<p>{_rates(steps, context)}</p>'
  if not intervals:
    return _section(
        'Throughput over time', 'no timeline was given.',
        f'{rates}<p class="empty">Pass a timeline '
        '(<code>TimelinePoint</code>s) for the curve.'
        '</p>', 'throughput')
  xs = [i.end for i in intervals]
  ys = [i.rows / (i.end - i.start) for i in intervals]
  return _section(
      'Throughput over time', f'{len(points)} timeline snapshots of the '
      'num_inferences counters: rows inferred per second between '
      'consecutive snapshots.', rates + _line(xs, ys, 'rows/s', 'throughput'),
      'throughput')


def _run_facts(context) -> str:
  if context is None:
    return ''
  facts = [('pipeline', context.pipeline), ('runner', context.runner),
           ('status', context.status), ('started', context.started),
           ('wall-clock time', f'{context.wall_seconds:,.1f} s'
            if context.wall_seconds is not None else '')]
  items = ''.join(f'<dt>{_e(k)}</dt><dd data-run="{_e(k)}">{_e(v)}</dd>'
                  for k, v in facts if v)
  return f'<dl class="run">{items}</dl>' if items else ''


def _dead_letters(steps, errors) -> str:
  rows = ''.join(
      f'<tr data-step="{_e(_step_label(s))}"><td>{_e(_step_label(s))}</td>'
      f'<td data-col="failed_inferences">{_num(s.failed_inferences)}</td>'
      f'<td data-col="failed_batches">{_num(s.failed_batches)}</td>'
      f'<td data-col="model_load_failures">{_num(s.model_load_failures)}</td>'
      '</tr>' for s in steps)
  body = ('<table class="dead"><thead><tr><th>step</th><th>dead letters</th>'
          '<th>failed batches</th><th>model load failures</th></tr></thead>'
          f'<tbody>{rows}</tbody></table>')
  if errors:
    body += '<h3>Sample errors</h3><ul class="errors">' + ''.join(
        f'<li data-step="{_e(e.step)}"><b>{_e(e.step)}</b>: '
        f'<code>{_e(e.error)}</code>' +
        (f' <span class="example">on {_e(e.example)}</span>' if e.example
         else '') + '</li>' for e in errors) + '</ul>'
  else:
    body += '<p class="empty">No sample errors were given.</p>'
  return _section(
      'Dead letters', 'the failed_inferences, failed_batches_counter and '
      'model_load_failures counters; sample errors from the dead-letter '
      'records passed to the report.', body, 'dead-letters')


def _table(headers, table_rows) -> str:
  head = ''.join(f'<th>{_e(h)}</th>' for h in headers)
  body = ''.join(
      '<tr>' + ''.join(f'<td data-col="{_e(h)}">{_e(v)}</td>'
                       for h, v in zip(headers, row)) + '</tr>'
      for row in table_rows)
  return _section('All numbers', 'every metric of every RunInference step, '
                  'as RunReport prints them.',
                  f'<table class="all"><thead><tr>{head}</tr></thead>'
                  f'<tbody>{body}</tbody></table>', 'table')


_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:880px;
color:#1d232a;background:#fff}h1{margin:0 0 4px}h2{margin:28px 0 2px;
font-size:18px}h3{font-size:14px;margin:14px 0 4px}.meta,.source{color:#5b6570;
font-size:12px;margin:0 0 8px}.cards{display:flex;gap:12px;margin:16px 0}
.card{flex:1;border:1px solid #d7dde3;border-radius:8px;padding:10px 14px}
.card b{display:block;font-size:22px}section{border-top:1px solid #e4e8ec}
svg text{font-size:12px;fill:#1d232a}svg .axis{fill:#5b6570;font-size:11px}
rect.ok{fill:#2f7fd1}rect.bad{fill:#d1482f}rect.bar{fill:#5a9e6f}
line.range{stroke:#2f7fd1;stroke-width:6;stroke-linecap:round}
circle.mean{fill:#d18a2f}polyline.line{fill:none;stroke:#2f7fd1;
stroke-width:2}circle.dot{fill:#2f7fd1}table{border-collapse:collapse;
width:100%;font-size:12px}th,td{border-bottom:1px solid #e4e8ec;
padding:4px 6px;text-align:right}th:first-child,td:first-child{text-align:left}
.empty{color:#5b6570}.errors code{color:#a3321f}
dl.run{display:grid;grid-template-columns:max-content 1fr;gap:2px 12px;
margin:8px 0;font-size:13px}dl.run dt{color:#5b6570}dl.run dd{margin:0;
word-break:break-all}
"""

# Proves the page laid out in a browser: counts the charts with a real size,
# the pairs of chart texts that overlap and the texts cut off by their chart.
_JS = """
(function(){var c=document.querySelectorAll('svg.chart'),n=0,o=0,cut=0,
names=[];
function hit(a,b){return a.left<b.right-0.5&&b.left<a.right-0.5&&
a.top<b.bottom-0.5&&b.top<a.bottom-0.5;}
for(var i=0;i<c.length;i++){var r=c[i].getBoundingClientRect();
if(r.width>0&&r.height>0)n++;
var t=c[i].querySelectorAll('text'),b=[];
for(var j=0;j<t.length;j++){var x=t[j].getBoundingClientRect();b.push(x);
if(x.left<r.left-0.5||x.right>r.right+0.5||x.top<r.top-0.5||
x.bottom>r.bottom+0.5){cut++;names.push(t[j].textContent);}}
for(var j=0;j<b.length;j++)for(var k=j+1;k<b.length;k++)if(hit(b[j],b[k]))o++;}
document.body.setAttribute('data-rendered',n+'/'+c.length);
document.body.setAttribute('data-overlaps',o);
document.body.setAttribute('data-clipped',cut);
document.body.setAttribute('data-clipped-texts',names.join(' | '));})();
"""


def render(title, steps, table_rows, headers, points, errors,
           context=None) -> str:
  main = [s for s in steps if not s.cohort]
  intervals = _intervals(points)
  total = sum(s.inferences for s in main)
  failed = sum(s.failed_inferences for s in main)
  batches = sum(s.batches for s in main)
  figures = [('rows inferred', 'total_inferences', total),
             ('dead letters', 'total_failed', failed),
             ('batches', 'total_batches', batches),
             ('steps', 'steps', len(main))]
  wall = getattr(context, 'wall_seconds', None)
  if wall:
    figures.insert(1, ('rows/s (wall clock)', 'wall_rate',
                       float(round(total / wall))))
  cards = ''.join(
      f'<div class="card">{_e(label)}<b data-metric="{key}">{_num(value)}</b>'
      '</div>' for label, key, value in figures)
  when = datetime.datetime.now(datetime.timezone.utc).strftime(
      '%Y-%m-%d %H:%M UTC')
  if steps:
    sections = (_counts(steps) + _distribution(steps, intervals, 'batch') +
                _distribution(steps, intervals, 'latency') +
                _throughput(steps, points, intervals, context) +
                _dead_letters(steps, errors) + _table(headers, table_rows))
  else:
    sections = '<p class="empty">No RunInference metrics in this run.</p>'
  return (
      '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
      '<meta name="viewport" content="width=device-width,initial-scale=1">'
      f'<title>{_e(title)}</title><style>{_CSS}</style></head><body>'
      f'<h1>{_e(title)}</h1><p class="meta">Generated {when} by runinference '
      'from the pipeline\'s metrics.</p>'
      f'{_run_facts(context)}<div class="cards">{cards}</div>{sections}'
      f'<script>{_JS}</script></body></html>')
