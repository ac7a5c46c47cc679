"""MLTransform artifacts hold data only: class names resolve through a
registry (nothing named in them is imported), every file is pinned by a
SHA-256 manifest, and damage is a clear error while the pipeline is built."""
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import uuid

import apache_beam as beam
import numpy as np
import pytest

from runinference.transforms import _artifacts, register_artifact_class, tft
from runinference.transforms._errors import (ArtifactFormatError,
                                              ArtifactNotFoundError)
from runinference.transforms.base import MLTransform

from .mltransform_helpers import run

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ROWS = [{'x': float(i), 'text': t} for i, t in enumerate(
    ['red green', 'red blue', 'red teal', 'green cyan', 'blue red'])]
VOCAB_SIZE = 5  # red, green, blue, teal, cyan


@tft.register_input_dtype(float)
class AddConstant(tft.TFTOperation):
  """A custom column transform: x + amount, then ``fn`` when given."""
  def __init__(self, columns, amount=1.0, fn=None):
    super().__init__(columns)
    self.amount = amount
    self.fn = fn

  def apply_transform(self, data, output_column_name):
    out = np.asarray(data, dtype=np.float32) + np.float32(self.amount)
    return {output_column_name: self.fn(out) if self.fn else out}


@register_artifact_class(name='tests.artifacts.Negate')
@tft.register_input_dtype(float)
class Negate(tft.TFTOperation):
  def apply_transform(self, data, output_column_name):
    return {output_column_name: -np.asarray(data, dtype=np.float32)}


@register_artifact_class
def double(values):
  return values * 2


def triple(values):  # not registered
  return values * 3


# -- helpers -----------------------------------------------------------------


def _build(loc):
  """Applies a read-mode MLTransform to a pipeline without running it."""
  p = beam.Pipeline()
  _ = p | beam.Create(ROWS) | MLTransform(read_artifact_location=str(loc))


def _step_dir(loc):
  attrs = json.loads((loc / 'attributes.json').read_text())
  return loc / attrs['steps'][0]['dir']


def _vocab(loc):
  (path, ) = (_step_dir(loc) / 'transform_fn' / 'assets').iterdir()
  return path


def _manifest_of(loc, path):
  """The manifest recording ``path`` and the name it has there."""
  if path.parent == loc or path.name == 'transforms.json':
    return path.parent / 'manifest.json', path.name
  step = _step_dir(loc)
  return step / 'manifest_stage0.json', str(path.relative_to(step))


def _reseal(loc, path):
  """Re-records ``path`` in its manifest (attributes.json: its own digest),
  as someone editing both would."""
  if path == loc / 'attributes.json':
    body = json.loads(path.read_text())
    body.pop('sha256', None)
    canonical = json.dumps(body, sort_keys=True, separators=(',', ':')).encode()
    path.write_text(json.dumps({**body, 'sha256': hashlib.sha256(canonical).hexdigest()}))
    return
  manifest, rel = _manifest_of(loc, path)
  payload = json.loads(manifest.read_text())
  data = path.read_bytes()
  payload['files'][rel] = {'sha256': hashlib.sha256(data).hexdigest(),
                           'size': len(data)}
  manifest.write_text(json.dumps(payload))


def _edit_json(loc, path, edit, reseal=True):
  payload = json.loads(path.read_text())
  edit(payload)
  path.write_text(json.dumps(payload))
  if reseal:
    _reseal(loc, path)


@pytest.fixture(scope='module')
def written(tmp_path_factory):
  loc = tmp_path_factory.mktemp('template') / 'art'
  run(ROWS, MLTransform(write_artifact_location=str(loc), transforms=[
      tft.ScaleToZScore(columns=['x']),
      tft.ComputeAndApplyVocabulary(columns=['text'], split_string_by_delimiter=' ')]))
  return loc


@pytest.fixture
def loc(written, tmp_path):
  """A fresh copy of the written artifacts, free to damage."""
  dest = tmp_path / 'art'
  shutil.copytree(written, dest)
  return dest


# -- nothing named in an artifact is imported or run -------------------------


@pytest.mark.parametrize('where', ['transforms.json', 'attributes.json tft',
                                   'attributes.json provider'])
