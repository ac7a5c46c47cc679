"""TensorFlow handlers, import-compatible with
``apache_beam.ml.inference.tensorflow_inference``.

This module is the implementation module itself (``runinference._handlers.tensorflow``)
under its public name, so patching one of its attributes patches the code
that runs."""
import sys

from ._handlers import tensorflow as _impl

sys.modules[__name__] = _impl
