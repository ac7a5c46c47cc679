"""Model evaluation and validation inside a Beam pipeline.

``EvaluateModel`` computes metrics per model and per slice with mergeable,
vectorised combiners, optionally with Poisson-bootstrap intervals, and checks
value and change thresholds into a ``ValidationResult``. ``ModelValidation``
is the same check on a held-out sample, for ``RunInference(...,
model_validation=...)``: a new model from a watched pattern is swapped in only
if it passes. See docs/evaluation.md.
"""
from .._core.naming import relabel
from ._blocks import Block
from ._contract import Metric, MetricCombiner
from ._gate import ModelValidation
from ._local import evaluate_blocks
from ._registry import METRIC_NAMES, PRESETS
from ._slicing import Bucket, SliceSpec
from ._thresholds import (ChangeThreshold, SliceMetrics, ThresholdFailure,
                          ValidationResult, ValueThreshold)
from ._transform import EvaluateModel
from ._artifacts import WriteEvaluation, write_duckdb, write_json
from ._html import render_html, write_html

__all__ = [
    'Block', 'Bucket', 'ChangeThreshold', 'EvaluateModel', 'METRIC_NAMES',
    'Metric', 'MetricCombiner', 'ModelValidation', 'PRESETS', 'SliceMetrics',
    'SliceSpec', 'ThresholdFailure', 'ValidationResult', 'ValueThreshold',
    'WriteEvaluation', 'evaluate_blocks', 'render_html', 'write_duckdb',
    'write_html', 'write_json',
]

relabel(globals())
