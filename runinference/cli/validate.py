"""``runinference validate PIPELINE.yaml``: everything ``run`` checks before
it runs, and nothing more is run: the file parses, every runinference
transform's config is valid and its handler type resolves, the model files
it names exist, the pipeline's options are Beam options, and Beam can build
(not run) the pipeline graph. Exit 0 when valid, 2 with ``FILE[:LINE]: ...``
otherwise."""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Iterator, Sequence

from ..exceptions import CliError

# Handler config fields that name a local model file or directory.
_MODEL_FIELDS = ('model_uri', 'model_path', 'state_dict_path',
                 'torch_script_model_path', 'model_state', 'model',
                 'engine_path', 'onnx_path')


HELP = 'check a pipeline file without running it'
DESCRIPTION = (
    'Parses the file, checks every runinference transform\'s config, '
    'resolves its handler types, checks that the model files exist and that '
    'Beam can build the pipeline; runs nothing. Exit 0 when valid, 2 with '
    'FILE:LINE on the first error.')


def add_arguments(val) -> None:
  from .run import add_jinja_argument
  val.add_argument('pipeline', help='the pipeline file (.yaml)')
  add_jinja_argument(val)


def _handler_specs(spec) -> Iterator[tuple[list, dict]]:
  from runinference.yaml.check import _transforms
  for path, transform in _transforms(spec.get('pipeline'), ['pipeline']):
    if str(transform.get('type')) != 'RunInference':
      continue
    config = transform.get('config')
    handler = config.get('model_handler') if isinstance(config, dict) else None
    entries = handler if isinstance(handler, list) else [handler]
    for i, entry in enumerate(entries):
      where = [*path, 'config', 'model_handler'] + (
          [i] if isinstance(handler, list) else [])
      if isinstance(entry, dict) and isinstance(entry.get('config'), dict):
        yield [*where, 'config'], entry['config'], entry.get('type')


# A model file's extension -> the framework module of the handlers that load
# it (as runinference's public modules are named).
_FILE_FRAMEWORKS = {
    '.pkl': 'sklearn', '.pickle': 'sklearn', '.joblib': 'sklearn',
    '.skops': 'sklearn', '.onnx': 'onnx', '.pt': 'pytorch', '.pth': 'pytorch',
    '.safetensors': 'pytorch', '.ubj': 'xgboost', '.bst': 'xgboost',
    '.keras': 'tensorflow', '.h5': 'tensorflow',
}
_SUGGEST = {'sklearn': 'SklearnModelHandlerNumpy', 'onnx': 'OnnxModelHandlerNumpy',
            'pytorch': 'PytorchModelHandlerTensor',
            'xgboost': 'XGBoostModelHandlerNumpy',
            'tensorflow': 'TFModelHandlerNumpy'}


def _handler_framework(handler_type) -> str:
  """'sklearn' for runinference.sklearn_inference's handlers, ...; '' when
  the type does not resolve or is not one of ours."""
  from runinference.yaml.handlers import resolve_handler_class
  try:
    module = resolve_handler_class(handler_type, []).__module__
  except Exception:  # reported by the config check
    return ''
  name = module.rsplit('.', 1)[-1]
  return name[:-len('_inference')] if name.endswith('_inference') else ''


def _check_file_type(value: str, handler_type, where: str, field: str) -> None:
  """A model file whose extension says another framework than the
  handler's: the handler could not load it."""
  wanted = _handler_framework(handler_type)
  found = _FILE_FRAMEWORKS.get(os.path.splitext(value)[1].lower())
  # pickles are also how some other handlers are fed (a pickled module):
  # only flag files that can only be one framework's.
  if not wanted or not found or wanted == found or found == 'sklearn' and \
      wanted not in ('onnx', 'xgboost', 'tensorflow'):
    return
  raise CliError(f'{where}: {field}: {value!r} is a model file for {found}; '
                 f'{handler_type} loads {wanted} models (did you mean '
                 f'{_SUGGEST[found]}?)')


def _looks_remote(value: str) -> bool:
  return '://' in value and not value.startswith('file://')


def check_model_files(spec: dict, file: str) -> None:
  """Raises ``CliError`` naming FILE:LINE for a model file that is not
  there, or whose type another framework's handler loads (remote URIs and
  Hub ids are left to the run)."""
  from runinference.yaml.check import line_of
  from runinference.yaml.errors import format_path
  base = os.path.dirname(os.path.abspath(file))
  for path, config, handler_type in _handler_specs(spec):
    for field in _MODEL_FIELDS:
      value = config.get(field)
      if not isinstance(value, str) or _looks_remote(value):
        continue
      local = value[len('file://'):] if value.startswith('file://') else value
      if field == 'model' and not (local.startswith(('.', '/'))
                                   or os.path.exists(local)):
        continue  # a Hugging Face Hub id, fetched at run time
      full = [*path, field]
      line = line_of(spec, full)
      where = f'{file}:{line}' if line else file
      if os.path.exists(local) or os.path.exists(os.path.join(base, local)):
        _check_file_type(local, handler_type, where, format_path(full))
        continue
      if any(c in local for c in '*?['):
        continue  # a refresh pattern: files may come later
      raise CliError(f'{where}: {format_path(full)}: model file {value!r} '
                     'does not exist')


def validate_file(path: str, jinja_variables: Any = None,
                  beam_args: Sequence[str] = ()) -> dict:
  """The checks of ``runinference validate``; returns the parsed spec or
  raises ``CliError``."""
  from .run import (build_pipeline, check_beam_options, check_file_options,
                    load_pipeline)
  check_beam_options(beam_args)
  spec = load_pipeline(path, jinja_variables)
  check_file_options(spec, path)
  check_model_files(spec, path)
  try:
    build_pipeline(spec, path, beam_args)  # builds the graph; runs nothing
  except CliError:
    raise
  except Exception as e:  # Beam's message names the transform and its line
    raise CliError(f'{path}: {e}') from e
  return spec


def command(args: argparse.Namespace, beam_args: Sequence[str]) -> int:
  try:
    variables = json.loads(args.jinja_variables) if args.jinja_variables else {}
    validate_file(args.pipeline, variables, beam_args)
  except json.JSONDecodeError as e:
    print(f'runinference: --jinja_variables is not valid JSON: {e}',
          file=sys.stderr)
    return 2
  except CliError as e:
    print(f'runinference: {e}', file=sys.stderr)
    return e.code
  print(f'{args.pipeline}: valid')
  return 0
