"""``runinference inspect MODEL_PATH``: which handler fits a model file, and
its input/output signature where the framework records one.

Pickles are loaded to be inspected: only inspect files you trust (as with
any pickle)."""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from typing import Any, Callable

from ..exceptions import InspectError  # noqa: F401  (re-exported)


HELP = 'which handler fits a model file, and its signature'
DESCRIPTION = None


def add_arguments(insp) -> None:
  insp.add_argument('model_path', help='a model file or directory')
  insp.add_argument('--json', action='store_true',
                    help='print one JSON object (path, framework, handler, '
                    'config, inputs, outputs, notes)')


def plain(value: Any) -> Any:
  """numpy scalars and arrays, tuples... as plain Python values, so that
  printed values read ``[0, 1]`` and not ``[np.int64(0), np.int64(1)]``."""
  if isinstance(value, dict):
    return {str(k): plain(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [plain(v) for v in value]
  if hasattr(value, 'tolist'):  # numpy arrays and scalars
    return plain(value.tolist())
  if hasattr(value, 'item') and callable(value.item):
    try:
      return value.item()
    except (TypeError, ValueError):
      pass
  return value


@dataclasses.dataclass
class ModelInfo:
  """What ``inspect`` found out about a model file."""
  path: str
  framework: str
  handler: str
  config: dict[str, Any]
  inputs: list[str] = dataclasses.field(default_factory=list)
  outputs: list[str] = dataclasses.field(default_factory=list)
  notes: list[str] = dataclasses.field(default_factory=list)

  def to_yaml(self) -> str:
    """A ``model_handler`` block for a Beam YAML pipeline."""
    import yaml
    return yaml.safe_dump({'model_handler': {'type': self.handler,
                                             'config': self.config}},
                          sort_keys=False)


def _sklearn(path: str) -> ModelInfo:
  import pickle
  try:
    import joblib
    model = joblib.load(path)
  except ImportError:
    with open(path, 'rb') as f:
      model = pickle.load(f)
  return _describe_estimator(path, model, {'model_uri': path})


def _skops(path: str) -> ModelInfo:
  """A skops file: its types are listed without loading it, then it is
  loaded trusting only what it declares (it holds data, not code)."""
  from skops.io import get_untrusted_types, load
  untrusted = get_untrusted_types(file=path)
  model = load(path, trusted=untrusted)
  config = {'model_uri': path}
  if untrusted:
    config['trusted_types'] = list(untrusted)
  info = _describe_estimator(path, model, config)
  if untrusted:
    info.notes.append('types outside skops\'s default trusted set, listed '
                      'in trusted_types: check them before trusting them')
  return info


def _describe_estimator(path: str, model, config: dict) -> ModelInfo:
  names = getattr(model, 'feature_names_in_', None)
  n = getattr(model, 'n_features_in_', None)
  handler = 'SklearnModelHandlerPandas' if names is not None else \
      'SklearnModelHandlerNumpy'
  info = ModelInfo(path, 'scikit-learn', handler, config,
                   notes=[f'estimator: {type(model).__module__}.'
                          f'{type(model).__name__}'])
  if names is not None:
    info.inputs = [f'DataFrame columns {plain(list(names))}']
  elif n is not None:
    info.inputs = [f'float vector of {n} features']
  if hasattr(model, 'classes_'):
    info.outputs = [f'class label, one of {plain(list(model.classes_)[:10])}'
                    + (' (predict_proba: one probability per class)'
                       if hasattr(model, 'predict_proba') else '')]
  elif hasattr(model, 'predict'):
    info.outputs = ['predict() value per example']
  return info


def _onnx(path: str) -> ModelInfo:
  import onnxruntime as ort
  session = ort.InferenceSession(path, providers=['CPUExecutionProvider'])

  def fmt(arg):
    return f'{arg.name}: {arg.type} {arg.shape}'
  return ModelInfo(path, 'onnx', 'OnnxModelHandlerNumpy', {'model_uri': path},
                   [fmt(a) for a in session.get_inputs()],
                   [fmt(a) for a in session.get_outputs()])


def _torch(path: str) -> ModelInfo:
  import torch
  try:
    module = torch.jit.load(path, map_location='cpu')
  except Exception:  # not TorchScript: a state dict (or a pickled module)
    module = None
  if module is not None:
    schema = getattr(module.forward, 'schema', None)
    args = [f'{a.name}: {a.type}' for a in schema.arguments[1:]] if schema \
        else []
    outs = [str(r.type) for r in schema.returns] if schema else []
    return ModelInfo(path, 'pytorch', 'PytorchModelHandlerTensor',
                     {'torch_script_model_path': path}, args, outs,
                     ['TorchScript module: no model_class needed'])
  state = torch.load(path, map_location='cpu', weights_only=True)
  if not isinstance(state, dict):
    raise InspectError(f'{path}: a torch file but not a state dict or '
                       'TorchScript module')
  shapes = {k: tuple(v.shape) for k, v in state.items()
            if hasattr(v, 'shape')}
  first = next((s for k, s in shapes.items() if k.endswith('weight')), None)
  last = next((s for k, s in reversed(shapes.items())
               if k.endswith('weight')), None)
  info = ModelInfo(
      path, 'pytorch', 'PytorchModelHandlerTensor',
      {'state_dict_path': path, 'model_class': '<your torch.nn.Module class>',
       'model_params': {}},
      notes=['a state dict: the model_class that built it is needed'] +
      [f'{k}: {s}' for k, s in list(shapes.items())[:12]])
  if first and len(first) == 2:
    info.inputs = [f'float tensor of {first[1]} features (first layer)']
  if last and len(last) == 2:
    info.outputs = [f'tensor of {last[0]} values (last layer)']
  return info


def _safetensors(path: str) -> ModelInfo:
  """Tensor names, shapes and dtypes from the header (no tensor is read)."""
  from safetensors import safe_open
  with safe_open(path, framework='numpy') as f:
    names = list(f.keys())
    shapes = {}
    for name in names:
      part = f.get_slice(name)
      shapes[name] = (list(part.get_shape()), str(part.get_dtype()))
    meta = f.metadata() or {}
  weights = [s for k, (s, _) in shapes.items() if k.endswith('weight')]
  info = ModelInfo(
      path, 'pytorch', 'PytorchModelHandlerTensor',
      {'state_dict_path': path, 'model_class': '<your torch.nn.Module class>',
       'model_params': {}},
      notes=['safetensors weights: the model_class that built them is needed',
             f'{len(names)} tensors'] +
      [f'{k}: {s} {d}' for k, (s, d) in list(shapes.items())[:12]] +
      [f'metadata {k}: {v}' for k, v in list(meta.items())[:5]])
  if weights and len(weights[0]) == 2:
    info.inputs = [f'float tensor of {weights[0][1]} features (first layer)']
  if weights and len(weights[-1]) == 2:
    info.outputs = [f'tensor of {weights[-1][0]} values (last layer)']
  return info


def _xgboost(path: str) -> ModelInfo:
  import xgboost
  booster = xgboost.Booster(model_file=path)
  config = json.loads(booster.save_config())
  objective = config['learner']['objective']['name']
  cls = 'XGBClassifier' if objective.startswith(('binary', 'multi')) else \
      'XGBRegressor'
  names = booster.feature_names
  return ModelInfo(
      path, 'xgboost', 'XGBoostModelHandlerNumpy',
      {'model_class': f'xgboost.{cls}', 'model_state': path},
      [f'{booster.num_features()} features' +
       (f': {names}' if names else '')], [f'objective {objective}'])


def _huggingface(path: str) -> ModelInfo:
  with open(os.path.join(path, 'config.json')) as f:
    config = json.load(f)
  arch = (config.get('architectures') or ['?'])[0]
  sentence = os.path.exists(os.path.join(path, 'modules.json'))
  task = 'feature-extraction' if sentence or arch.endswith('Model') else None
  info = ModelInfo(
      path, 'huggingface', 'HuggingFacePipelineModelHandler',
      {'model': path, **({'task': task} if task else {})},
      ['text (str)'],
      [f'hidden size {config.get("hidden_size", "?")}'],
      [f'architecture {arch}, model_type {config.get("model_type")}'] +
      (['sentence-transformers model: mean-pool the token embeddings'
        ' (postprocess) for sentence vectors'] if sentence else []) +
      ['for batches of token tensors use HuggingFaceModelHandlerKeyedTensor'])
  return info


def _tensorflow(path: str) -> ModelInfo:
  return ModelInfo(path, 'tensorflow', 'TFModelHandlerNumpy',
                   {'model_uri': path},
                   notes=['signature: load it with tf.saved_model.load / '
                          'keras to see the serving signature'])


_BY_EXTENSION: dict[str, Callable[[str], ModelInfo]] = {
    '.pkl': _sklearn, '.pickle': _sklearn, '.joblib': _sklearn,
    '.onnx': _onnx, '.pt': _torch, '.pth': _torch,
    '.json': _xgboost, '.ubj': _xgboost, '.bst': _xgboost,
    '.keras': _tensorflow, '.h5': _tensorflow,
    '.skops': _skops, '.safetensors': _safetensors,
}


def inspect_model(path: str) -> ModelInfo:
  """Finds the handler for ``path`` and what the file says about its
  inputs and outputs."""
  if not os.path.exists(path):
    raise InspectError(f'{path}: no such file or directory')
  if os.path.isdir(path):
    if os.path.exists(os.path.join(path, 'config.json')):
      return _huggingface(path)
    if os.path.exists(os.path.join(path, 'saved_model.pb')):
      return _tensorflow(path)
    raise InspectError(f'{path}: a directory with neither config.json '
                       '(Hugging Face) nor saved_model.pb (TensorFlow)')
  ext = os.path.splitext(path)[1].lower()
  reader = _BY_EXTENSION.get(ext)
  if reader is None:
    raise InspectError(
        f'{path}: unknown model file type {ext!r}; known: '
        f'{sorted(_BY_EXTENSION)}, Hugging Face / SavedModel directories')
  try:
    return reader(path)
  except ImportError as e:
    raise InspectError(f'{path}: needs {e.name or e} to inspect: install '
                       'the matching runinference extra') from e


def _print(info: ModelInfo) -> None:
  print(f'{info.path}\n  framework: {info.framework}\n  handler:   '
        f'{info.handler}')
  for label, items in (('inputs', info.inputs), ('outputs', info.outputs),
                       ('notes', info.notes)):
    items = [i for i in items if i]
    if items:
      print(f'  {label}:')
      for i in items:
        print(f'    - {i}')
  print('\nIn a Beam YAML RunInference config:\n')
  print('  ' + info.to_yaml().replace('\n', '\n  ').rstrip())


def command(args: argparse.Namespace, rest=()) -> int:
  if rest:
    print(f'runinference inspect: unrecognized arguments: {" ".join(rest)}',
          file=sys.stderr)
    return 2
  from runinference.exceptions import RunInferenceError
  try:
    info = inspect_model(args.model_path)
  except InspectError as e:
    print(f'runinference: {e}', file=sys.stderr)
    return 2
  except RunInferenceError as e:  # e.g. a skops file with unsafe types
    print(f'runinference: {args.model_path}: {e}', file=sys.stderr)
    return 2
  except Exception as e:  # the framework could not read the file
    print(f'runinference: {args.model_path}: cannot be read as a '
          f'{type(e).__module__.split(".")[0]} model: {e}', file=sys.stderr)
    return 2
  if args.json:
    print(json.dumps(plain(dataclasses.asdict(info)), indent=2, default=str))
  else:
    _print(info)
  return 0


def inspect_command(args: argparse.Namespace) -> int:
  return command(args)
