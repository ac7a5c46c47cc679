"""``runinference run PIPELINE.yaml``: check, build and run a Beam YAML
pipeline with the runinference transforms available, showing progress, then
a summary from the pipeline's metrics."""
from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import logging
import os
import socket
import sys
import threading
import time
from typing import Any, Optional, Sequence

from ..exceptions import CliError  # noqa: F401  (re-exported)

_LOG = logging.getLogger('runinference.cli')
# Our own options of `run`, for did-you-mean on an unknown option.
_OWN_OPTIONS = ('quiet', 'metrics_port', 'metrics_host', 'report',
                'jinja_variables', 'timeout', 'log_level')


HELP = 'run a Beam YAML pipeline file'
DESCRIPTION = (
    'Runs a Beam YAML pipeline. Options not listed here are Beam pipeline '
    'options (e.g. --runner=FlinkRunner) and pass through; without --runner '
    'it runs in this process on the DirectRunner\'s local runner.')


def add_arguments(run) -> None:
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
  add_jinja_argument(run)
  run.add_argument('--timeout', type=float, default=None, metavar='SECONDS',
                   help='give up (exit status 124) when the pipeline runs '
                   'longer than this')


def _since_process_start() -> str:
  """'N.NNs after the process started, ' where /proc tells (Linux)."""
  try:
    with open('/proc/self/stat') as f:
      ticks = int(f.read().rsplit(')', 1)[1].split()[19])
    with open('/proc/uptime') as f:
      uptime = float(f.read().split()[0])
    return f'{uptime - ticks / os.sysconf("SC_CLK_TCK"):.2f}s after the ' \
        'process started, '
  except (OSError, ValueError, IndexError):
    return ''


def add_jinja_argument(parser) -> None:
  parser.add_argument(
      '--jinja_variables', '--jinja-variables', default=None,
      metavar='JSON', help='variables for the file\'s Jinja placeholders, '
      'as a JSON object (as Beam\'s yaml main)')


def _beam_option_names() -> list[str]:
  from apache_beam.options.pipeline_options import PipelineOptions
  return sorted(PipelineOptions([]).get_all_options())


def _did_you_mean(name: str, candidates: Sequence[str]) -> str:
  key = name.replace('-', '_')
  close = difflib.get_close_matches(key, list(candidates), n=1, cutoff=0.75)
  return f' (did you mean --{close[0]}?)' if close else ''


def _unknown_beam_options(beam_args: Sequence[str]) -> list[str]:
  from apache_beam.options.pipeline_options import PipelineOptions
  options = PipelineOptions(list(beam_args))
  logger = logging.getLogger('apache_beam.options.pipeline_options')
  level = logger.level
  logger.setLevel(logging.ERROR)  # the 'Discarding unparseable args' warning
  try:
    known = set(options.get_all_options())
    everything = set(options.get_all_options(retain_unknown_options=True))
  finally:
    logger.setLevel(level)
  return sorted(everything - known)


def check_beam_options(beam_args: Sequence[str]) -> None:
  """Raises ``CliError`` for an argument that is neither ours nor a Beam
  pipeline option, suggesting the closest of either."""
  unknown = _unknown_beam_options(beam_args)
  if unknown:
    candidates = [*_beam_option_names(), *_OWN_OPTIONS]
    names = ', '.join('--' + u + _did_you_mean(u, candidates) for u in unknown)
    raise CliError(f'unknown option(s) {names}: neither runinference run '
                   'options (see --help) nor Beam pipeline options')


def check_file_options(spec: dict, path: str) -> None:
  """The pipeline file's ``options:`` block holds Beam pipeline options."""
  from apache_beam.yaml.yaml_utils import SafeLineLoader
  options = spec.get('options') or {}
  if not isinstance(options, dict):
    raise CliError(f'{path}: options: must be a mapping of pipeline options')
  known = set(_beam_option_names())
  for key in options:
    if key in ('__line__', '__uuid__') or str(key) in known:
      continue
    line = SafeLineLoader.get_line(options)
    where = f'{path}:{line}' if isinstance(line, int) else path
    raise CliError(f'{where}: options.{key}: not a Beam pipeline option'
                   f'{_did_you_mean(str(key), sorted(known))}')


def check_port_free(host: str, port: int) -> None:
  """Raises ``CliError`` (exit 2) naming the port when it cannot be bound,
  before any start-up work."""
  if port == 0:
    return
  try:
    with socket.socket(socket.AF_INET6 if ':' in host else socket.AF_INET,
                       socket.SOCK_STREAM) as s:
      s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
      s.bind((host, port))
  except OSError as e:
    raise CliError(f'--metrics-port {port}: cannot serve on {host}:{port}: '
                   f'{e.strerror or e} (choose another port, or 0 for any '
                   'free port)') from e