def test_a_class_naming_os_system_is_refused_and_never_runs(loc, tmp_path, where):
  marker = tmp_path / 'pwned'
  evil = {'class': 'os:system', 'args': [f'touch {marker}']}
  if where == 'transforms.json':
    _edit_json(loc, _step_dir(loc) / 'transforms.json',
               lambda p: p['transforms'].__setitem__(0, evil))
    entry = r'transforms\.json: transforms\[0\]\.class'
  elif where == 'attributes.json tft':
    _edit_json(loc, loc / 'attributes.json',
               lambda p: p['steps'][0]['transforms'].__setitem__(0, evil))
    entry = r'attributes\.json: steps\[0\]\.transforms\[0\]\.class'
  else:
    _edit_json(loc, loc / 'attributes.json',
               lambda p: p.__setitem__('steps', [{'kind': 'provider', 'transform': evil}]))
    entry = r'attributes\.json: steps\[0\]\.transform\.class'
  with pytest.raises(ArtifactFormatError,
                     match=entry + r" 'os:system' is not a registered MLTransform class; "
                     'register it with runinference.transforms.register_artifact_class'):
    run(ROWS, MLTransform(read_artifact_location=str(loc)))
  assert not marker.exists()


def test_an_edit_without_its_manifest_is_refused_before_decoding(loc, tmp_path):
  marker = tmp_path / 'pwned'
  path = _step_dir(loc) / 'transforms.json'
  _edit_json(loc, path, lambda p: p['transforms'].__setitem__(
      0, {'class': 'os:system', 'args': [f'touch {marker}']}), reseal=False)
  with pytest.raises(ArtifactFormatError, match=re.escape(f'{path} ') +
                     '(has changed|was truncated or changed) since it was written'):
    _build(loc)
  assert not marker.exists()


@pytest.mark.parametrize('value, entry, ref', [
    ({'ref': 'os:system'}, r'kwargs\.columns\.ref', 'os:system'),
    ({'ref': 'builtins:eval'}, r'kwargs\.columns\.ref', 'builtins:eval'),
    ({'tuple': [{'dict': {'f': {'ref': 'builtins:eval'}}}]},
     r'kwargs\.columns\.tuple\[0\]\.dict\.f\.ref', 'builtins:eval'),
])
def test_a_ref_to_an_unregistered_callable_is_refused(loc, value, entry, ref):
  path = _step_dir(loc) / 'transforms.json'
  _edit_json(loc, path, lambda p: p['transforms'][0]['kwargs'].__setitem__('columns', value))
  with pytest.raises(ArtifactFormatError,
                     match=rf"transforms\[0\]\.{entry} '{ref}' is not a registered "
                     'MLTransform class or function'):
    _build(loc)


def test_an_unregistered_class_is_refused_and_its_module_never_imported(
    loc, tmp_path, monkeypatch):
  name = f'artifact_payload_{uuid.uuid4().hex[:8]}'
  marker = tmp_path / 'imported'
  (tmp_path / f'{name}.py').write_text(textwrap.dedent(f'''
      open({str(marker)!r}, 'w').close()
      class Op:
        def __init__(self, *args, **kwargs):
          open({str(marker)!r} + '.built', 'w').close()
      '''))
  monkeypatch.syspath_prepend(str(tmp_path))
  _edit_json(loc, loc / 'attributes.json', lambda p: p.__setitem__(
      'steps', [{'kind': 'provider', 'transform': {'class': f'{name}:Op'}}]))
  with pytest.raises(ArtifactFormatError, match=f"steps\\[0\\].transform.class '{name}:Op' "
                     'is not a registered MLTransform class'):
    _build(loc)
  assert not marker.exists() and name not in sys.modules


def test_a_registered_function_that_is_not_a_step_cannot_be_a_class(loc):
  _edit_json(loc, loc / 'attributes.json', lambda p: p.__setitem__('steps', [{
      'kind': 'provider', 'transform': {
          'class': f'{__name__}:double', 'args': [1]}}]))
  with pytest.raises(ArtifactFormatError, match='is registered but is not an MLTransformProvider'):
    _build(loc)


def test_a_step_dir_outside_the_artifacts_is_refused(loc):
  _edit_json(loc, loc / 'attributes.json',
             lambda p: p['steps'][0].__setitem__('dir', '../elsewhere'))
  with pytest.raises(ArtifactFormatError, match=r'steps\[0\]: expected'):
    _build(loc)


