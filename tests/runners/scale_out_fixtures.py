"""One pipeline of many branches, run on every scale-out runner.

Every branch ends in a canonical string per output record, written by
``Sink`` to files (one per bundle), so the outputs of runners whose workers are
other processes can be read back and compared as multisets. ``expected()``
derives each branch's outputs from its inputs in the driver.
"""
import collections
import glob
import json
import os
import pickle
import uuid

import apache_beam as beam
import numpy as np
import torch

from runinference.base import (KeyedModelHandler, KeyModelMapping,
                               ModelHandler, PredictionResult, RunInference)
from runinference.columnar import RunInferenceColumnar
from runinference.pytorch_inference import PytorchModelHandlerTensor
from runinference.sklearn_inference import SklearnModelHandlerNumpy

try:  # MLTransform (runinference.transforms) joins the matrix where present
  from runinference.transforms.base import MLTransform
except ImportError:
  MLTransform = None

N = 600  # elements per per-element branch
CHUNKS, CHUNK_ROWS = 12, 50  # columnar branch
KEYS = ('a', 'b', 'c')
OFFSET = 1000  # the inference_args side input


def fails_inference(x: int) -> bool:
  return x % 50 == 7


def fails_preprocess(x: int) -> bool:
  return x % 97 == 3


def fails_postprocess(x: int) -> bool:
  return x % 89 == 5


def nan_row(i: int) -> bool:
  return i % 61 == 11


# -- models ---------------------------------------------------------------
class TinyNet(torch.nn.Module):
  """y = 3x + 1."""
  def __init__(self):
    super().__init__()
    self.linear = torch.nn.Linear(1, 1)

  def forward(self, x):
    return self.linear(x)


class Doubler(ModelHandler):
  """Scores 2x (+ the ``offset`` inference arg); raises on fails_inference."""
  def load_model(self):
    return 2

  def run_inference(self, batch, model, inference_args=None):
    offset = (inference_args or {}).get('offset', 0)
    out = []
    for x in batch:
      if fails_inference(x):
        raise ValueError(f'cannot score {x}')
      out.append(PredictionResult(x, model * x + offset))
    return out


def write_models(directory: str) -> dict:
  from sklearn.linear_model import LinearRegression
  x = np.arange(20, dtype=float).reshape(-1, 1)
  paths = {}
  for name, factor in (('five', 5), ('ten', 10)):
    paths[name] = os.path.join(directory, f'{name}.pkl')
    with open(paths[name], 'wb') as f:
      pickle.dump(LinearRegression().fit(x, factor * x.ravel()), f)
  net = TinyNet()
  with torch.no_grad():
    net.linear.weight.fill_(3.0)
    net.linear.bias.fill_(1.0)
  paths['torch'] = os.path.join(directory, 'tiny.pt')
  torch.save(net.state_dict(), paths['torch'])
  return paths


# -- canonical records ----------------------------------------------------
def _f3(v: float) -> str:
  return f'{round(float(v), 3) + 0.0:.3f}'  # + 0.0: no '-0.000'


def _num(v) -> str:
  return _f3(np.asarray(v).ravel()[0])


def canon_prediction(r) -> str:
  return f'{_num(r.example)}:{_num(r.inference)}'


def canon_keyed(kv) -> str:
  key, r = kv
  return f'{key}:{canon_prediction(r)}'


def canon_dead(record) -> str:
  value, (exc_type, _, _) = record
  if isinstance(value, list) and len(value) == 1:  # bisected to one row
    value = value[0]
  return f'{_num(value)}:{getattr(exc_type, "__name__", exc_type)}'


def canon_windowed(r, window=beam.DoFn.WindowParam) -> str:
  return f'{canon_prediction(r)}@{int(window.start)}'


def canon_window_count(kv, window=beam.DoFn.WindowParam) -> str:
  return f'count@{int(window.start)}={kv[1]}'


def canon_chunk_rows(chunk):
  return [f'{i}:{_f3(p)}' for i, p in zip(chunk['id'], chunk['prediction'])]


def canon_dead_chunk(record):
  chunk, (exc_type, _, _) = record
  return [f'{i}:{exc_type.__name__}' for i in chunk['id']]


# -- element makers (run in the workers) ---------------------------------
def as_array(x):
  return np.array([float(x)])


def as_tensor(x):
  return torch.tensor([float(x)])


def keyed(x):
  return KEYS[x % len(KEYS)], np.array([float(x)])