def load_pipeline(path: str, jinja_variables: Optional[dict] = None) -> dict:
  """Reads, Jinja-expands, parses and checks a pipeline file."""
  from apache_beam.yaml import yaml_transform
  from apache_beam.yaml.yaml_utils import SafeLineLoader
  import yaml

  from runinference.yaml.check import YamlFileError, check_pipeline
  if not os.path.exists(path):
    raise CliError(f'{path}: no such pipeline file')
  variables = jinja_variables or {}
  if not isinstance(variables, dict):
    raise CliError('--jinja_variables must be a JSON object')
  try:
    with open(path, encoding='utf-8') as f:
      template = f.read()
  except UnicodeDecodeError as e:
    raise CliError(f'{path}: not a UTF-8 text file (byte {e.start}: '
                   f'{e.object[e.start:e.start + 1]!r}); pipeline files are '
                   'UTF-8 YAML') from e
  except OSError as e:
    raise CliError(f'{path}: cannot read the pipeline file: '
                   f'{e.strerror or e}') from e
  try:
    text = yaml_transform.expand_jinja(
        template, variables, [os.path.dirname(os.path.abspath(path))])
  except Exception as e:  # jinja2's UndefinedError, TemplateSyntaxError...
    raise CliError(f'{path}: template error: {type(e).__name__}: {e} '
                   '(pass values with --jinja_variables)') from e
  try:
    spec = yaml.load(text, Loader=SafeLineLoader)
  except yaml.YAMLError as e:
    raise CliError(f'{path}: not valid YAML: {e}') from e
  try:
    check_pipeline(spec, path)
  except YamlFileError as e:
    raise CliError(str(e)) from e
  return spec


def _local_runner(options):
  """The DirectRunner's in-process runner, built as the DirectRunner does,
  without its attempt to download and start Prism first."""
  from apache_beam.portability.api import beam_provision_api_pb2
  from apache_beam.runners.portability.fn_api_runner import fn_runner
  from apache_beam.runners.portability.portable_runner import JobServiceHandle
  encoded = JobServiceHandle.encode_pipeline_options(options.get_all_options())
  info = fn_runner.ExtendedProvisionInfo(
      beam_provision_api_pb2.ProvisionInfo(pipeline_options=encoded))
  return fn_runner.FnApiRunner(provision_info=info)


def build_pipeline(spec: dict, path: str, beam_args: Sequence[str]):
  """A ``beam.Pipeline`` with the file's transforms applied."""
  import apache_beam as beam
  from apache_beam.options.pipeline_options import PipelineOptions
  from apache_beam.options.pipeline_options import StandardOptions
  from apache_beam.yaml import yaml_transform
  from apache_beam.yaml.yaml_utils import SafeLineLoader

  from runinference.yaml import providers
  from runinference.yaml.lazy_providers import lazy_standard_providers
  file_options = SafeLineLoader.strip_metadata(spec.get('options', {}))
  options = PipelineOptions(list(beam_args), pickle_library='cloudpickle',
                            **file_options)
  runner = None
  if not options.view_as(StandardOptions).runner:
    runner = _local_runner(options)
  pipeline = beam.Pipeline(runner=runner, options=options)
  with lazy_standard_providers():
    yaml_transform.expand_pipeline(
        pipeline, spec, providers=providers(), pipeline_path=path)
  return pipeline


def _run_with_progress(pipeline, quiet: bool, timeout: Optional[float],
                       recorder=None, expected: Optional[int] = None):
  """Runs the pipeline in a thread while the progress display redraws (and
  ``recorder`` samples the live metrics)."""
  from .progress import ProgressDisplay
  box: dict[str, Any] = {}

  def target():
    try:
      result = pipeline.run()
      result.wait_until_finish()
      box['result'] = result
    except BaseException as e:  # reported by the caller
      box['error'] = e

  start = time.monotonic()
  thread = threading.Thread(target=target, name='runinference-run', daemon=True)
  thread.start()
  display = None if quiet else ProgressDisplay(start, expected=expected)
  try:
    while thread.is_alive():
      thread.join(0.25)
      if display:
        display.update()
      if recorder is not None:
        recorder.sample()
      if timeout is not None and time.monotonic() - start > timeout:
        raise CliError(
            f'the pipeline ran longer than --timeout {timeout:g}s', 124)
  finally:
    if display:
      display.close()
    if recorder is not None:
      recorder.sample(force=True)
  if 'error' in box:
    raise box['error']
  return box['result'], time.monotonic() - start


