"""``runinference run PIPELINE.yaml``: check, build and run a Beam YAML
pipeline with the runinference transforms available, showing progress, then
a summary from the pipeline's metrics."""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import threading
import time
from typing import Any, Optional, Sequence

from runinference import live_metrics
from runinference.exceptions import RunInferenceError

from .progress import Counts, ProgressDisplay, read_counts
from ..exceptions import CliError  # noqa: F401  (re-exported)

_LOG = logging.getLogger('runinference.cli')


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


@dataclasses.dataclass
class RunOutcome:
  """A finished run: the Beam result, wall seconds, and the live counts."""
  result: Any
  seconds: float
  counts: Counts


def run_file(path: str, *, jinja_variables: Optional[dict] = None,
             beam_args: Sequence[str] = (), quiet: bool = True,
             metrics_port: Optional[int] = None,
             metrics_host: str = '127.0.0.1',
             report: Optional[str] = None,
             timeout: Optional[float] = None) -> RunOutcome:
  """Checks, builds and runs a pipeline file (what ``runinference run``
  does); raises ``CliError`` for a bad file or option."""
  unknown = _unknown_beam_options(beam_args)
  if unknown:
    names = ', '.join('--' + u for u in unknown)
    raise CliError(f'unknown option(s) {names}: neither runinference run '
                   'options (see --help) nor Beam pipeline options')
  spec = load_pipeline(path, jinja_variables)
  try:
    pipeline = build_pipeline(spec, path, beam_args)
  except CliError:
    raise
  except Exception as e:  # Beam's own message names the transform and line
    raise CliError(f'{path}: cannot build the pipeline: {e}') from e
  server = None
  live_metrics.reset()
  live_metrics.enable()
  try:
    if metrics_port is not None:
      server = live_metrics.serve(metrics_port, metrics_host)
      print(f'metrics: {server.url}', file=sys.stderr, flush=True)
    result, seconds = _run_with_progress(pipeline, quiet, timeout)
    counts = read_counts(time.monotonic() - seconds)
  finally:
    if server is not None:
      server.stop()
    live_metrics.disable()
  if report:
    _write_report(result, report)
  return RunOutcome(result, seconds, counts)


def _write_report(result, path: str) -> None:
  from runinference.report import RunReport
  report = RunReport.from_result(result)
  if not hasattr(report, 'write_html'):
    raise CliError('--report needs RunReport.write_html (this runinference '
                   'version has no HTML report)')
  report.write_html(path)


def run_command(args: argparse.Namespace, beam_args: Sequence[str]) -> int:
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