def pre(x):
  if fails_preprocess(x):
    raise KeyError(f'no features for {x}')
  return x


def post(r):
  if fails_postprocess(r.example):
    raise ArithmeticError(f'cannot post-process {r.example}')
  return r


def ml_row(i: int) -> dict:
  return {'id': i, 'a': float(i % 17) * 1.5, 'b': float(i % 23)}


def canon_ml_row(row) -> str:
  return f'{row.id}:{float(row.a[0]):.6f}:{float(row.b[0]):.6f}'


def ml_expected() -> dict:
  """MLTransform's ScaleToZScore('a') and ScaleTo01('b'), in numpy."""
  rows = [ml_row(i) for i in range(N)]
  a = np.array([r['a'] for r in rows])
  b = np.array([r['b'] for r in rows])
  z = (a - a.mean()) / a.std()
  s01 = (b - b.min()) / (b.max() - b.min())
  return {r['id']: (z[k], s01[k]) for k, r in enumerate(rows)}


def make_chunk(c):
  import pandas as pd
  ids = np.arange(c * CHUNK_ROWS, (c + 1) * CHUNK_ROWS)
  f = np.where([nan_row(i) for i in ids], np.nan, ids.astype(float))
  return pd.DataFrame({'id': ids, 'f': f})


class Sink(beam.DoFn):
  """Writes each bundle's records to its own file under ``directory``."""
  def __init__(self, directory: str, name: str):
    self.directory = directory
    self.name = name

  def start_bundle(self):
    self.rows = []

  def process(self, record):
    self.rows.append(record)

  def finish_bundle(self):
    if self.rows:
      path = os.path.join(self.directory,
                          f'{self.name}.{uuid.uuid4().hex}.jsonl')
      with open(path, 'w') as f:
        f.writelines(json.dumps(r) + '\n' for r in self.rows)


def read_outputs(directory: str) -> dict:
  out = collections.defaultdict(collections.Counter)
  for path in glob.glob(os.path.join(directory, '*.jsonl')):
    name = os.path.basename(path).split('.')[0]
    with open(path) as f:
      out[name].update(json.loads(line) for line in f)
  return dict(out)


# -- the pipeline ---------------------------------------------------------
def build(p, models: dict, workdir: str) -> dict:
  """Adds every branch to ``p``; returns {output name: PCollection[str]}."""
  ints = p | 'Ints' >> beam.Create(range(N))
  five = SklearnModelHandlerNumpy(model_uri=models['five'])
  ten = SklearnModelHandlerNumpy(model_uri=models['ten'])
  out = {}

  out['sklearn'] = (
      ints | 'SkArr' >> beam.Map(as_array)
      | 'SkRI' >> RunInference(five) | 'SkC' >> beam.Map(canon_prediction))

  torch_handler = PytorchModelHandlerTensor(
      state_dict_path=models['torch'], model_class=TinyNet, model_params={})
  out['pytorch'] = (
      ints | 'PtT' >> beam.Map(as_tensor)
      | 'PtRI' >> RunInference(torch_handler)
      | 'PtC' >> beam.Map(canon_prediction))

  multi = KeyedModelHandler([
      KeyModelMapping(['a'], five),
      KeyModelMapping(['b', 'c'], ten)
  ])
  out['keyed'] = (
      ints | 'KKey' >> beam.Map(keyed) | 'KRI' >> RunInference(multi)
      | 'KC' >> beam.Map(canon_keyed))

  main, dlq = ints | 'DlqRI' >> RunInference(
      Doubler()).with_exception_handling()
  out['dlq_main'] = main | 'DlqC' >> beam.Map(canon_prediction)
  out['dlq_failed'] = dlq.failed_inferences | 'DlqF' >> beam.Map(canon_dead)

  handler = Doubler().with_preprocess_fn(pre).with_postprocess_fn(post)
  main, dlq = ints | 'PpRI' >> RunInference(handler).with_exception_handling()
  out['prepost_main'] = main | 'PpC' >> beam.Map(canon_prediction)
  out['prepost_failed_inference'] = (
      dlq.failed_inferences | 'PpFI' >> beam.Map(canon_dead))
  out['prepost_failed_pre'] = (
      dlq.failed_preprocessing[0] | 'PpFPre' >> beam.Map(canon_dead))
  out['prepost_failed_post'] = (
      dlq.failed_postprocessing[0] | 'PpFPost' >> beam.Map(canon_dead))

  args = p | 'Args' >> beam.Create([{'offset': OFFSET}])
  main, _ = ints | 'SideRI' >> RunInference(
      Doubler(),
      inference_args=beam.pvalue.AsSingleton(args)).with_exception_handling()
  out['side_args'] = main | 'SideC' >> beam.Map(canon_prediction)

  windowed = (
      ints | 'Stamp' >> beam.Map(lambda x: beam.window.TimestampedValue(x, x))
      | 'Fixed' >> beam.WindowInto(beam.window.FixedWindows(100))
      | 'WinRI' >> RunInference(Doubler()).with_exception_handling())[0]
  out['windowed'] = windowed | 'WinC' >> beam.Map(canon_windowed)
  out['window_counts'] = (
      windowed | 'WinOne' >> beam.Map(lambda r: ('n', 1))
      | 'WinSum' >> beam.CombinePerKey(sum)
      | 'WinCount' >> beam.Map(canon_window_count))

  chunks = p | 'ChunkIds' >> beam.Create(range(CHUNKS)) | 'Chunk' >> beam.Map(
      make_chunk)
  main, dlq = chunks | 'Col' >> RunInferenceColumnar(
      five, ['f']).with_exception_handling()
  out['columnar'] = main | 'ColC' >> beam.FlatMap(canon_chunk_rows)
  out['columnar_failed'] = (
      dlq.failed_inferences | 'ColF' >> beam.FlatMap(canon_dead_chunk))

  if MLTransform is not None:
    from runinference.transforms import tft
    out['mltransform'] = (
        ints | 'MlRow' >> beam.Map(ml_row)
        | 'Ml' >> MLTransform(
            write_artifact_location=os.path.join(workdir, 'artifacts'),
            transforms=[
                tft.ScaleToZScore(columns=['a']),
                tft.ScaleTo01(columns=['b'])
            ])
        | 'MlC' >> beam.Map(canon_ml_row))

  out['pids'] = (
      ints | 'Pid' >> beam.Map(lambda _: str(os.getpid()))
      | 'PidSet' >> beam.Distinct())
  return out


