"""Logging for the ``runinference`` command (standard library only: set up
before Beam or any framework is imported, so their import-time noise is
filtered too).

``--log-level info`` (the default) shows the pipeline's own logging —
``LogForTesting`` rows and ``logging.info`` in user functions, both on the
root logger — and runinference's, while third-party libraries (Beam's
runner, absl, TensorFlow, transformers...) show warnings and errors only;
``--log-level debug`` shows everything.
"""
from __future__ import annotations

import logging
import os
import sys

LEVELS = ('debug', 'info', 'warning', 'error')
DEFAULT_LEVEL = 'info'

# Loggers whose INFO lines are the libraries' business, not the pipeline's.
_THIRD_PARTY = (
    'apache_beam', 'absl', 'tensorflow', 'h5py', 'urllib3', 'httpx',
    'httpcore', 'transformers', 'sentence_transformers', 'torch', 'jax',
    'numexpr', 'filelock', 'fsspec', 'huggingface_hub', 'grpc', 'py4j',
    'matplotlib', 'PIL', 'onnxruntime', 'xgboost', 'skops', 'duckdb',
    'distributed', 'asyncio',
)

# Warnings logged while Beam imports optional modules: about Beam's install,
# not the pipeline.
_NOISE = ('apitools not found', 'Could not load ML transform module',
          "Couldn't find python-snappy or google-crc32c")  # TFRecord on crcmod

# Environment that keeps frameworks' own (non-logging) chatter down; set
# before they are imported, never overriding the user's own settings.
_QUIET_ENV = {
    'TF_CPP_MIN_LOG_LEVEL': '2',           # TensorFlow's C++ INFO/WARNING lines
    'GRPC_VERBOSITY': 'ERROR',
    'HF_HUB_DISABLE_PROGRESS_BARS': '1',   # "Loading weights" / download bars
    'TRANSFORMERS_VERBOSITY': 'error',
    'TRANSFORMERS_NO_ADVISORY_WARNINGS': '1',
    'TOKENIZERS_PARALLELISM': 'false',
}


_BEAM_DIR = os.sep + 'apache_beam' + os.sep
_BEAM_YAML_DIR = _BEAM_DIR + 'yaml' + os.sep  # LogForTesting logs from here


class _NoiseFilter(logging.Filter):
  """Drops Beam's import warnings, and the INFO lines Beam's modules log on
  the root logger (e.g. its DataFrame stages) unless they come from Beam
  YAML (``LogForTesting``) or --log-level is debug."""

  def __init__(self):
    super().__init__()
    self.beam_root_info = False

  def filter(self, record: logging.LogRecord) -> bool:
    if any(n in str(record.msg) for n in _NOISE):
      return False
    if (record.name == 'root' and record.levelno < logging.WARNING and
        not self.beam_root_info and _BEAM_DIR in record.pathname and
        _BEAM_YAML_DIR not in record.pathname):
      return False
    return True


class _Formatter(logging.Formatter):
  """Root-logger INFO lines (``LogForTesting``, user ``logging.info``) as
  they are; everything else with its level and logger name."""

  def format(self, record: logging.LogRecord) -> str:
    text = record.getMessage()
    if record.exc_info:
      text += '\n' + self.formatException(record.exc_info)
    if record.name == 'root' and record.levelno == logging.INFO:
      return text
    return f'{record.levelname} {record.name}: {text}'


class _StderrHandler(logging.StreamHandler):
  """Writes to whatever ``sys.stderr`` is now (a live progress display
  replaces it while it runs)."""

  def __init__(self):
    super().__init__()

  @property
  def stream(self):
    return sys.stderr

  @stream.setter
  def stream(self, _value):
    pass


_HANDLER: list = []


def setup_logging(level: str = DEFAULT_LEVEL):
  """Configures the root logger for a ``runinference`` command; returns a
  function that puts the previous configuration back (for callers of
  ``main`` in a process that goes on, e.g. tests)."""
  level = level.lower()
  if level not in LEVELS:
    from ..exceptions import CliError
    raise CliError(f'log level {level!r}: expected one of {LEVELS}')
  numeric = getattr(logging, level.upper())
  if level != 'debug':
    for key, value in _QUIET_ENV.items():
      os.environ.setdefault(key, value)
  root = logging.getLogger()
  saved_handlers, saved_level = list(root.handlers), root.level
  saved = {name: logging.getLogger(name).level for name in _THIRD_PARTY}
  for old in list(root.handlers):  # the basicConfig an import's warning made
    if type(old) is logging.StreamHandler:  # pylint: disable=unidiomatic-typecheck
      root.removeHandler(old)
  if not _HANDLER:
    handler = _StderrHandler()
    handler.setFormatter(_Formatter())
    handler.addFilter(_NoiseFilter())
    _HANDLER.append(handler)
  for f in _HANDLER[0].filters:
    if isinstance(f, _NoiseFilter):
      f.beam_root_info = level == 'debug'
  if _HANDLER[0] not in root.handlers:
    root.addHandler(_HANDLER[0])
  root.setLevel(numeric)
  third_party = numeric if level == 'debug' else max(numeric, logging.WARNING)
  for name in _THIRD_PARTY:
    logging.getLogger(name).setLevel(third_party)

  def restore() -> None:
    for handler in list(root.handlers):
      root.removeHandler(handler)
    for handler in saved_handlers:
      root.addHandler(handler)
    root.setLevel(saved_level)
    for name, value in saved.items():
      logging.getLogger(name).setLevel(value)
  return restore
