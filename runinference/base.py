"""Public core API, import-compatible with ``apache_beam.ml.inference.base``."""
from ._core.contract import (ModelHandler, _PostProcessingModelHandler,
                             _PrebatchedModelHandler,
                             _PreProcessingModelHandler)
from ._core.beam_internals import (_ModelHandlerManager, _ModelStatus,
                                   load_model_status)
from ._core.failures import is_pickling_error as _is_pickling_error
from ._core.naming import relabel
from ._handlers.remote import RateLimiter, RateLimitExceeded, RemoteModelHandler
from ._core.keyed import (KeyedModelHandler, KeyModelMapping,
                          MaybeKeyedModelHandler, SingleModelKeyedHandler)
from ._core.keyed_multi import MultiModelKeyedHandler
from ._core.transform import RunInference
from ._core.types import (KeyModelPathMapping, ModelMetadata, PredictionResult,
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

# The two forms KeyedModelHandler(...) builds are pickled by this path too.
relabel(globals(), SingleModelKeyedHandler, MultiModelKeyedHandler)
