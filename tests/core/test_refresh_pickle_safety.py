"""A pickle dropped into a watched folder (issue 18 item 12): it runs code
when loaded, so it is loaded only with a digest source -- a sidecar
``<file>.sha256`` from the publisher that matches it -- or the explicit
opt-in ``allow_pickle=True``; otherwise it is refused with a warning naming
the file, and the current model keeps serving. Real files, real sklearn
models, a real streaming pipeline."""
import hashlib
import logging
import time

import apache_beam as beam
import pytest
from apache_beam.testing.util import assert_that

from runinference._core.watch import FilePatternPoller, WatchSpec
from runinference.base import ModelMetadata, RunInference
from runinference.sklearn_inference import SklearnModelHandlerNumpy
from runinference.utils import WatchFilePattern
from tests.core.test_refresh import (check_switches, counters, drop_files_at,
                                models, numbered, save_model,
                                streaming_pipeline, write_atomically)

_ = models  # the fixture
_LOGGER = 'runinference._core.watch_digest'


def _poller(models, allow_pickle=False):
  return FilePatternPoller(WatchSpec(str(models / '*.pkl'), 1, time.time(),
                                     float('inf'),
                                     allow_pickle=allow_pickle))


def test_pickle_without_digest_is_refused_with_a_warning_naming_it(
    models, caplog):
  poller = _poller(models)
  time.sleep(0.01)
  dropped = save_model(str(models / 'evil_x9.pkl'), 9, digest=False)
  with caplog.at_level(logging.WARNING, logger=_LOGGER):
    assert poller.check() is None
  assert any(dropped in r.getMessage() and 'not loaded' in r.getMessage()
             and 'sha256' in r.getMessage() for r in caplog.records)
  assert poller.check() is None  # refused once, not offered again as is
  # The publisher's digest arrives: now it is offered.
  write_atomically(dropped + '.sha256', (
      hashlib.sha256(open(dropped, 'rb').read()).hexdigest()
      + '\n').encode())
  assert poller.check() == ModelMetadata(dropped, 'evil_x9')


def test_pickle_whose_digest_does_not_match_is_refused(models, caplog):
  poller = _poller(models)
  time.sleep(0.01)
  path = save_model(str(models / 'm_x3.pkl'), 3)
  save_model(str(models / 'other_x4.pkl'), 4)
  # Someone replaces the model but not its digest.
  write_atomically(path, open(str(models / 'other_x4.pkl'), 'rb').read())
  with caplog.at_level(logging.WARNING, logger=_LOGGER):
    md = poller.check()
  assert md == ModelMetadata(str(models / 'other_x4.pkl'), 'other_x4')
  assert poller.check() is None
  assert any(path in r.getMessage() and 'not the one published'
             in r.getMessage() for r in caplog.records)


def test_opt_in_and_data_only_formats_need_no_digest(models):
  poller = _poller(models, allow_pickle=True)
  time.sleep(0.01)
  path = save_model(str(models / 'ok_x2.pkl'), 2, digest=False)
  assert poller.check() == ModelMetadata(path, 'ok_x2')
  onnx = FilePatternPoller(WatchSpec(str(models / '*.onnx'), 1, time.time(),
                                     float('inf')))
  time.sleep(0.01)
  write_atomically(str(models / 'net.onnx'), b'protobuf graph')
  assert onnx.check() == ModelMetadata(str(models / 'net.onnx'), 'net')
  assert WatchFilePattern(str(models / '*.pkl'),
                          allow_pickle=True).spec.allow_pickle


def test_watched_pickle_without_digest_never_serves(models, caplog):
  first = save_model(str(models / 'model_x2.pkl'), 2)
  n, drop_at = 30, 8
  p = streaming_pipeline()
  out = (
      numbered(p, n)
      | drop_files_at({drop_at: (save_model, str(models / 'model_x7.pkl'), 7,
                                 False)})
      | RunInference(SklearnModelHandlerNumpy(first),
                     watch_model_pattern=str(models / '*.pkl'), interval=0.1))
  assert_that(out, check_switches(n, [(0, 2)]))
  with caplog.at_level(logging.WARNING, logger=_LOGGER):
    result = p.run()
    result.wait_until_finish()
  assert counters(result, 'model_swaps') == 0
  assert any('model_x7.pkl' in r.getMessage() for r in caplog.records)


def test_watched_pickle_with_digest_is_served(models):
  first = save_model(str(models / 'model_x2.pkl'), 2)
  n, drop_at = 30, 8
  p = streaming_pipeline()
  out = (
      numbered(p, n)
      | drop_files_at({drop_at: (save_model, str(models / 'model_x5.pkl'), 5)})
      | RunInference(SklearnModelHandlerNumpy(first),
                     watch_model_pattern=str(models / '*.pkl'), interval=0.1))
  assert_that(out, check_switches(n, [(0, 2), (drop_at, 5)]))
  result = p.run()
  result.wait_until_finish()
  assert counters(result, 'model_swaps') == 1



def test_watch_model_pattern_passes_allow_pickle_on(tmp_path):
  """RunInference(watch_model_pattern=..., allow_pickle=True) opts in as
  WatchFilePattern(..., allow_pickle=True) does; alone it is an error."""
  from runinference.base import RunInference
  from runinference.exceptions import ConfigurationError
  from runinference.sklearn_inference import SklearnModelHandlerNumpy
  handler = SklearnModelHandlerNumpy(str(tmp_path / 'm.pkl'))
  step = RunInference(handler, watch_model_pattern=str(tmp_path / '*.pkl'),
                      allow_pickle=True)
  p = beam.Pipeline()
  step._metadata_pcoll(p)
  [watcher] = [part.transform for part in p.transforms_stack[0].parts
               if isinstance(part.transform, WatchFilePattern)]
  assert watcher.allow_pickle is True
  with pytest.raises(ConfigurationError, match='allow_pickle goes with'):
    RunInference(handler, allow_pickle=True)
