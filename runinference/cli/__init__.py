"""The ``runinference`` command.

    runinference run PIPELINE.yaml [--quiet] [--log-level L] [--metrics-port N]
                     [--report out.html] [beam pipeline options...]
    runinference validate PIPELINE.yaml [--jinja_variables JSON]
    runinference inspect MODEL_PATH [--json]
    runinference --version

This module imports the standard library only: ``--help`` and ``--version``
answer without importing Beam, and logging is set up before anything else
is imported.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import Optional, Sequence

from .logs import DEFAULT_LEVEL, LEVELS, setup_logging

# Subcommands: name -> module (relative to this package). Each module has
# HELP and DESCRIPTION (None: HELP) texts, add_arguments(parser) and
# command(args, extra_args) -> exit status.
# Importing one must stay light (standard library only at module level).
COMMANDS = {
    'run': '.run',
    'validate': '.validate',
    'inspect': '.inspect',
    'evaluate': '.evaluate',
}


def version() -> str:
  try:
    from importlib.metadata import version as _version
    return _version('runinference')
  except Exception:  # not installed (a source checkout on sys.path)
    return 'unknown'


def _parser() -> argparse.ArgumentParser:
  ap = argparse.ArgumentParser(
      prog='runinference', allow_abbrev=False,
      description='Run, validate and inspect Beam YAML inference pipelines '
      'and model files.')
  ap.add_argument('--version', action='version',
                  version=f'runinference {version()}')
  common = argparse.ArgumentParser(add_help=False)
  common.add_argument(
      '--log-level', '--log_level', dest='log_level', default=DEFAULT_LEVEL,
      type=str.lower, choices=LEVELS,
      help=f'logging shown on stderr (default {DEFAULT_LEVEL}: the '
      'pipeline\'s own logging such as LogForTesting rows, third-party '
      'libraries\' warnings and errors only; debug: everything)')
  sub = ap.add_subparsers(dest='command', required=True, metavar='COMMAND')
  for name, module in COMMANDS.items():
    mod = importlib.import_module(module, __name__)
    mod.add_arguments(sub.add_parser(
        name, parents=[common], allow_abbrev=False, help=mod.HELP,
        description=mod.DESCRIPTION or mod.HELP))
  return ap


def main(argv: Optional[Sequence[str]] = None) -> int:
  """The ``runinference`` console script; returns the exit status."""
  args, rest = _parser().parse_known_args(argv)
  restore = setup_logging(args.log_level)
  try:
    module = importlib.import_module(COMMANDS[args.command], __name__)
    return module.command(args, rest)
  finally:
    restore()


__all__ = ['main']

if __name__ == '__main__':
  sys.exit(main())
