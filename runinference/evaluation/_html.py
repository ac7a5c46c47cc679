"""The evaluation page: one self-contained HTML file (no scripts, no
external resources) with the validation result, per-slice metric tables
(candidate and baseline side by side), confusion matrices, and ROC, PR and
calibration plots as inline SVG."""
from __future__ import annotations

import html
import math
import os
from typing import Optional, Sequence

from ._thresholds import SliceMetrics, ValidationResult

COLORS = ('#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e')
_CSS = """
body{font-family:system-ui,sans-serif;margin:24px;color:#222}
h1{font-size:22px}h2{font-size:18px;margin-top:28px}h3{font-size:15px}
table{border-collapse:collapse;margin:8px 0}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:right;font-size:13px}
th{background:#f3f3f3}td.l,th.l{text-align:left}
.ok{background:#e3f6e3;border:1px solid #5a5;padding:8px 12px}
.bad{background:#fbe3e3;border:1px solid #c55;padding:8px 12px}
.worse{color:#b00}.better{color:#070}
.wide{overflow-x:auto}small{color:#555}
.plots{display:flex;flex-wrap:wrap;gap:16px}
figure{margin:0}figcaption{font-size:13px;text-align:center}
"""


def _fmt(v, metric: str = '') -> str:
  if v is None:
    return '–'
  if metric.endswith('count') and isinstance(v, (int, float)):
    return f'{v:,.6g}' if not float(v).is_integer() else f'{int(v):,}'
  if isinstance(v, float):
    if math.isnan(v):
      return 'NaN'
    return f'{v:.4f}' if abs(v) < 1e6 else f'{v:.4g}'
  return html.escape(str(v))


def _banner(v: Optional[ValidationResult]) -> str:
  if v is None:
    return ''
  if v.blessed:
    return (f'<p class="ok" id="validation"><b>BLESSED</b>: {v.checked} '
            'threshold check(s) passed.</p>')
  items = ''.join(f'<li>{html.escape(str(f))}</li>' for f in v.failures)
  return (f'<div class="bad" id="validation"><b>NOT BLESSED</b>: '
          f'{len(v.failures)} of {v.checked} threshold check(s) failed.'
          f'<ul>{items}</ul></div>')


def _cell(metric, by_model, models, candidate, baseline) -> str:
  lines = []
  for i, m in enumerate(models):
    r = by_model.get(m)
    v = None if r is None else r.metrics.get(metric)
    ci = None if r is None else r.intervals.get(metric)
    tip = (f' title="95% CI {ci["lower"]:.4f} – {ci["upper"]:.4f}"'
           if ci else '')
    shown = _fmt(v, metric)
    if i == 0:
      lines.append(f'<span class="v" data-model="{html.escape(m)}"{tip}>'
                   f'{shown}</span>')
    else:
      lines.append(f'<small data-model="{html.escape(m)}"{tip}>'
                   f'{html.escape(m)} {shown}</small>')
  if baseline:
    c, b = by_model.get(candidate), by_model.get(baseline)
    cv = None if c is None else c.metrics.get(metric)
    bv = None if b is None else b.metrics.get(metric)
    if isinstance(cv, (int, float)) and isinstance(bv, (int, float)):
      lines.append(f'<small class="delta">Δ {cv - bv:+.4f}</small>')
  return f'<td>{"<br>".join(lines)}</td>'


def _tables(records, models, candidate, baseline) -> str:
  scalars = []
  for r in records:
    for k, v in r.metrics.items():
      if isinstance(v, (int, float)) and k not in scalars:
        scalars.append(k)
  specs: dict = {}
  for r in records:
    specs.setdefault(tuple(n for n, _ in r.slice), {}).setdefault(
        r.slice, {})[r.model] = r
  out = []
  for spec, slices in specs.items():
    title = ' × '.join(spec) or 'Overall'
    head = ''.join(f'<th>{html.escape(m)}</th>' for m in scalars)
    rows = []
    for _, by_model in sorted(slices.items(), key=lambda kv: str(kv[0])):
      name = next(iter(by_model.values())).slice_name
      cells = ''.join(_cell(metric, by_model, models, candidate, baseline)
                      for metric in scalars)
      rows.append(f'<tr><td class="l">{html.escape(name)}</td>{cells}</tr>')
    out.append(
        f'<h3>{html.escape(title)}</h3><div class="wide"><table class="slices">'
        f'<tr><th class="l">slice</th>{head}</tr>{"".join(rows)}</table></div>')
  return ''.join(out)


def _confusion(r: SliceMetrics) -> str:
  m = r.metrics.get('confusion_matrix')
  if not m:
    return ''
  top = max(max(row) for row in m) or 1
  head = ''.join(f'<th>pred {j}</th>' for j in range(len(m)))
  rows = []
  for i, row in enumerate(m):
    cells = ''.join(
        f'<td style="background:rgba(31,119,180,{0.1 + 0.8 * v / top:.2f})">'
        f'{v:g}</td>' for v in row)
    rows.append(f'<tr><th>true {i}</th>{cells}</tr>')
  return (f'<figure><table class="confusion" data-model="'
          f'{html.escape(r.model)}"><tr><th></th>{head}</tr>{"".join(rows)}'
          f'</table><figcaption>{html.escape(r.model)}</figcaption></figure>')


