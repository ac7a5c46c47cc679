"""Column transforms for ``MLTransform``, import-compatible with
``apache_beam.ml.transforms.tft`` but computed with numpy and Beam combiners
(no TensorFlow). Each returns a configured operation; the work happens when
the pipeline runs. Outputs are numpy arrays per column: float32 for scaled
values, int64 for indices/buckets, object arrays of bytes for text.
"""
from .._core.naming import relabel
from ._tft_base import (_EXPECTED_TYPES, TFTOperation, analyzer_key,
                        register_input_dtype)
from ._tft_numeric import (ApplyBuckets, ApplyBucketsWithInterpolation,
                           Bucketize, ScaleByMinMax, ScaleTo01,
                           ScaleToGaussian, ScaleToZScore)
from ._tft_text import (TFIDF, BagOfWords, ComputeAndApplyVocabulary,
                        DeduplicateTensorPerRow, HashStrings, NGrams)

__all__ = [
    'ComputeAndApplyVocabulary', 'ScaleToZScore', 'ScaleTo01',
    'ScaleToGaussian', 'ApplyBuckets', 'ApplyBucketsWithInterpolation',
    'Bucketize', 'TFIDF', 'TFTOperation', 'ScaleByMinMax', 'NGrams',
    'BagOfWords', 'HashStrings', 'DeduplicateTensorPerRow'
]
_KEEP = (_EXPECTED_TYPES, analyzer_key, register_input_dtype)

# Saved artifacts name each class by its public module.
relabel(globals())