# -- custom classes ------------------------------------------------------------


def test_custom_operations_and_registered_functions_round_trip(tmp_path):
  loc = tmp_path / 'art'
  ops = [AddConstant(columns=['x'], amount=2.5, fn=double), Negate(columns=['x'])]
  written = run(ROWS, MLTransform(write_artifact_location=str(loc), transforms=ops))
  attrs = json.loads((loc / 'attributes.json').read_text())
  saved = attrs['steps'][0]['transforms']
  assert saved[0]['class'] == f'{__name__}:AddConstant'
  assert saved[0]['kwargs']['fn'] == {'ref': f'{__name__}:double'}
  assert saved[1]['class'] == 'tests.artifacts.Negate'
  read = run(ROWS, MLTransform(read_artifact_location=str(loc)))
  expected = {r['x']: [-(r['x'] + 2.5) * 2] for r in ROWS}
  for out in (written, read):
    assert sorted(float(r['x'][0]) for r in out) == sorted(v[0] for v in expected.values())


def test_an_unregistered_function_argument_is_an_error_when_writing(tmp_path):
  loc = tmp_path / 'art'
  with pytest.raises(ArtifactFormatError, match='triple.*register_artifact_class'):
    run(ROWS, MLTransform(write_artifact_location=str(loc),
                          transforms=[AddConstant(columns=['x'], fn=triple)]))
  assert not (loc / 'attributes.json').exists()


_READER = '''
import json, os, sys
sys.path[:0] = [os.getcwd(), sys.argv[1]]
if sys.argv[3] == 'import':
  import {module}
from runinference.transforms.base import MLTransform
from tests.transforms.mltransform_helpers import run
try:
  out = run([{{'x': 1.0}}], MLTransform(read_artifact_location=sys.argv[2]))
except Exception as e:
  print('ERROR', type(e).__name__, e)
  sys.exit(3)
print(json.dumps([float(v) for r in out for v in r['x']]))
'''


def test_a_custom_class_reads_back_in_another_process_only_when_imported(
    tmp_path, monkeypatch):
  module = f'custom_ops_{uuid.uuid4().hex[:8]}'
  marker = tmp_path / 'imports'
  (tmp_path / f'{module}.py').write_text(textwrap.dedent(f'''
      import numpy as np
      from runinference.transforms import tft
      with open({str(marker)!r}, 'a') as f:
        f.write('imported\\n')

      @tft.register_input_dtype(float)
      class Shift(tft.TFTOperation):
        def __init__(self, columns, by):
          super().__init__(columns)
          self.by = by

        def apply_transform(self, data, output_column_name):
          return {{output_column_name: np.asarray(data, np.float32) + self.by}}
      '''))
  monkeypatch.syspath_prepend(str(tmp_path))
  ops = __import__(module)
  loc = tmp_path / 'art'
  run(ROWS, MLTransform(write_artifact_location=str(loc), transforms=[
      ops.Shift(columns=['x'], by=10.0)]))
  script = tmp_path / 'reader.py'
  script.write_text(_READER.format(module=module))

  def read(mode):
    return subprocess.run(
        [sys.executable, str(script), str(tmp_path), str(loc), mode],
        cwd=ROOT, capture_output=True, text=True, timeout=300)

  ok = read('import')
  assert ok.returncode == 0, ok.stdout + ok.stderr
  assert json.loads(ok.stdout.strip().splitlines()[-1]) == [11.0]
  imports = marker.read_text()
  refused = read('no-import')
  assert refused.returncode == 3, refused.stdout + refused.stderr
  assert f"ArtifactFormatError {loc / 'attributes.json'}: steps[0].transforms[0].class " \
      f"'{module}:Shift' is not a registered MLTransform class" in refused.stdout
  assert marker.read_text() == imports  # the module was not imported


