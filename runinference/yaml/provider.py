"""The transforms runinference adds to Beam YAML, as a provider.

A pipeline file declares them itself (``provider_spec()`` is that block), so
that Beam's own ``apache_beam.yaml.main`` finds them; ``runinference run``
adds them when a file does not.
"""
from __future__ import annotations

# YAML type name -> fully qualified factory (what a `python` provider lists).
TRANSFORMS = {
    'RunInference': 'runinference.yaml.RunInference',
    'MLTransform': 'runinference.yaml.MLTransform',
    'ReadFromDuckDB': 'runinference.yaml.ReadFromDuckDB',
    'WriteToDuckDB': 'runinference.yaml.WriteToDuckDB',
    'RunInferenceColumnar': 'runinference.yaml.RunInferenceColumnar',
    'EvaluateModel': 'runinference.yaml.evaluation.EvaluateModel',
}


def provider_spec() -> dict:
  """The ``providers:`` entry to put in a pipeline file."""
  return {'type': 'python', 'config': {}, 'transforms': dict(TRANSFORMS)}


def providers() -> dict:
  """``{type name: [Provider]}`` for ``apache_beam.yaml.yaml_transform``."""
  from apache_beam.yaml import yaml_provider

  from .lazy_providers import inline_provider
  # Each factory is imported when a pipeline first uses its type.
  return yaml_provider.merge_providers(inline_provider(TRANSFORMS))
