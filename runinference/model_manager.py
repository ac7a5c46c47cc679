"""The central model manager: models held under a host-memory budget per
process (``RunInference(..., use_model_manager=True,
model_manager_args={...})``). ``ModelManager`` takes Beam's option names;
Beam 2.77's GPU manager parts (``GPUMonitor``, ``ResourceEstimator``) are not
mirrored -- a declared gap (tests/package/test_drop_in_names.py,
benchmarks/compat_known_gaps.py)."""
from ._core.model_manager import (ModelManager, ModelTooLargeError,
                                  process_model_manager)
from ._core.naming import relabel

__all__ = ['ModelManager', 'ModelTooLargeError', 'process_model_manager']

relabel(globals())
