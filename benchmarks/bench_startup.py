"""Start-up of the ``runinference`` command (issue 19): ``runinference --help``
and a trivial pipeline, Create -> RunInference -> WriteToText, each in a fresh
process, alternating in every round with Beam's own YAML runner
(``python -m apache_beam.yaml.main``) on the same file.

Two pipelines (shapes): ``sklearn`` (a pickled LinearRegression, the issue's
trivial run) and ``torch`` (a ``torch.nn.Linear`` state dict: a framework whose
import alone takes seconds). For each run: the wall-clock seconds of the whole
command, its peak RSS (``wait4``), and for ours the seconds from the process's
start to the pipeline's start (``--log-level debug`` prints them).

    python benchmarks/bench_startup.py                 # 3 rounds -> /tmp
    python benchmarks/bench_startup.py --repeat 5 --update

Goals checked (median over rounds): ``--help`` under 1 s; each pipeline starts
under 5 s after the process starts.
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

PIPELINE = '''\
pipeline:
  transforms:
    - type: Create
      config:
        elements: [{{value: 1.0}}, {{value: 2.0}}, {{value: 3.0}}]
    - type: RunInference
      input: Create
      config:
        model_handler:
          type: {handler}
          config:
{config}
            preprocess: {{expression: '[value]'}}
            postprocess: {{expression: '{post}'}}
    - type: MapToFields
      input: RunInference
      config:
        language: python
        fields:
          line: {{expression: 'str(inference)'}}
    - type: WriteToText
      input: MapToFields
      config:
        path: "{out}"
providers:
  - type: python
    config: {{}}
    transforms:
      RunInference: runinference.yaml.RunInference
'''
STARTS = re.compile(r'pipeline starts ([\d.]+)s after the process started')
GOALS = {'help_s': 1.0, 'start_s': 5.0}


def write_pipelines(root: Path) -> dict[str, Path]:
  """The two pipeline files (and their models) under ``root``."""
  import pickle

  import numpy as np
  from sklearn.linear_model import LinearRegression
  x = np.arange(10.0).reshape(-1, 1)
  with open(root / 'five.pkl', 'wb') as f:
    pickle.dump(LinearRegression().fit(x, 5 * x[:, 0]), f)
  import torch
  layer = torch.nn.Linear(1, 1)
  with torch.no_grad():
    layer.weight.fill_(5.0)
    layer.bias.zero_()
  torch.save(layer.state_dict(), root / 'five.pt')
  configs = {
      'sklearn': ('SklearnModelHandlerNumpy',
                  f'            model_uri: "{root / "five.pkl"}"',
                  'float(inference)'),
      'torch': ('PytorchModelHandlerTensor',
                f'            state_dict_path: "{root / "five.pt"}"\n'
                '            model_class: torch.nn.Linear\n'
                '            model_params: {in_features: 1, out_features: 1}\n'
                '            device: CPU',
                'float(inference[0])'),
  }
  files = {}
  for shape, (handler, config, post) in configs.items():
    files[shape] = root / f'{shape}.yaml'
    files[shape].write_text(PIPELINE.format(
        handler=handler, config=config, post=post,
        out=root / f'out_{shape}' / 'part'))
  return files


def timed(cmd: list[str], cwd: Path) -> dict:
  """Runs ``cmd``; its wall seconds, peak RSS (MB) and stderr."""
  with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=out, stderr=err, cwd=cwd)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    err.seek(0)
    stderr = err.read().decode(errors='replace')
  res = {'seconds': seconds, 'peak_rss_mb': usage.ru_maxrss / 1024}
  if proc.returncode != 0:
    res['error'] = f'exit {proc.returncode}: ' + stderr.strip()[-1500:]
  else:
    res['stderr'] = stderr
  return res


def one_round(files: dict[str, Path], root: Path) -> dict:
  cli = Path(sys.executable).with_name('runinference')
  ours = [str(cli)] if cli.exists() else [sys.executable, '-m', 'runinference.cli']
  out = {'help': timed([*ours, '--help'], root)}
  out['help'].pop('stderr', None)
  for shape, path in files.items():
    run = timed([*ours, 'run', str(path), '--log-level', 'debug'], root)
    found = STARTS.search(run.pop('stderr', ''))
    if 'error' not in run:
      if found:
        run['start_s'] = float(found.group(1))
      else:
        run['error'] = 'no "pipeline starts" line on stderr'
    out[f'ours_{shape}'] = run
    beam = timed([sys.executable, '-m', 'apache_beam.yaml.main',
                  f'--yaml_pipeline_file={path}'], root)
    beam.pop('stderr', None)
    out[f'beam_{shape}'] = beam
  return out


def _median(runs: list[dict], key: str):
  vals = [r[key] for r in runs if 'error' not in r and key in r]
  return statistics.median(vals) if vals else None


def main() -> int:
  from benchmarks._harness import add_out_args, out_path, provenance
  import json
  ap = argparse.ArgumentParser()
  ap.add_argument('--repeat', type=int, default=3)
  add_out_args(ap, 'bench_startup.json')
  args = ap.parse_args()
  rounds = []
  with tempfile.TemporaryDirectory() as tmp:
    root = Path(tmp)
    files = write_pipelines(root)
    for r in range(args.repeat):
      rounds.append(one_round(files, root))
      print(f'round {r + 1}: ' + ', '.join(
          f'{k} {"ERROR" if "error" in v else format(v["seconds"], ".2f") + "s"}'
          for k, v in rounds[-1].items()), flush=True)
  runs = {k: [rd[k] for rd in rounds] for k in rounds[0]}
  summary = {'help_s': _median(runs['help'], 'seconds')}
  met = {'help_s': summary['help_s'] is not None and summary['help_s'] < GOALS['help_s']}
  for shape in files:
    ours, beam = runs[f'ours_{shape}'], runs[f'beam_{shape}']
    summary[shape] = {
        'start_s': _median(ours, 'start_s'),
        'ours_total_s': _median(ours, 'seconds'),
        'beam_main_total_s': _median(beam, 'seconds'),
        'ours_peak_rss_mb': _median(ours, 'peak_rss_mb'),
        'beam_main_peak_rss_mb': _median(beam, 'peak_rss_mb'),
    }
    start = summary[shape]['start_s']
    met[f'{shape}: start_s'] = start is not None and start < GOALS['start_s']
  for run in (r for rs in runs.values() for r in rs if 'error' in r):
    print('ERROR', run['error'], file=sys.stderr)
  print(json.dumps(summary, indent=1))
  print('goals (median over rounds): ' + ', '.join(
      f'{k} {"met" if v else "NOT met"}' for k, v in met.items()))
  report = {**provenance(), 'load_avg': os.getloadavg(), 'repeat': args.repeat,
            'goals': GOALS, 'met': met, 'summary': summary, 'runs': runs}
  path = out_path(args, 'bench_startup.json')
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps(report, indent=1) + '\n')
  print(f'written to {path}')
  errors = any('error' in r for rs in runs.values() for r in rs)
  return 1 if errors or not all(met.values()) else 0


if __name__ == '__main__':
  sys.exit(main())
