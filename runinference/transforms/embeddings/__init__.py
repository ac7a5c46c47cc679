"""Embedding steps for ``MLTransform`` (``huggingface``: sentence-transformers
and the Hugging Face Inference API)."""
