"""runinference in Beam YAML pipelines.

Declare the provider once at the top of a pipeline file; the file then runs
with Beam's ``python -m apache_beam.yaml.main --yaml_pipeline_file=...`` and
with ``runinference run FILE.yaml``::

    providers:
      - type: python
        config: {}
        transforms:
          RunInference: runinference.yaml.RunInference

    pipeline:
      transforms:
        - type: RunInference
          config:
            model_handler:
              type: SklearnModelHandlerNumpy
              config:
                model_uri: model.pkl
                preprocess: {expression: '[value]'}

See docs/yaml.md for every option and handler.
"""
from runinference._core.naming import relabel

from .callables import UserFunction
from .check import YamlFileError
from .errors import YamlConfigError
from .handlers import known_handler_types
from .provider import TRANSFORMS, provider_spec, providers
from .duckdb import ReadFromDuckDB, WriteToDuckDB
from .mltransform import MLTransform
from .transform import RunInference


def __getattr__(name):
  # RunInferenceColumnar imports the columnar path (and the report's live
  # registry) only when a pipeline uses it.
  if name == 'RunInferenceColumnar':
    from .columnar import RunInferenceColumnar
    return RunInferenceColumnar
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


__all__ = [
    'MLTransform', 'ReadFromDuckDB', 'RunInference', 'RunInferenceColumnar',
    'TRANSFORMS', 'UserFunction', 'YamlFileError',
    'WriteToDuckDB', 'YamlConfigError', 'known_handler_types', 'provider_spec',
    'providers'
]

relabel(globals())
