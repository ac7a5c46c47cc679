"""RunInference in Beam YAML with real tiny models: every framework, keyed
routes, YAML functions, dead letters through error_handling."""
import pickle

import numpy as np
import pytest

pytest.importorskip('yaml')
pytest.importorskip('sklearn')

from tests.yaml_helpers import rows_close, run_yaml, sklearn_linear, torch_linear  # noqa: E402

VALUES = [1.0, 2.0, 3.0, 7.0]
CREATE = '''
- type: Create
  config:
    elements: [{value: 1.0}, {value: 2.0}, {value: 3.0}, {value: 7.0}]
'''


def test_sklearn_expressions(tmp_path):
  model = sklearn_linear(tmp_path / 'five.pkl')
  run_yaml(CREATE + f'''
- type: RunInference
  input: Create
  config:
    model_handler:
      type: SklearnModelHandlerNumpy
      config:
        model_uri: {model}
        preprocess: {{expression: '[value]'}}
        postprocess: {{expression: 'float(inference)'}}
''', {'out': rows_close({v: 5 * v for v in VALUES})}, {'out': 'RunInference'})


def test_default_postprocess_is_the_prediction_result(tmp_path):
  model = sklearn_linear(tmp_path / 'five.pkl')

  def check(rows):
    assert len(rows) == 4
    for r in rows:
      assert type(r.inference).__name__ == 'PredictionResult'
      assert list(r.inference.example) == [r.value]
      assert abs(float(r.inference.inference) - 5 * r.value) < 1e-6
  run_yaml(CREATE + f'''
- type: RunInference
  input: Create
  config:
    inference_tag: pred
    model_handler:
      type: SklearnModelHandlerNumpy
      config: {{model_uri: {model}, preprocess: {{expression: '[value]'}}}}
- type: MapToFields
  input: RunInference
  config:
    language: python
    fields:
      value: value
      inference: pred
''', {'out': check}, {'out': 'MapToFields'})


def test_pytorch_state_dict_with_callables(tmp_path):
  pytest.importorskip('torch')
  model = torch_linear(tmp_path / 'five.pt')
  run_yaml(CREATE + f'''
- type: RunInference
  input: Create
  config:
    model_handler:
      type: PytorchModelHandlerTensor
      config:
        state_dict_path: {model}
        model_class: torch.nn.Linear
        model_params: {{in_features: 1, out_features: 1}}
        preprocess:
          callable: 'lambda row: [row.value]'
        postprocess:
          callable: |
            def scalar(result):
              return float(result.inference[0])
''', {'out': rows_close({v: 5 * v for v in VALUES})}, {'out': 'RunInference'})


def test_onnx_default_preprocess_uses_every_field(tmp_path):
  pytest.importorskip('onnxruntime')
  skl2onnx = pytest.importorskip('skl2onnx')
  from skl2onnx.common.data_types import FloatTensorType
  path = tmp_path / 'lin.pkl'
  sklearn_linear(path, coefs=(2.0, 3.0))
  with open(path, 'rb') as f:
    onx = skl2onnx.convert_sklearn(
        pickle.load(f), initial_types=[('x', FloatTensorType([None, 2]))])
  (tmp_path / 'lin.onnx').write_bytes(onx.SerializeToString())

  def check(rows):
    assert len(rows) == 3
    for r in rows:
      assert abs(r.y - (2 * r.a + 3 * r.b)) < 1e-3, r
  run_yaml(f'''
- type: Create
  config:
    elements: [{{a: 1.0, b: 2.0}}, {{a: 0.5, b: 0.0}}, {{a: 4.0, b: 1.0}}]
- type: RunInference
  input: Create
  config:
    inference_tag: y
    model_handler:
      type: OnnxModelHandlerNumpy
      config:
        model_uri: {tmp_path / 'lin.onnx'}
        postprocess: {{expression: 'float(np.ravel(inference)[0])'}}
''', {'out': check}, {'out': 'RunInference'})


