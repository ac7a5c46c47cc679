"""Validation-gated refresh: a model from the watched pattern replaces the
serving one only if it passes ``model_validation`` on a held-out sample;
a refused one is logged and counted, and every element is served once."""
import logging

import apache_beam as beam
import numpy as np
import pytest

from runinference.base import ModelMetadata, RunInference
from runinference.evaluation import ChangeThreshold, ModelValidation, ValueThreshold
from runinference.exceptions import ConfigurationError, ConfigurationTypeError
from runinference.sklearn_inference import SklearnModelHandlerNumpy
from apache_beam.testing.util import assert_that
from tests.core.test_refresh import (check_switches, counters, drop_files_at,
                                models, numbered, save_model,
                                streaming_pipeline)

_ = models  # the fixture


def _held_out():
  """Truth is y = 3x: the serving x2 model is off by |x|, x5 by 2|x|,
  x3 is exact."""
  xs = [np.array([float(i)]) for i in range(1, 11)]
  return ModelValidation(
      xs, [3 * x[0] for x in xs], metrics='regression',
      thresholds=[ChangeThreshold('mae', direction='lower_is_better'),
                  ValueThreshold('r2', lower=-100.0)])


def test_refused_then_accepted_refresh_every_element_accounted(models, caplog):
  first = save_model(str(models / 'g_x2.pkl'), 2)
  worse, better = str(models / 'g_x5.pkl'), str(models / 'g_x3.pkl')
  n = 45
  p = streaming_pipeline()
  out = (
      numbered(p, n)
      | drop_files_at({10: (save_model, worse, 5), 25: (save_model, better, 3)})
      | RunInference(SklearnModelHandlerNumpy(first),
                     watch_model_pattern=str(models / 'g_*.pkl'),
                     interval=0.1, model_validation=_held_out()))
  # x5 never serves: every element is x2 until x3 is swapped in.
  assert_that(out, check_switches(n, [(0, 2), (25, 3)]))
  with caplog.at_level(logging.ERROR):
    result = p.run()
    result.wait_until_finish()
  assert counters(result, 'model_refresh_rejected') == 1
  assert counters(result, 'model_swaps') == 1
  assert counters(result, 'model_load_failures') == 0
  refused = [r for r in caplog.records if 'g_x5' in r.getMessage()]
  assert refused, 'the refused model is logged'
  text = ' '.join(str(r.exc_info[1]) for r in refused if r.exc_info)
  assert 'failed validation' in text and 'mae' in text


@pytest.mark.parametrize('factor, served', [(5, 2), (3, 3)])
def test_side_input_refresh_is_gated_too(models, factor, served):
  """A ModelMetadata side input: a failing model is refused (the first
  keeps serving), a passing one is swapped in."""
  first = save_model(str(models / 'h_x2.pkl'), 2)
  new = save_model(str(models / f'h_x{factor}.pkl'), factor)
  p = streaming_pipeline()
  side = p | 'Side' >> beam.Create([ModelMetadata(new, 'challenger')])
  out = (
      p | beam.Create([np.array([float(i)]) for i in range(6)])
      | RunInference(SklearnModelHandlerNumpy(first),
                     model_metadata_pcoll=side,
                     model_validation=_held_out()))
  assert_that(out, check_switches(6, [(0, served)]))
  result = p.run()
  result.wait_until_finish()
  assert counters(result, 'model_refresh_rejected') == (served != factor)
  assert counters(result, 'model_swaps') == (served == factor)


def test_gate_alone_names_every_failed_threshold():
  gate = _held_out()
  x = lambda k: (lambda xs: [k * v[0] for v in xs])
  assert gate(x(3), x(2)).blessed
  res = gate(x(5), x(2))
  assert not res.blessed and len(res.failures) == 1
  assert 'mae' in str(res) and 'candidate' in str(res)
  # Nothing serving yet: change thresholds are skipped, value ones apply.
  assert gate(x(5), None).blessed


def test_model_validation_needs_a_refresh_source_and_a_callable():
  handler = SklearnModelHandlerNumpy('unused.pkl')
  with pytest.raises(ConfigurationError, match='watch_model_pattern'):
    RunInference(handler, model_validation=_held_out())
  with pytest.raises(ConfigurationTypeError, match='callable'):
    RunInference(handler, watch_model_pattern='/tmp/*.pkl',
                 model_validation='accuracy')
  with pytest.raises(ConfigurationTypeError, match='model_validation'):
    RunInference(handler, watch_model_pattern='/tmp/*.pkl',
                 model_validaton=_held_out())


def test_held_out_sample_from_a_file(tmp_path):
  import pandas as pd
  xs = np.arange(1, 11, dtype=float)
  path = str(tmp_path / 'held_out.csv')
  pd.DataFrame({'x': xs, 'y': 3 * xs, 'g': ['a', 'b'] * 5}).to_csv(path)
  gate = ModelValidation.from_file(
      path, label='y', features=['x'], slice_features=['g'],
      slices=[(), 'g'], metrics='regression',
      thresholds=[ValueThreshold('mae', upper=0.5, slices='*')])
  res = gate(lambda batch: [2 * v[0] for v in batch])
  assert not res.blessed and len(res.failures) == 3  # overall, g=a, g=b
  assert gate(lambda batch: [3 * v[0] for v in batch]).blessed
  with pytest.raises(ConfigurationError, match="no column"):
    ModelValidation.from_file(path, label='label', features=['x'],
                              thresholds=[ValueThreshold('mae', upper=1)],
                              metrics='regression')