@dataclasses.dataclass
class RunOutcome:
  """A finished run: the Beam result, wall seconds, and the live counts."""
  result: Any
  seconds: float
  counts: Any  # progress.Counts


def run_file(path: str, *, jinja_variables: Optional[dict] = None,
             beam_args: Sequence[str] = (), quiet: bool = True,
             metrics_port: Optional[int] = None,
             metrics_host: str = '127.0.0.1',
             report: Optional[str] = None,
             timeout: Optional[float] = None) -> RunOutcome:
  """Checks, builds and runs a pipeline file (what ``runinference run``
  does); raises ``CliError`` for a bad file or option."""
  from runinference.report import live as live_metrics
  started = time.monotonic()
  if metrics_port is not None:
    check_port_free(metrics_host, metrics_port)
  check_beam_options(beam_args)
  spec = load_pipeline(path, jinja_variables)
  check_file_options(spec, path)
  try:
    pipeline = build_pipeline(spec, path, beam_args)
  except CliError:
    raise
  except Exception as e:  # Beam's own message names the transform and line
    raise CliError(f'{path}: cannot build the pipeline: {e}') from e
  from .progress import read_counts, source_rows
  from .recording import RunRecorder, runner_name, write_report
  expected = None if quiet else source_rows(spec)
  recorder = RunRecorder()
  runner = runner_name(pipeline)
  server = None
  live_metrics.reset()
  live_metrics.enable()
  try:
    if metrics_port is not None:
      try:
        server = live_metrics.serve(metrics_port, metrics_host)
      except OSError as e:  # taken since the check
        raise CliError(f'--metrics-port {metrics_port}: cannot serve on '
                       f'{metrics_host}:{metrics_port}: {e.strerror or e}') from e
      print(f'metrics: {server.url}', file=sys.stderr, flush=True)
    _LOG.debug('pipeline starts %s%.2fs after run_file began',
               _since_process_start(), time.monotonic() - started)
    try:
      result, seconds = _run_with_progress(pipeline, quiet, timeout, recorder,
                                           expected)
    except BaseException as e:
      if report:  # what is known of a failed run: its context and errors
        status = 'FAILED: ' + (str(e) if isinstance(e, CliError) else
                               f'{type(e).__name__}: {e}')
        write_report(report, None, recorder, recorder.context(
            path, runner, status[:300], time.monotonic() - recorder.start))
      raise
    counts = read_counts(time.monotonic() - seconds, expected)
  finally:
    if server is not None:
      server.stop()
    live_metrics.disable()
  if report:
    state = getattr(result, 'state', None) or 'DONE'
    write_report(report, result, recorder,
                 recorder.context(path, runner, str(state), seconds))
  return RunOutcome(result, seconds, counts)


def command(args: argparse.Namespace, beam_args: Sequence[str]) -> int:
  try:
    variables = json.loads(args.jinja_variables) if args.jinja_variables else {}
  except json.JSONDecodeError as e:
    print(f'runinference: --jinja_variables is not valid JSON: {e}',
          file=sys.stderr)
    return 2
  try:
    outcome = run_file(
        args.pipeline, jinja_variables=variables, beam_args=beam_args,
        quiet=args.quiet, metrics_port=args.metrics_port,
        metrics_host=args.metrics_host, report=args.report,
        timeout=args.timeout)
  except CliError as e:
    print(f'runinference: {e}', file=sys.stderr)
    return e.code
  except Exception as e:  # the pipeline failed: say so in one line at the end
    _LOG.debug('pipeline failed', exc_info=True)
    print(f'runinference: the pipeline failed: {type(e).__name__}: {e}',
          file=sys.stderr)
    return 1
  if not args.quiet:
    from runinference.report import RunReport
    report = RunReport.from_result(outcome.result)
    print(report)
    # From the runner's metrics: complete on multi-process runners too,
    # where the live counts only see this process.
    rate = report.total_inferences / outcome.seconds if outcome.seconds else 0
    print(f'Done in {outcome.seconds:.1f}s: {report.total_inferences:,} '
          f'inferences ({rate:,.0f}/s), {report.total_failed:,} failed')
  if args.report:
    print(f'report: {os.path.abspath(args.report)}')
  return 0


run_command = command  # the name this function had before subcommand modules
