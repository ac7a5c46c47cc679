"""The central model manager, import-compatible with
``apache_beam.ml.inference.model_manager``: models held under a memory
budget per process (``RunInference(..., use_model_manager=True,
model_manager_args={...})``)."""
from ._core.model_manager import ModelManager, ModelTooLargeError
from ._core.model_manager import manager_for as process_model_manager
from ._core.naming import label

label(__name__, ModelManager)

__all__ = ['ModelManager', 'ModelTooLargeError', 'process_model_manager']
