"""Bad YAML gets a message naming the field, its path and (from a file) its
line."""
import pytest
import yaml

from runinference.yaml import RunInference, YamlConfigError
from runinference.yaml.check import YamlFileError, check_pipeline

pytest.importorskip('sklearn')
from apache_beam.yaml.yaml_utils import SafeLineLoader  # noqa: E402


def sk(config='model_uri: m.pkl'):
  return {'type': 'SklearnModelHandlerNumpy', 'config': yaml.safe_load(config)}


def error_of(**config) -> YamlConfigError:
  with pytest.raises(YamlConfigError) as e:
    RunInference(**config)
  return e.value


@pytest.mark.parametrize('config, path, words', [
    (dict(model_handler=sk('model_url: m.pkl')),
     'model_handler.config.model_url', ["did you mean 'model_uri'"]),
    (dict(model_handler=sk('{}')), 'model_handler.config.model_uri',
     ['required']),
    (dict(model_handler={'config': {}}), 'model_handler.type', ['required']),
    (dict(model_handler={'type': 'SklearnModelHandlerNumpyy'}),
     'model_handler.type', ['unknown model handler type',
                            'SklearnModelHandlerNumpy']),
    (dict(model_handler={'type': 'no.such.Handler'}), 'model_handler.type',
     ['cannot import']),
    (dict(model_handler={'type': 'collections.OrderedDict'}),
     'model_handler.type', ['not a ModelHandler']),
    (dict(model_handler=sk('{model_uri: m.pkl, preprocess: {expression: "[value"}}')),
     'model_handler.config.preprocess.expression', ['not valid Python']),
    (dict(model_handler=sk('{model_uri: m.pkl, preprocess: {callable: "x"}}')),
     'model_handler.config.preprocess.callable', []),
    (dict(model_handler=sk('{model_uri: m.pkl, preprocess: {expression: a, callable: b}}')),
     'model_handler.config.preprocess', ['exactly one']),
    (dict(model_handler=sk('{model_uri: m.pkl, preprocess: {path: /no/such.py, name: f}}')),
     'model_handler.config.preprocess.path', ['cannot read']),
    (dict(model_handler=sk('{model_uri: m.pkl, preprocess: [value]}')),
     'model_handler.config.preprocess', ['must be a mapping']),
    (dict(model_handler=sk(), inference_tag='not a name'), 'inference_tag',
     ['field name']),
    (dict(model_handler=sk(), error_handling={'outptu': 'x'}),
     'error_handling.outptu', ["did you mean 'output'"]),
    (dict(model_handler=sk(), error_handling={}), 'error_handling.output',
     ['required']),
    (dict(model_handler=sk(), key='k'), 'model_handler', ['list']),
    (dict(model_handler=[{'type': 'SklearnModelHandlerNumpy',
                          'config': {'model_uri': 'm'}}], key='k'),
     'model_handler[0].keys', ['required']),
    (dict(model_handler=sk(), batch_size=3), 'batch_size',
     ['unknown field', 'model_handler']),
    (dict(), 'model_handler', ['required']),
])
def test_message_names_the_field(config, path, words):
  err = error_of(**config)
  assert str(err).startswith(path + ':'), str(err)
  for w in words:
    assert w in str(err), str(err)


def test_enum_fields_take_names():
  from runinference.sklearn_inference import ModelFileType
  t = RunInference(model_handler=sk('{model_uri: m.pkl, model_file_type: JOBLIB}'))
  assert t is not None
  err = error_of(model_handler=sk('{model_uri: m.pkl, model_file_type: ZIP}'))
  assert 'model_handler.config.model_file_type' in str(err)
  assert ModelFileType.JOBLIB.name in str(err)


PIPELINE = '''\
pipeline:
  transforms:
    - type: Create
      config:
        elements: [{value: 1}]
    - type: RunInference
      input: Create
      config:
        model_handler:
          type: SklearnModelHandlerNumpy
          config:
            model_uri: m.pkl
            batch_sise: 3
'''


def test_file_check_gives_file_line_and_full_path():
  spec = yaml.load(PIPELINE, Loader=SafeLineLoader)
  with pytest.raises(YamlFileError) as e:
    check_pipeline(spec, 'p.yaml')
  line = PIPELINE.splitlines().index('            batch_sise: 3') + 1
  assert e.value.line == line
  assert str(e.value).startswith(
      f'p.yaml:{line}: pipeline.transforms[1].config.model_handler.config.'
      'batch_sise: ')
  assert 'max_batch_size' in str(e.value)


def test_file_check_finds_nested_composites():
  text = PIPELINE.replace('pipeline:\n  transforms:',
                          'pipeline:\n  transforms:\n    - type: composite\n'
                          '      transforms:').replace('\n    - type: Create',
                                                       '\n    - type: Create', 1)
  spec = yaml.load(PIPELINE, Loader=SafeLineLoader)
  spec['pipeline']['transforms'] = [{'type': 'composite',
                                     'transforms': spec['pipeline']['transforms']}]
  with pytest.raises(YamlFileError) as e:
    check_pipeline(spec, 'p.yaml')
  assert 'pipeline.transforms[0].transforms[1].config' in str(e.value)
  assert text  # the composite form is also valid YAML


def test_good_file_passes_the_check():
  spec = yaml.load(PIPELINE.replace('            batch_sise: 3\n', ''),
                   Loader=SafeLineLoader)
  check_pipeline(spec, 'p.yaml')


def test_key_must_be_a_field_of_the_rows(tmp_path):
  from tests.yaml_helpers import run_yaml, sklearn_linear
  model = sklearn_linear(tmp_path / 'five.pkl')
  with pytest.raises(Exception, match=r"key: no field 'table'"):
    run_yaml(f'''
- type: Create
  config:
    elements: [{{value: 1.0}}]
- type: RunInference
  input: Create
  config:
    key: table
    model_handler:
      - keys: [five]
        type: SklearnModelHandlerNumpy
        config: {{model_uri: {model}}}
''', {}, {'out': 'RunInference'})