def test_our_own_steps_are_known_in_a_fresh_process_without_importing_them(
    written):
  """Reading artifacts (MLTransform's read path) knows our own steps although
  the process never imported the modules that define them."""
  code = textwrap.dedent(f'''
      import sys
      from runinference.transforms import _artifacts, base
      for mod in ('runinference.transforms.embeddings.huggingface',
                  'runinference.transforms.tft'):
        assert mod not in sys.modules, mod
      steps = base._JsonTransformAttributeManager.load_attributes({str(written)!r})
      print(type(steps[0]).__name__)
      for spec in [
          {{'class': 'runinference.transforms.embeddings.huggingface:'
                    'SentenceTransformerEmbeddings',
           'kwargs': {{'model_name': 'm', 'columns': ['t']}}}},
          {{'class': 'runinference.transforms.tft:ScaleTo01',
           'kwargs': {{'columns': ['x'], 'name': {{'ref': 'numpy:float32'}}}}}}]:
        print(type(_artifacts.decode_object(spec)).__name__)
      ''')
  out = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True,
                       text=True, timeout=300)
  assert out.returncode == 0, out.stdout + out.stderr
  assert out.stdout.split() == ['TFTProcessHandler',
                                'SentenceTransformerEmbeddings', 'ScaleTo01']


# -- the manifest ----------------------------------------------------------------


def test_every_written_file_is_in_a_manifest_with_its_digest(written):
  recorded = {}
  for folder, _, names in os.walk(written):
    for name in names:
      if name == 'manifest.json' or name.startswith('manifest_stage'):
        payload = json.loads(open(os.path.join(folder, name)).read())
        assert payload['format'] == 'runinference.mltransform.manifest/1'
        for rel, e in payload['files'].items():
          recorded[os.path.normpath(os.path.join(folder, rel))] = e
  files = [os.path.join(f, n) for f, _, ns in os.walk(written) for n in ns
           if not (n == 'manifest.json' or n.startswith('manifest_stage'))
           and f != str(written)]
  names = {os.path.basename(f) for f in files}
  assert {'transforms.json', 'schema.json', 'stats_stage0.json'} <= names
  assert sorted(recorded) == sorted(files)
  for path in files:
    data = open(path, 'rb').read()
    assert recorded[path] == {'sha256': hashlib.sha256(data).hexdigest(), 'size': len(data)}


def test_attributes_json_carries_its_own_digest_and_stands_alone(written):
  # Beam's tests list the artifact folder: attributes.json and one folder per
  # step, nothing else.
  assert sorted(p.name for p in written.iterdir() if p.is_file()) == ['attributes.json']
  payload = json.loads((written / 'attributes.json').read_text())
  digest = payload.pop('sha256')
  canonical = json.dumps(payload, sort_keys=True, separators=(',', ':')).encode()
  assert digest == hashlib.sha256(canonical).hexdigest()


@pytest.mark.parametrize('damage', ['changed', 'truncated', 'missing', 'unsealed'])
def test_a_damaged_attributes_json_is_an_error_naming_it(loc, damage):
  path = loc / 'attributes.json'
  payload = json.loads(path.read_text())
  if damage == 'missing':
    path.unlink()
    with pytest.raises(ArtifactNotFoundError, match=re.escape(str(path))):
      _build(loc)
    return
  if damage == 'changed':
    payload['steps'][0]['dir'] = payload['steps'][0]['dir']  # same dir, reordered keys
    payload['format'] = payload['format'] + ' '
    path.write_text(json.dumps(payload))
    match = re.escape(f'{path} was changed after it was written')
  elif damage == 'unsealed':
    del payload['sha256']
    path.write_text(json.dumps(payload))
    match = re.escape(f'{path} carries no SHA-256 of its content')
  else:
    path.write_bytes(path.read_bytes()[:40])
    match = re.escape(f'{path} is malformed JSON')
  with pytest.raises(ArtifactFormatError, match=match):
    _build(loc)


_FILES = {
    'transforms.json': lambda loc: _step_dir(loc) / 'transforms.json',
    'stats': lambda loc: _step_dir(loc) / 'stats_stage0.json',
    'vocabulary': _vocab,
}


