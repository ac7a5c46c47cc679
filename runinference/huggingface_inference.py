"""Hugging Face handlers, import-compatible with
``apache_beam.ml.inference.huggingface_inference``.

This module is the implementation module itself (``runinference._handlers.huggingface``)
under its public name, so patching one of its attributes patches the code
that runs."""
import sys

from ._handlers import huggingface as _impl

sys.modules[__name__] = _impl