def run(pipeline: beam.Pipeline, models: dict, directory: str) -> None:
  with pipeline as p:
    for name, pcoll in build(p, models, directory).items():
      _ = pcoll | f'Sink_{name}' >> beam.ParDo(Sink(directory, name))


def expected() -> dict:
  """Every branch's output multiset, derived from its inputs."""
  f3 = _f3
  xs = range(N)
  ok = [x for x in xs if not fails_inference(x)]
  pre_ok = [x for x in xs if not fails_preprocess(x)]
  inf_ok = [x for x in pre_ok if not fails_inference(x)]
  factor = {'a': 5, 'b': 10, 'c': 10}
  rows = range(CHUNKS * CHUNK_ROWS)
  out = {
      'sklearn': [f'{f3(x)}:{f3(5 * x)}' for x in xs],
      'pytorch': [f'{f3(x)}:{f3(3 * x + 1)}' for x in xs],
      'keyed': [
          f'{KEYS[x % 3]}:{f3(x)}:{f3(factor[KEYS[x % 3]] * x)}' for x in xs
      ],
      'dlq_main': [f'{f3(x)}:{f3(2 * x)}' for x in ok],
      'dlq_failed': [f'{f3(x)}:ValueError' for x in xs if fails_inference(x)],
      'prepost_main': [
          f'{f3(x)}:{f3(2 * x)}' for x in inf_ok if not fails_postprocess(x)
      ],
      'prepost_failed_inference': [
          f'{f3(x)}:ValueError' for x in pre_ok if fails_inference(x)
      ],
      'prepost_failed_pre': [
          f'{f3(x)}:KeyError' for x in xs if fails_preprocess(x)
      ],
      'prepost_failed_post': [
          f'{f3(x)}:ArithmeticError' for x in inf_ok if fails_postprocess(x)
      ],
      'side_args': [f'{f3(x)}:{f3(2 * x + OFFSET)}' for x in ok],
      'windowed': [f'{f3(x)}:{f3(2 * x)}@{x // 100 * 100}' for x in ok],
      'window_counts': [
          f'count@{w}={sum(1 for x in ok if x // 100 * 100 == w)}'
          for w in range(0, N, 100)
      ],
      'columnar': [f'{i}:{f3(5 * i)}' for i in rows if not nan_row(i)],
      'columnar_failed': [f'{i}:ValueError' for i in rows if nan_row(i)],
  }
  return {name: collections.Counter(v) for name, v in out.items()}