def _svg(title: str, xlabel: str, ylabel: str, series: list,
         diagonal: bool = False, legend_low: bool = False) -> str:
  """A 260×260 line plot on [0, 1]²; ``series``: (name, xs, ys)."""
  size, pad = 260, 36
  span = size - 2 * pad

  def pt(x, y):
    return f'{pad + span * x:.1f},{size - pad - span * y:.1f}'
  parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{size}" '
           f'height="{size}" role="img" aria-label="{html.escape(title)}">',
           f'<rect x="{pad}" y="{pad}" width="{span}" height="{span}" '
           'fill="none" stroke="#999"/>']
  for t in (0, 0.5, 1):
    parts.append(f'<text x="{pad + span * t:.0f}" y="{size - pad + 14}" '
                 f'font-size="10" text-anchor="middle">{t:g}</text>')
    parts.append(f'<text x="{pad - 4}" y="{size - pad - span * t + 3:.0f}" '
                 f'font-size="10" text-anchor="end">{t:g}</text>')
  parts.append(f'<text x="{size / 2}" y="{size - 6}" font-size="11" '
               f'text-anchor="middle">{html.escape(xlabel)}</text>')
  parts.append(f'<text x="10" y="{size / 2}" font-size="11" '
               f'text-anchor="middle" transform="rotate(-90 10 {size / 2})">'
               f'{html.escape(ylabel)}</text>')
  if diagonal:
    parts.append(f'<line x1="{pad}" y1="{size - pad}" x2="{size - pad}" '
                 f'y2="{pad}" stroke="#bbb" stroke-dasharray="4 3"/>')
  for i, (name, xs, ys) in enumerate(series):
    color = COLORS[i % len(COLORS)]
    pts = ' '.join(pt(min(max(x, 0), 1), min(max(y, 0), 1))
                   for x, y in zip(xs, ys))
    parts.append(f'<polyline class="series" data-series="{html.escape(name)}"'
                 f' points="{pts}" fill="none" stroke="{color}" '
                 'stroke-width="2"/>')
    y = (size - pad - 8 - 13 * (len(series) - 1 - i) if legend_low
         else pad + 14 + 13 * i)
    parts.append(f'<text x="{pad + 6}" y="{y}" '
                 f'font-size="11" fill="{color}">{html.escape(name)}</text>')
  parts.append('</svg>')
  return (f'<figure class="plot">{"".join(parts)}<figcaption>'
          f'{html.escape(title)}</figcaption></figure>')


def _plots(by_model: dict) -> str:
  out = []
  roc = [(m, r.metrics['roc_curve']['fpr'], r.metrics['roc_curve']['tpr'])
         for m, r in by_model.items() if r.metrics.get('roc_curve')]
  if roc:
    out.append(_svg('ROC curve', 'false positive rate', 'true positive rate',
                    roc, diagonal=True))
  pr = [(m, r.metrics['pr_curve']['recall'], r.metrics['pr_curve']['precision'])
        for m, r in by_model.items() if r.metrics.get('pr_curve')]
  if pr:
    out.append(_svg('Precision-recall curve', 'recall', 'precision', pr,
                    legend_low=True))
  cal = [(m, r.metrics['calibration_curve']['mean_predicted'],
          r.metrics['calibration_curve']['fraction_positive'])
         for m, r in by_model.items() if r.metrics.get('calibration_curve')]
  if cal:
    out.append(_svg('Calibration (reliability)', 'mean predicted',
                    'fraction positive', cal, diagonal=True))
  return ''.join(out)


def render_html(records: Sequence[SliceMetrics],
                validation: Optional[ValidationResult],
                title: str = 'Model evaluation') -> str:
  records = sorted(records, key=lambda r: (len(r.slice), str(r.slice)))
  models = list(dict.fromkeys(r.model for r in records))
  candidate = (validation.candidate if validation is not None and
               validation.candidate else (models[0] if models else None))
  baseline = validation.baseline if validation is not None else None
  models = ([m for m in (candidate, baseline) if m in models] +
            [m for m in models if m not in (candidate, baseline)])
  overall = {r.model: r for r in records if r.slice == ()}
  overall = {m: overall[m] for m in models if m in overall}
  body = [f'<h1>{html.escape(title)}</h1>', _banner(validation),
          '<p>Models: ' + ', '.join(
              html.escape(m) + (' (candidate)' if m == candidate else '') +
              (' (baseline)' if m == baseline else '') for m in models) +
          '</p>', '<h2>Metrics per slice</h2>',
          _tables(records, models, candidate, baseline)]
  confusion = ''.join(_confusion(r) for r in overall.values())
  if confusion:
    body.append('<h2>Confusion matrix (overall)</h2>'
                f'<div class="plots">{confusion}</div>')
  plots = _plots(overall)
  if plots:
    body.append(f'<h2>Curves (overall)</h2><div class="plots">{plots}</div>')
  return ('<!DOCTYPE html><html><head><meta charset="utf-8">'
          f'<title>{html.escape(title)}</title><style>{_CSS}</style></head>'
          f'<body>{"".join(body)}</body></html>')


def write_html(records, validation, path: str,
               title: str = 'Model evaluation') -> str:
  tmp = f'{path}.tmp'
  with open(tmp, 'w', encoding='utf-8') as f:
    f.write(render_html(records, validation, title))
  os.replace(tmp, path)
  return path
