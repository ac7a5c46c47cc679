"""Data preparation for training, import-compatible with
``apache_beam.ml.transforms`` (``MLTransform``) and free of TensorFlow.

Modules: ``base`` (``MLTransform``, ``ArtifactMode``, provider base classes),
``tft`` (column transforms computed with numpy and Beam combiners),
``handlers`` (``TFTProcessHandler``) and ``embeddings.huggingface``.
Nothing heavy is imported here.
"""
