"""Data preparation for training, import-compatible with
``apache_beam.ml.transforms`` (``MLTransform``) and free of TensorFlow.

Modules: ``base`` (``MLTransform``, ``ArtifactMode``, provider base classes),
``tft`` (column transforms computed with numpy and Beam combiners),
``handlers`` (``TFTProcessHandler``) and ``embeddings.huggingface``;
``register_artifact_class`` lets artifacts name your own classes and functions
(docs/security.md). Nothing heavy is imported here.
"""
from .._core.naming import relabel
from ._registry import register_artifact_class

__all__ = ['register_artifact_class']

relabel(globals())