def test_xgboost(tmp_path):
  xgboost = pytest.importorskip('xgboost')
  x = np.arange(0, 10, dtype=np.float32).reshape(-1, 1)
  model = xgboost.XGBRegressor(n_estimators=200, max_depth=3).fit(x, 5 * x.ravel())
  model.save_model(str(tmp_path / 'five.json'))
  run_yaml(CREATE + f'''
- type: RunInference
  input: Create
  config:
    model_handler:
      type: XGBoostModelHandlerNumpy
      config:
        model_class: xgboost.XGBRegressor
        model_state: {tmp_path / 'five.json'}
        preprocess: {{expression: '[value]'}}
        postprocess: {{expression: 'float(inference)'}}
''', {'out': rows_close({v: 5 * v for v in VALUES}, tol=0.02)},
           {'out': 'RunInference'})


def test_sklearn_pandas_default_preprocess(tmp_path):
  pytest.importorskip('pandas')
  model = sklearn_linear(tmp_path / 'f.pkl', coefs=(2.0, 3.0),
                         frame_columns=['a', 'b'])

  def check(rows):
    assert sorted(round(r.y, 6) for r in rows) == [8.0, 13.0]
  run_yaml(f'''
- type: Create
  config:
    elements: [{{a: 1.0, b: 2.0}}, {{a: 2.0, b: 3.0}}]
- type: RunInference
  input: Create
  config:
    inference_tag: y
    model_handler:
      type: SklearnModelHandlerPandas
      config:
        model_uri: {model}
        postprocess: {{expression: 'float(np.ravel(inference)[0])'}}
''', {'out': check}, {'out': 'RunInference'})


def test_keyed_routes_pick_the_model_by_field(tmp_path):
  five = sklearn_linear(tmp_path / 'five.pkl')
  ten = sklearn_linear(tmp_path / 'ten.pkl', coefs=(10.0,))

  def check(rows):
    assert len(rows) == 4
    for r in rows:
      factor = {'five': 5, 'ten': 10}[r.table]
      assert abs(r.inference - factor * r.value) < 1e-6, r
  run_yaml(f'''
- type: Create
  config:
    elements:
      - {{table: five, value: 1.0}}
      - {{table: ten, value: 1.0}}
      - {{table: ten, value: 4.0}}
      - {{table: five, value: 3.0}}
- type: RunInference
  input: Create
  config:
    key: table
    model_handler:
      - keys: [five]
        type: SklearnModelHandlerNumpy
        config: {{model_uri: {five}, preprocess: {{expression: '[value]'}},
                  postprocess: {{expression: 'float(inference)'}}}}
      - keys: [ten]
        type: SklearnModelHandlerNumpy
        config: {{model_uri: {ten}, preprocess: {{expression: '[value]'}},
                  postprocess: {{expression: 'float(inference)'}}}}
''', {'out': check}, {'out': 'RunInference'})


def test_function_from_a_file(tmp_path):
  model = sklearn_linear(tmp_path / 'five.pkl')
  (tmp_path / 'udfs.py').write_text(
      'import numpy\n\n'
      'def features(row):\n'
      '  return numpy.array([row.value * 2], dtype="float32")\n')
  run_yaml(CREATE + f'''
- type: RunInference
  input: Create
  config:
    model_handler:
      type: SklearnModelHandlerNumpy
      config:
        model_uri: {model}
        preprocess: {{path: {tmp_path / 'udfs.py'}, name: features}}
        postprocess: {{expression: 'float(inference)'}}
''', {'out': rows_close({v: 10 * v for v in VALUES})}, {'out': 'RunInference'})


