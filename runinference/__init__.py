"""runinference: ML model inference in Apache Beam pipelines.

A drop-in for ``apache_beam.ml.inference``: swap the import prefix.

The names below load on first use (PEP 562), so ``import runinference`` --
and the CLI's ``--help`` -- do not import Apache Beam until something needs
it.
"""
import importlib

__version__ = '0.1.0'
__all__ = [
    'KeyModelMapping', 'KeyModelPathMapping', 'KeyedModelHandler',
    'MaybeKeyedModelHandler', 'ModelHandler', 'ModelMetadata',
    'PredictionResult', 'RunInference', 'RunInferenceDLQ'
]


def __getattr__(name: str):
  if name in __all__:
    value = getattr(importlib.import_module('.base', __name__), name)
    globals()[name] = value
    return value
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


def __dir__() -> list:
  return sorted(set(globals()) | set(__all__))
