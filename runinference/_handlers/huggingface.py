"""Hugging Face handlers: models on (keyed) tensors, and ``transformers``
pipelines on raw inputs. ``runinference.huggingface_inference`` is this
module.

Import-compatible with ``apache_beam.ml.inference.huggingface_inference``,
but works with current ``transformers`` (5.x) and never imports TensorFlow:
``transformers`` and ``torch`` are imported when a model loads. TensorFlow
tensors are still accepted by the tensor handlers (with a TF model and an
older ``transformers``) if TensorFlow is installed.

Variable-length text: tokenize each example without padding (``Tokenize``);
within a batch the handlers run examples shortest first, in sub-batches of at
most ``max_tokens_per_batch`` padded tokens, pad each sub-batch only to its
own longest example (with an attention mask) and trim token-level outputs
back to each example's length, so results do not depend on what an example
was batched with. The parts live in ``hf_tensors``, ``hf_pipeline``,
``hf_tokenize``, ``hf_text`` and ``hf_stacking``.
"""
from .._core.naming import publish
from .hf_pipeline import (HuggingFacePipelineModelHandler, PipelineTask,
                          _default_pipeline_inference_fn)
from .hf_tensors import (HuggingFaceModelHandlerKeyedTensor,
                         HuggingFaceModelHandlerTensor,
                         _default_inference_fn_tensorflow,
                         _default_inference_fn_torch,
                         _is_tensorflow_tensor,
                         _run_inference_tensorflow_keyed_tensor,
                         _run_inference_torch_keyed_tensor)
from .hf_tokenize import Tokenize, input_length

__all__ = [
    'HuggingFaceModelHandlerKeyedTensor',
    'HuggingFaceModelHandlerTensor',
    'HuggingFacePipelineModelHandler',
    'PipelineTask',
    'Tokenize',
    'input_length',
]
_PRIVATE_NAMES = (  # Beam's module has these; its users' code may read them.
    _default_pipeline_inference_fn, _default_inference_fn_tensorflow,
    _default_inference_fn_torch, _run_inference_tensorflow_keyed_tensor,
    _run_inference_torch_keyed_tensor, _is_tensorflow_tensor)

publish(globals(), 'runinference.huggingface_inference', alias=True)
