"""Package-level guarantees."""
import subprocess
import sys

MODULES = [
    'runinference', 'runinference.base', 'runinference.utils',
    'runinference.report', 'runinference.sklearn_inference',
    'runinference.pytorch_inference', 'runinference.onnx_inference',
    'runinference.tensorflow_inference', 'runinference.xgboost_inference',
    'runinference.huggingface_inference', 'runinference.tensorrt_inference'
]


def test_never_imports_the_reference():
  code = (
      'import sys\n'
      f'for m in {MODULES!r}:\n'
      '  __import__(m)\n'
      'leaked = sorted(m for m in sys.modules if m.startswith("apache_beam.ml"))\n'
      'assert not leaked, leaked\n')
  subprocess.run([sys.executable, '-c', code], check=True, timeout=300)


def test_drop_in_names():
  import runinference
  from runinference import base
  for name in ('RunInference', 'ModelHandler', 'KeyedModelHandler',
               'MaybeKeyedModelHandler', 'KeyModelMapping', 'PredictionResult',
               'ModelMetadata', 'RunInferenceDLQ', 'KeyModelPathMapping',
               'RemoteModelHandler'):
    assert hasattr(base, name), name
  assert runinference.RunInference is base.RunInference
