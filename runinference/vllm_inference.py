"""vLLM handlers, import-compatible with
``apache_beam.ml.inference.vllm_inference``.

This module is the implementation module itself (``runinference._handlers.vllm``)
under its public name, so patching one of its attributes patches the code
that runs."""
import sys

from ._handlers import vllm as _impl

sys.modules[__name__] = _impl