def test_error_handling_sends_bad_rows_to_the_named_output(tmp_path):
  model = sklearn_linear(tmp_path / 'five.pkl')

  def good(rows):
    assert sorted(r.value for r in rows) == [1.0, 2.0, 4.0]
    for r in rows:
      assert abs(r.inference - 5 / r.value) < 1e-6

  def bad(rows):
    assert len(rows) == 1, rows
    assert rows[0].element.value == 0.0
    assert 'ZeroDivisionError' in rows[0].msg or 'division' in rows[0].msg
    assert 'Traceback' in rows[0].stack or rows[0].stack

  run_yaml(f'''
- type: Create
  config:
    elements: [{{value: 1.0}}, {{value: 0.0}}, {{value: 2.0}}, {{value: 4.0}}]
- type: RunInference
  input: Create
  config:
    model_handler:
      type: SklearnModelHandlerNumpy
      config:
        model_uri: {model}
        preprocess: {{expression: '[1 / value]'}}
        postprocess: {{expression: 'float(inference)'}}
    error_handling: {{output: failed}}
''', {'good': good, 'bad': bad},
           {'good': 'RunInference', 'bad': 'RunInference.failed'})


def test_custom_handler_by_qualified_name():
  run_yaml(CREATE + '''
- type: RunInference
  input: Create
  config:
    model_handler:
      type: tests.helpers.MultiplierHandler
      config:
        factor: 3
        preprocess: {expression: 'value'}
        postprocess: {expression: 'inference'}
''', {'out': rows_close({v: 3 * v for v in VALUES})}, {'out': 'RunInference'})


def test_mltransform_scales_columns(tmp_path):
  def check(rows):
    got = sorted(float(np.ravel(r.value)[0]) for r in rows)
    assert got == pytest.approx([0.0, 1 / 6, 2 / 6, 1.0])
  run_yaml(CREATE + f'''
- type: MLTransform
  input: Create
  config:
    write_artifact_location: {tmp_path / 'artifacts'}
    transforms:
      - type: ScaleTo01
        config: {{columns: [value]}}
''', {'out': check}, {'out': 'MLTransform'})


def test_mltransform_config_errors_name_the_field(tmp_path):
  from runinference.yaml import MLTransform, YamlConfigError
  with pytest.raises(YamlConfigError, match=r'^transforms\[0\]\.type: unknown'):
    MLTransform(write_artifact_location=str(tmp_path),
                transforms=[{'type': 'ScaleToOne', 'config': {}}])
  with pytest.raises(YamlConfigError,
                     match=r"^transforms\[0\]\.config\.column: unknown .*'columns'"):
    MLTransform(write_artifact_location=str(tmp_path),
                transforms=[{'type': 'ScaleTo01', 'config': {'column': ['x']}}])
  with pytest.raises(YamlConfigError, match='write_artifact_location'):
    MLTransform(transforms=[])


def test_yaml_reference_lists_every_handler():
  from pathlib import Path

  from runinference.yaml import known_handler_types
  doc = (Path(__file__).resolve().parents[2] / 'docs' / 'yaml.md').read_text()
  missing = [t for t in known_handler_types() if f'| `{t}` |' not in doc]
  assert not missing, f'docs/yaml.md lacks {missing}'


def test_default_preprocess_of_a_non_numeric_row_says_what_to_do(tmp_path):
  model = sklearn_linear(tmp_path / 'five.pkl')

  def bad(rows):
    assert len(rows) == 1
    assert 'give the handler a preprocess' in rows[0].msg, rows[0].msg
  run_yaml(f'''
- type: Create
  config:
    elements: [{{name: a}}]
- type: RunInference
  input: Create
  config:
    model_handler:
      type: SklearnModelHandlerNumpy
      config: {{model_uri: {model}}}
    error_handling: {{output: failed}}
''', {'bad': bad}, {'good': 'RunInference', 'bad': 'RunInference.failed'})


def test_inference_args_reach_every_model_call():
  run_yaml(CREATE + '''
- type: RunInference
  input: Create
  config:
    inference_args: {offset: 100}
    model_handler:
      type: tests.helpers.MultiplierHandler
      config:
        factor: 3
        preprocess: {expression: 'value'}
        postprocess: {expression: 'inference'}
''', {'out': rows_close({v: 3 * v + 100 for v in VALUES})},
           {'out': 'RunInference'})
