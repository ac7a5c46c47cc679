"""runinference: ML model inference in Apache Beam pipelines.

A drop-in for ``apache_beam.ml.inference``: swap the import prefix.
"""
from .base import (KeyedModelHandler, KeyModelMapping, KeyModelPathMapping,
                   MaybeKeyedModelHandler, ModelHandler, ModelMetadata,
                   PredictionResult, RunInference, RunInferenceDLQ)

__version__ = '0.1.0'
__all__ = [
    'KeyModelMapping', 'KeyModelPathMapping', 'KeyedModelHandler',
    'MaybeKeyedModelHandler', 'ModelHandler', 'ModelMetadata',
    'PredictionResult', 'RunInference', 'RunInferenceDLQ'
]
