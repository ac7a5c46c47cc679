"""Public core API, import-compatible with ``apache_beam.ml.inference.base``."""
from ._handler import ModelHandler
from ._remote import RateLimiter, RateLimitExceeded, RemoteModelHandler
from ._keyed import KeyedModelHandler, KeyModelMapping, MaybeKeyedModelHandler
from ._transform import RunInference
from ._types import (KeyModelPathMapping, ModelMetadata, PredictionResult,
                     RunInferenceDLQ)

__all__ = [
    'KeyModelMapping',
    'KeyModelPathMapping',
    'KeyedModelHandler',
    'MaybeKeyedModelHandler',
    'ModelHandler',
    'ModelMetadata',
    'PredictionResult',
    'RateLimitExceeded',
    'RateLimiter',
    'RemoteModelHandler',
    'RunInference',
    'RunInferenceDLQ',
]
