"""``runinference run PIPELINE.yaml``: check, build and run a Beam YAML
pipeline with the runinference transforms available, showing progress, then
a summary from the pipeline's metrics."""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
import time
from typing import Any, Optional, Sequence

from runinference import live_metrics

from .progress import ProgressDisplay, describe, read_counts

_LOG = logging.getLogger('runinference.cli')


class CliError(Exception):
  """A problem to report in one line; ``code`` is the exit status."""

  def __init__(self, message: str, code: int = 2):
    super().__init__(message)
    self.code = code


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


def load_pipeline(path: str, jinja_variables: Optional[str]) -> dict:
  """Reads, Jinja-expands, parses and checks a pipeline file."""
  from apache_beam.yaml import yaml_transform
  from apache_beam.yaml.yaml_utils import SafeLineLoader
  import yaml

  from runinference.yaml.check import YamlFileError, check_pipeline
  if not os.path.exists(path):
    raise CliError(f'{path}: no such pipeline file')
  try:
    variables = json.loads(jinja_variables) if jinja_variables else {}
  except json.JSONDecodeError as e:
    raise CliError(f'--jinja_variables is not valid JSON: {e}') from e
  if not isinstance(variables, dict):
    raise CliError('--jinja_variables must be a JSON object')
  with open(path) as f:
    template = f.read()
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
  unknown = _unknown_beam_options(beam_args)
  if unknown:
    raise CliError(f'unknown option(s) {unknown}: neither runinference run '
                   'options (see --help) nor Beam pipeline options')
  file_options = SafeLineLoader.strip_metadata(spec.get('options', {}))
  options = PipelineOptions(list(beam_args), pickle_library='cloudpickle',
                            **file_options)
  runner = None
  if not options.view_as(StandardOptions).runner:
    runner = _local_runner(options)
  pipeline = beam.Pipeline(runner=runner, options=options)
  yaml_transform.expand_pipeline(
      pipeline, spec, providers=providers(), pipeline_path=path)
  return pipeline


def _run_with_progress(pipeline, quiet: bool, timeout: Optional[float]):
  """Runs the pipeline in a thread while the progress display redraws."""
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
  display = None if quiet else ProgressDisplay(start)
  try:
    while thread.is_alive():
      thread.join(0.25)
      if display:
        display.update()
      if timeout is not None and time.monotonic() - start > timeout:
        raise CliError(
            f'the pipeline ran longer than --timeout {timeout:g}s', 124)
  finally:
    if display:
      display.close()
  if 'error' in box:
    raise box['error']
  return box['result'], time.monotonic() - start


def _summary(result, seconds: float) -> None:
  from runinference.report import RunReport
  counts = read_counts(time.monotonic() - seconds)
  report = RunReport.from_result(result)
  print(report)
  print(f'Done in {seconds:.1f}s: {describe(counts)}')


def _write_report(result, path: str) -> None:
  from runinference.report import RunReport
  report = RunReport.from_result(result)
  if not hasattr(report, 'write_html'):
    raise CliError('--report needs RunReport.write_html (this runinference '
                   'version has no HTML report)')
  report.write_html(path)


def run_command(args: argparse.Namespace, beam_args: Sequence[str]) -> int:
  server = None
  try:
    spec = load_pipeline(args.pipeline, args.jinja_variables)
    pipeline = build_pipeline(spec, args.pipeline, beam_args)
    live_metrics.reset()
    live_metrics.enable()
    if args.metrics_port is not None:
      server = live_metrics.serve(args.metrics_port, args.metrics_host)
      print(f'metrics: {server.url}', file=sys.stderr, flush=True)
    result, seconds = _run_with_progress(pipeline, args.quiet, args.timeout)
    if not args.quiet:
      _summary(result, seconds)
    if args.report:
      _write_report(result, args.report)
      print(f'report: {os.path.abspath(args.report)}')
    return 0
  except CliError as e:
    print(f'runinference: {e}', file=sys.stderr)
    return e.code
  except Exception as e:  # the pipeline failed: say so in one line at the end
    _LOG.debug('pipeline failed', exc_info=True)
    print(f'runinference: the pipeline failed: {type(e).__name__}: {e}',
          file=sys.stderr)
    return 1
  finally:
    if server is not None:
      server.stop()
    live_metrics.disable()
