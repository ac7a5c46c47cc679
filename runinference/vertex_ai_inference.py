"""Vertex AI handler, import-compatible with
``apache_beam.ml.inference.vertex_ai_inference``.

This module is the implementation module itself
(``runinference._handlers.vertex_ai``) under its public name, so patching one
of its attributes patches the code that runs."""
import sys

from ._handlers import vertex_ai as _impl

sys.modules[__name__] = _impl
