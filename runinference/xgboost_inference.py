"""XGBoost handlers, import-compatible with
``apache_beam.ml.inference.xgboost_inference``.

This module is the implementation module itself (``runinference._handlers.xgboost``)
under its public name, so patching one of its attributes patches the code
that runs."""
import sys

from ._handlers import xgboost as _impl

sys.modules[__name__] = _impl