@pytest.mark.parametrize('which', sorted(_FILES))
@pytest.mark.parametrize('damage', ['changed', 'truncated', 'missing'])
def test_a_damaged_file_is_an_error_naming_it(loc, which, damage):
  path = _FILES[which](loc)
  data = path.read_bytes()
  expected = hashlib.sha256(data).hexdigest()
  if damage == 'missing':
    path.unlink()
    with pytest.raises(ArtifactNotFoundError, match=re.escape(str(path))):
      _build(loc)
    return
  if damage == 'changed':  # same size, one byte differs
    new = data[:-2] + (b'X' if data[-2:-1] != b'X' else b'Y') + data[-1:]
    verb = 'has changed'
  else:
    new = data[:len(data) // 2]
    verb = 'was truncated or changed'
  path.write_bytes(new)
  found = hashlib.sha256(new).hexdigest()
  with pytest.raises(ArtifactFormatError) as e:
    _build(loc)
  msg = str(e.value)
  assert f'{path} {verb} since it was written' in msg
  assert f'records {len(data)} bytes with sha256 {expected}' in msg
  assert f'found {len(new)} bytes with sha256 {found}' in msg


def test_a_truncated_vocabulary_with_a_matching_manifest_is_refused(loc):
  path = _vocab(loc)
  lines = path.read_text().splitlines(keepends=True)
  assert len(lines) == VOCAB_SIZE
  path.write_text(''.join(lines[:-1]))
  _reseal(loc, path)
  with pytest.raises(ArtifactFormatError,
                     match=re.escape(f'{path} has {VOCAB_SIZE - 1} tokens but ') +
                     f".*stats_stage0.json entry .*records a vocabulary of {VOCAB_SIZE}"):
    _build(loc)


def test_read_stage_checks_the_vocabulary_size_on_its_own(loc):
  path = _vocab(loc)
  path.write_text(''.join(path.read_text().splitlines(keepends=True)[:-1]))
  _reseal(loc, path)
  with pytest.raises(ArtifactFormatError, match=f'has {VOCAB_SIZE - 1} tokens'):
    _artifacts.read_stage(str(_step_dir(loc)), 0)


@pytest.mark.parametrize('which', ['attributes.json', 'transforms.json', 'stats'])
def test_malformed_json_names_the_file_and_position(loc, which):
  path = loc / 'attributes.json' if which == 'attributes.json' else _FILES[which](loc)
  path.write_text('{"format": ')
  if which != 'attributes.json':  # its digest is inside: nothing to reseal
    _reseal(loc, path)
  with pytest.raises(ArtifactFormatError,
                     match=re.escape(f'{path} is malformed JSON: Expecting value at line 1 '
                                     'column 12 (char 11)')):
    _build(loc)


def test_a_statistic_missing_a_key_is_an_error_naming_file_and_entry(loc):
  path = _FILES['stats'](loc)
  payload = json.loads(path.read_text())
  (key, ) = [k for k, v in payload.items() if v['kind'] == 'moments']
  del payload[key]['value']['mean']
  path.write_text(json.dumps(payload))
  _reseal(loc, path)
  with pytest.raises(ArtifactFormatError,
                     match=re.escape(f"{path} entry '{key}': (moments) lacks 'mean'")):
    _build(loc)


@pytest.mark.parametrize('which', ['step', 'stage'])
def test_a_missing_manifest_says_the_artifacts_cannot_be_trusted(loc, which):
  path = {'step': _step_dir(loc) / 'manifest.json',
          'stage': _step_dir(loc) / 'manifest_stage0.json'}[which]
  path.unlink()
  with pytest.raises(ArtifactNotFoundError,
                     match=re.escape(f'The manifest {path} is missing.') +
                     '.*cannot be checked and are not trusted: run the pipeline in '
                     'write mode again'):
    _build(loc)


def test_a_malformed_manifest_names_itself(loc):
  path = _step_dir(loc) / 'manifest_stage0.json'
  path.write_text('{"files": {}}')
  with pytest.raises(ArtifactFormatError, match=re.escape(f'{path} is not an MLTransform manifest')):
    _build(loc)


def test_intact_artifacts_read_back_with_the_saved_statistics(loc):
  out = {float(r['x'][0]): r for r in run(ROWS, MLTransform(read_artifact_location=str(loc)))}
  x = np.asarray([r['x'] for r in ROWS])
  expected = (x - x.mean()) / x.std()
  np.testing.assert_allclose(sorted(out), sorted(expected), rtol=1e-6)
  first = out[min(out)]  # x = 0: 'red green'; 'red' is the most frequent token
  assert first['text'].tolist()[0] == 0
