"""Pins the drop-in surface: every name Beam's own tests import or read from
``apache_beam.ml.inference.<module>`` -- private ones included -- exists in
``runinference.<module>``, for the modules the compatibility suite runs.

The names are read from the test files Beam ships (site-packages), so a new
Beam release that relies on a new name fails here first.
"""
from __future__ import annotations

import ast
import importlib
import pathlib

import apache_beam
import pytest

_INFERENCE = pathlib.Path(apache_beam.__file__).parent / 'ml' / 'inference'
_PREFIX = 'apache_beam.ml.inference'
# The test files benchmarks/compat.py runs with the prefix swapped.
COMPAT_FILES = (
    'base_test.py', 'utils_test.py', 'sklearn_inference_test.py',
    'pytorch_inference_test.py', 'onnx_inference_test.py',
    'tensorflow_inference_test.py', 'xgboost_inference_test.py',
    'huggingface_inference_test.py', 'model_manager_test.py',
    'vllm_inference_test.py', 'vertex_ai_inference_test.py',
    'tensorrt_inference_test.py')
# Names the compat suite uses that runinference deliberately lacks, and why
# (the same gaps are declared for `make compat` in
# benchmarks/compat_known_gaps.py).
_GPU_MANAGER = ('Beam\'s GPU model manager (nvidia-smi polling, NNLS cost '
                'estimates, wait-queue tickets, the wrapper routing calls '
                'through it); ours budgets host memory per process, see '
                'docs/performance.md')
_TRT = ('a private helper of the CUDA engine path; needs tensorrt and a GPU, '
        'neither installable here')
KNOWN_MISSING: dict[tuple[str, str], str] = {
    ('base', '_RunInferenceDoFn'):
        "Beam's one DoFn class, its constructor and its update_model method: "
        'runinference runs RunInference as an InferenceEngine inside '
        'GlobalBatchDoFn / WindowedBatchDoFn / SideInputDoFn (docs/'
        'architecture.md); the Beam 2.78 tests that build or patch that '
        'class test its internals',
    ('base', '_SharedModelWrapper'): _GPU_MANAGER,
    ('model_manager', 'QueueTicket'): _GPU_MANAGER,
    ('model_manager', 'GPUMonitor'): _GPU_MANAGER,
    ('model_manager', 'ResourceEstimator'): _GPU_MANAGER,
    ('tensorrt_inference', '_assign_or_fail'): _TRT,
    ('tensorrt_inference', '_check_trt_version'): _TRT,
    ('tensorrt_inference', '_import_cuda_driver'): _TRT,
    ('vertex_ai_inference', '_retry_on_appropriate_gcp_error'):
        'ours retries by HTTP status (429, 5xx) without the GCP client '
        'library; the predicate over google.api_core errors is not mirrored',
    ('vllm_inference', 'getVLLMClient'):
        'ours starts `vllm serve` through ServerProcess and talks HTTP; '
        'Beam\'s openai-client factory and Dynamo orchestration are not '
        'mirrored',
}


def _names_used(path: pathlib.Path) -> set[tuple[str, str]]:
  """``(module, name)`` for each ``from apache_beam.ml.inference.M import n``
  and each ``M.n`` read through ``from apache_beam.ml.inference import M``."""
  tree = ast.parse(path.read_text())
  used: set[tuple[str, str]] = set()
  aliases: dict[str, str] = {}
  for node in ast.walk(tree):
    if isinstance(node, ast.ImportFrom) and node.module:
      if node.module.startswith(_PREFIX + '.'):
        module = node.module[len(_PREFIX) + 1:]
        used.update((module, a.name) for a in node.names)
      elif node.module == _PREFIX:
        for a in node.names:
          aliases[a.asname or a.name] = a.name
  for node in ast.walk(tree):
    if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and
        node.value.id in aliases):
      used.add((aliases[node.value.id], node.attr))
  return {(m, n) for m, n in used if not m.endswith('_test')}


def _pairs():
  pairs = set()
  for name in COMPAT_FILES:
    path = _INFERENCE / name
    if path.exists():
      pairs |= _names_used(path)
  return sorted(pairs)


def test_the_scan_finds_names():
  pairs = _pairs()
  assert ('base', 'RunInference') in pairs
  assert len({m for m, _ in pairs}) >= 5


@pytest.mark.parametrize('module,name', _pairs())
def test_name_exists(module, name):
  mod = importlib.import_module(f'runinference.{module}')
  if (module, name) in KNOWN_MISSING:  # strict: a declared gap stays a gap
    assert not hasattr(mod, name), (
        f'runinference.{module}.{name} exists now: remove it from '
        'KNOWN_MISSING (and benchmarks/compat_known_gaps.py)')
    return
  assert hasattr(mod, name), (
      f'runinference.{module} lacks {name!r}, which Beam\'s tests use')


@pytest.mark.parametrize('module', [
    'sklearn_inference', 'pytorch_inference', 'onnx_inference',
    'tensorflow_inference', 'xgboost_inference', 'huggingface_inference',
    'tensorrt_inference'
])
def test_framework_facade_is_the_running_module(module):
  """Beam's tests patch module attributes (``pytorch_inference._load_model =
  ...``); the facade is the implementation module, so the patch lands."""
  public = importlib.import_module(f'runinference.{module}')
  for name in public.__all__:
    obj = getattr(public, name)
    if isinstance(obj, type) or callable(obj):
      impl = importlib.import_module(getattr(obj, '__module__'))
      assert impl is public, (module, name)
