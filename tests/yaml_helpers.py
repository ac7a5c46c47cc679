"""Running Beam YAML in tests: tiny models made on the spot, and a runner of
a YAML transform list whose outputs are checked with ``assert_that``."""
import pickle
import textwrap

import numpy as np


def sklearn_linear(path, coefs=(5.0,), frame_columns=None):
  """A LinearRegression y = coefs . x, pickled (fit on a DataFrame with
  ``frame_columns`` when given)."""
  from sklearn.linear_model import LinearRegression
  rng = np.random.default_rng(0)
  x = rng.uniform(0, 10, size=(50, len(coefs)))
  y = x @ np.asarray(coefs)
  if frame_columns:
    import pandas as pd
    x = pd.DataFrame(x, columns=frame_columns)
  with open(path, 'wb') as f:
    pickle.dump(LinearRegression().fit(x, y), f)
  return str(path)


def torch_linear(path, weight=5.0):
  """A ``torch.nn.Linear(1, 1)`` state dict computing ``weight * x``."""
  import torch
  layer = torch.nn.Linear(1, 1)
  with torch.no_grad():
    layer.weight.fill_(weight)
    layer.bias.zero_()
  torch.save(layer.state_dict(), path)
  return str(path)


def run_yaml(transforms_yaml: str, checks: dict, outputs: dict,
             **pipeline_kwargs):
  """Runs a composite of ``transforms_yaml`` (a YAML list) on the
  DirectRunner; ``outputs`` maps names to YAML output references and
  ``checks`` names to ``fn(list_of_elements)`` that raise when wrong."""
  import apache_beam as beam
  import yaml
  from apache_beam.options.pipeline_options import PipelineOptions
  from apache_beam.testing.util import assert_that
  from apache_beam.yaml.yaml_transform import YamlTransform
  from apache_beam.yaml.yaml_utils import SafeLineLoader

  from runinference.yaml import providers
  text = 'type: composite\ntransforms:\n' + textwrap.indent(
      textwrap.dedent(transforms_yaml), '  ') + 'output:\n' + ''.join(
          f'  {k}: {v}\n' for k, v in outputs.items())
  spec = yaml.load(text, Loader=SafeLineLoader)
  options = PipelineOptions(runner='DirectRunner', **pipeline_kwargs)
  with beam.Pipeline(options=options) as p:
    result = p | YamlTransform(spec, providers=providers())
    if not isinstance(result, dict):
      result = {next(iter(outputs)): result}
    for name, check in checks.items():
      assert_that(result[name], check, label=f'Check {name}')


def rows_close(expected: dict, field='inference', key='value', tol=1e-3):
  """A check: every row's ``field`` is close to ``expected[row.<key>]`` and
  every key appears once."""
  def check(rows):
    got = {getattr(r, key): getattr(r, field) for r in rows}
    assert len(rows) == len(expected), (len(rows), rows)
    assert set(got) == set(expected), got
    for k, v in got.items():
      assert abs(float(v) - expected[k]) <= tol * max(1.0, abs(expected[k])), (
          k, v, expected[k])
  return check


# Beam's in-process runner by name: no Prism download attempt.
LOCAL_RUNNER = ('--runner=apache_beam.runners.portability.fn_api_runner.'
                'fn_runner.FnApiRunner')


def beam_main(pipeline, variables: dict) -> None:
  """The YAML file through Beam's own ``apache_beam.yaml.main``, in process."""
  import json

  from apache_beam.yaml import main as yaml_main
  yaml_main.run([f'--yaml_pipeline_file={pipeline}',
                 f'--jinja_variables={json.dumps(variables)}', LOCAL_RUNNER])


def our_cli(pipeline, variables: dict) -> None:
  """The YAML file through ``runinference run``, which must succeed."""
  import json

  from runinference.cli import main
  assert main(['run', str(pipeline), '--quiet', '--jinja_variables',
               json.dumps(variables)]) == 0
