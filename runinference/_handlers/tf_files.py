"""TensorFlow for the TensorFlow handlers: the lazy import, and what is at a
model path (through ``tf.io.gfile``, so gs:// and other TF filesystems work)."""
from __future__ import annotations

import os
from typing import Any, Optional

from .common import require


def tf(who: str = 'The TensorFlow handlers') -> Any:
  """The ``tensorflow`` module, or MissingDependencyError saying what to
  install."""
  return require('tensorflow', who)


def is_saved_model_dir(tf_module: Any, uri: str) -> bool:
  """Whether ``uri`` is a SavedModel directory (holds saved_model.pb)."""
  try:
    return tf_module.io.gfile.isdir(uri) and (
        tf_module.io.gfile.exists(os.path.join(uri, 'saved_model.pb')) or
        tf_module.io.gfile.exists(os.path.join(uri, 'saved_model.pbtxt')))
  except Exception:  # pylint: disable=broad-except  # unknown scheme
    return False


def exists(tf_module: Any, uri: str) -> Optional[bool]:
  """Whether ``uri`` exists; None if TensorFlow cannot tell."""
  try:
    return tf_module.io.gfile.exists(uri)
  except Exception:  # pylint: disable=broad-except
    return None
