"""The ``runinference`` command.

    runinference run PIPELINE.yaml [--quiet] [--metrics-port N]
                     [--report out.html] [beam pipeline options...]
    runinference inspect MODEL_PATH [--json]
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Optional, Sequence


def _parser() -> argparse.ArgumentParser:
  ap = argparse.ArgumentParser(
      prog='runinference', allow_abbrev=False,
      description='Run Beam YAML inference pipelines; inspect model files.')
  sub = ap.add_subparsers(dest='command', required=True)
  run = sub.add_parser(
      'run', help='run a Beam YAML pipeline file', allow_abbrev=False,
      description='Runs a Beam YAML pipeline. Options not listed here are '
      'Beam pipeline options (e.g. --runner=FlinkRunner) and pass through; '
      'without --runner it runs in this process on the DirectRunner\'s '
      'local runner.')
  run.add_argument('pipeline', help='the pipeline file (.yaml)')
  run.add_argument('--quiet', action='store_true',
                   help='no progress display and no summary')
  run.add_argument('--metrics-port', type=int, default=None, metavar='PORT',
                   help='serve live metrics in Prometheus text format on '
                   '127.0.0.1:PORT/metrics while the pipeline runs (0: any '
                   'free port)')
  run.add_argument('--metrics-host', default='127.0.0.1',
                   help='address to serve metrics on (default 127.0.0.1)')
  run.add_argument('--report', metavar='PATH', default=None,
                   help='write an HTML run report to PATH at the end')
  run.add_argument('--jinja_variables', '--jinja-variables', default=None,
                   metavar='JSON', help='variables for the file\'s Jinja '
                   'placeholders, as a JSON object (as Beam\'s yaml main)')
  run.add_argument('--timeout', type=float, default=None, metavar='SECONDS',
                   help='give up (exit status 124) when the pipeline runs '
                   'longer than this')
  insp = sub.add_parser(
      'inspect', help='which handler fits a model file, and its signature')
  insp.add_argument('model_path', help='a model file or directory')
  insp.add_argument('--json', action='store_true', help='print JSON')
  return ap


class _ImportNoise(logging.Filter):
  """Drops the warnings Beam logs while importing optional modules (its YAML
  provider imports every ML transform module it has)."""
  NOISE = ('apitools not found', 'Could not load ML transform module')

  def filter(self, record: logging.LogRecord) -> bool:
    return not any(n in record.getMessage() for n in self.NOISE)


def _quiet_imports() -> None:
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  root = logging.getLogger()
  if not root.handlers:
    logging.basicConfig(level=logging.WARNING,
                        format='%(levelname)s %(name)s: %(message)s')
  for handler in root.handlers:
    handler.addFilter(_ImportNoise())


def main(argv: Optional[Sequence[str]] = None) -> int:
  """The ``runinference`` console script; returns the exit status."""
  args, rest = _parser().parse_known_args(argv)
  _quiet_imports()
  if args.command == 'run':
    from .run import run_command
    return run_command(args, rest)
  if rest:
    _parser().error(f'unrecognized arguments: {" ".join(rest)}')
  from .inspect import inspect_command
  return inspect_command(args)


__all__ = ['main']

if __name__ == '__main__':
  sys.exit(main())
