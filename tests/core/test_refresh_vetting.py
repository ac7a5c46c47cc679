"""A refresh candidate is vetted before it replaces the serving model: one
that loads but cannot predict (or fails the refresh sample) is rejected and
counted while the old model serves on; a watched file pattern offers files
new to it whatever their mtime, and offers an older good file after a newer
one failed. Engine-level (no pipeline) except the counter test."""
import os
import time

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.testing.util import assert_that, equal_to

from runinference.base import ModelMetadata, RunInference
from runinference.sklearn_inference import SklearnModelHandlerNumpy
from tests.helpers import (linear_model, metric, refreshable_engine,
                           run_pipeline, save_pickle)


@pytest.mark.parametrize('bad', ['dict', 'wrong_width'])
def test_a_model_that_loads_but_cannot_predict_is_not_swapped_in(tmp_path, bad):
  first = save_pickle(str(tmp_path / 'a.pkl'), linear_model(2))
  engine = refreshable_engine(SklearnModelHandlerNumpy(first))
  assert engine.run([np.array([1.0])]).outputs[0].inference == pytest.approx(2)
  obj = {'not': 'a model'} if bad == 'dict' else linear_model(5, width=3)
  candidate = save_pickle(str(tmp_path / 'b.pkl'), obj)
  engine.refresh(ModelMetadata(candidate, 'b'))
  out = engine.run([np.array([4.0])]).outputs[0]
  assert out.inference == pytest.approx(8) and out.model_id == first
  good = save_pickle(str(tmp_path / 'c.pkl'), linear_model(3))
  engine.refresh(ModelMetadata(good, 'c'))
  assert engine.run([np.array([1.0])]).outputs[0].inference == pytest.approx(3)


def test_refresh_sample_checks_a_candidate_before_any_example(tmp_path):
  first = save_pickle(str(tmp_path / 'a.pkl'), linear_model(2))
  engine = refreshable_engine(SklearnModelHandlerNumpy(first),
                              refresh_sample=[np.array([1.0])])
  engine.refresh(ModelMetadata(save_pickle(str(tmp_path / 'b.pkl'), {}), 'b'))
  assert engine.run([np.array([1.0])]).outputs[0].model_id == first


def test_rejected_refresh_is_counted_and_the_pipeline_lives(tmp_path):
  first = save_pickle(str(tmp_path / 'a.pkl'), linear_model(2))
  bad = str(tmp_path / 'bad.pkl')

  def build(p):
    side = (p | 'Meta' >> beam.Create([ModelMetadata(bad, 'bad')]))
    out = (p | beam.Create([np.array([1.0]), np.array([2.0])])
           | RunInference(SklearnModelHandlerNumpy(first),
                          model_metadata_pcoll=side,
                          refresh_sample=[np.array([1.0])]))
    assert_that(out | beam.Map(lambda r: round(float(r.inference), 3)),
                equal_to([2.0, 4.0]))

  save_pickle(bad, linear_model(5, width=3))
  result = run_pipeline(build)
  assert metric(result, 'BeamML_Sklearn', 'model_refresh_rejected') == 1


def test_watched_files_new_to_the_pattern_are_loaded_whatever_their_mtime(
    tmp_path):
  from runinference._core.watch import FilePatternPoller, WatchSpec
  there = save_pickle(str(tmp_path / 'm0.pkl'), linear_model(1))
  # (allow_pickle: the files have no sidecar digest; vetting is tested in
  # core/test_refresh_pickle_safety.py)
  spec = WatchSpec(str(tmp_path / '*.pkl'), 1, time.time(), float('inf'),
                   allow_pickle=True)
  poller = FilePatternPoller(spec)
  assert poller.check() is None  # there at the start
  staged = save_pickle(str(tmp_path / 'staging.bin'), linear_model(2))
  old = time.time() - 3600
  os.utime(staged, (old, old))  # staged an hour ago, moved in now
  moved = str(tmp_path / 'm1.pkl')
  os.replace(staged, moved)
  assert poller.check().model_id == moved
  poller.loaded(moved)
  # A good file older than a failed one, both new at once: after the newer
  # one fails, the older one is still offered.
  good = save_pickle(str(tmp_path / 'm2.pkl'), linear_model(3))
  os.utime(good, (old, old))
  broken = save_pickle(str(tmp_path / 'm3.pkl'), {})
  assert poller.check().model_id == broken
  poller.failed(broken)
  assert poller.check().model_id == good
  poller.loaded(good)
  assert poller.check() is None
  assert there  # never offered
