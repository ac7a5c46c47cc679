"""The checks that run the handler in small real Beam pipelines (DirectRunner):
plain and keyed ``RunInference``, dead letters, ``large_model`` sharing and,
where the handler offers ``matrix_predictor()``, ``RunInferenceColumnar``."""
from __future__ import annotations

from pathlib import Path

import apache_beam as beam
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.testing.util import assert_that, equal_to

from ..base import KeyedModelHandler, PredictionResult, RunInference
from ._case import (NO_EXAMPLE, ConformanceError, HandlerCase, SkipCheck,
                    compare, fail, to_numpy)
from ._checks import build, inferences


def _run(p: beam.Pipeline):
  result = p.run()
  result.wait_until_finish()
  return result


def _pick(i, examples):
  return examples[i]


def _keyed_matcher(case: HandlerCase, want: dict, what: str):
  def match(actual):
    got = dict(actual)
    if sorted(got) != sorted(want) or len(actual) != len(want):
      raise ConformanceError(
          f'{case.name}: {what} gave keys {sorted(k for k, _ in actual)}, '
          f'expected each of {sorted(want)} once.')
    for key, value in want.items():
      compare(case, got[key], value, f'{what}: predictions for key {key!r}')
  return match


def _inference(result):
  # Remote handlers, like the reference's, may return bare predictions.
  return result.inference if isinstance(result, PredictionResult) else result


def _keyed_pipeline(case: HandlerCase, handler, pairs: list, want: dict,
                    what: str) -> None:
  p = beam.Pipeline()
  out = (
      p | beam.Create(list(range(len(pairs))))
      | beam.Map(_pick, pairs)
      | RunInference(KeyedModelHandler(handler))
      | beam.MapTuple(lambda key, result: (key, _inference(result))))
  assert_that(out, _keyed_matcher(case, want, what))
  _run(p)


def check_keyed(case: HandlerCase, tmp_path: Path) -> None:
  """``RunInference(KeyedModelHandler(handler))`` keeps each key with the
  prediction of its example."""
  handler = build(case, tmp_path)
  pairs = case.keyed_examples()
  want = dict(zip([k for k, _ in pairs],
                  inferences(case, handler, [x for _, x in pairs])))
  _keyed_pipeline(case, handler, pairs, want, 'keyed RunInference')


def check_large_model(case: HandlerCase, tmp_path: Path) -> None:
  """With ``large_model=True`` the model is served from one process per
  machine and the pipeline's predictions are the same."""
  try:
    handler = build(case, tmp_path, large_model=True)
  except TypeError as e:
    if 'large_model' not in str(e):
      raise
    raise SkipCheck("make_handler(tmp_path, **options) does not pass "
                    "large_model=True to the handler") from e
  if not handler.share_model_across_processes():
    raise fail(case, 'with large_model=True, share_model_across_processes() '
               'is False: pass **kwargs on to ModelHandler.__init__.')
  pairs = case.keyed_examples()
  want = dict(zip([k for k, _ in pairs], inferences(
      case, build(case, tmp_path), [x for _, x in pairs])))
  _keyed_pipeline(case, handler, pairs, want, 'RunInference with large_model')


def check_pipeline(case: HandlerCase, tmp_path: Path) -> None:
  """``RunInference(handler)`` gives one result per example and counts them
  as ``num_inferences`` under the handler's metrics namespace."""
  handler = build(case, tmp_path)
  examples = case.examples()
  namespace = handler.get_metrics_namespace()
  p = beam.Pipeline()
  out = (p | beam.Create(list(range(len(examples))))
         | beam.Map(_pick, examples) | RunInference(handler)
         | beam.combiners.Count.Globally())
  assert_that(out, equal_to([len(examples)]))
  result = _run(p)
  counters = result.metrics().query(
      MetricsFilter().with_namespace(namespace).with_name('num_inferences')
  )['counters']
  counted = sum(c.committed for c in counters)
  if not handler.override_metrics(namespace) and counted != len(examples):
    raise fail(case, f'num_inferences under {namespace!r} is {counted}, '
               f'expected {len(examples)}.')


def check_dead_letter(case: HandlerCase, tmp_path: Path) -> None:
  """With ``with_exception_handling()`` a bad example goes to
  ``failed_inferences`` and the good ones still get predictions."""
  if case.bad_example is NO_EXAMPLE:
    raise SkipCheck('the case has no bad_example')
  good = case.examples()
  batch = [good[0], case.bad_example, good[1]]
  p = beam.Pipeline()
  data = (p | beam.Create([0, 1, 2]) | beam.Map(_pick, batch))
  main, dlq = data | RunInference(
      build(case, tmp_path)).with_exception_handling()
  assert_that(main | 'CountGood' >> beam.combiners.Count.Globally(),
              equal_to([2]), label='good examples')
  assert_that(dlq.failed_inferences
              | 'CountBad' >> beam.combiners.Count.Globally(),
              equal_to([1]), label='the bad example')
  _run(p)


def _default_chunk(examples):
  import numpy
  import pandas as pd
  if all(isinstance(x, pd.DataFrame) for x in examples):
    return pd.concat(examples, ignore_index=True), list(examples[0].columns)
  arrays = [to_numpy(x) for x in examples]
  if all(isinstance(a, numpy.ndarray) and a.ndim in (1, 2) for a in arrays):
    matrix = numpy.vstack([a.reshape(1, -1) if a.ndim == 1 else a
                           for a in arrays])
    columns = [f'f{j}' for j in range(matrix.shape[1])]
    return pd.DataFrame(matrix, columns=columns), columns
  raise SkipCheck(
      f'cannot make a chunk of rows from {type(examples[0]).__name__} '
      'examples: give the case make_chunk')


def _column(chunk, name: str):
  import numpy
  if hasattr(chunk, 'schema'):  # pyarrow
    values = chunk.column(name).to_pylist()
  else:
    values = chunk[name].tolist()
  return numpy.asarray(values)


def _check_columnar_refused(case, handler, declined) -> None:
  from ..columnar import RunInferenceColumnar
  try:
    RunInferenceColumnar(handler, ['x'])
  except TypeError as e:
    text = str(e)
    if type(handler).__name__ not in text and declined is None:
      raise fail(case, 'RunInferenceColumnar refused the handler without '
                 f'naming it: {text}') from e
    if 'predict_fn' not in text and declined is None:
      raise fail(case, 'RunInferenceColumnar refused the handler without '
                 f'saying how to run it (predict_fn): {text}') from e
    return
  raise fail(case, 'matrix_predictor() offers nothing, yet '
             'RunInferenceColumnar accepted the handler.')


def _flat(values) -> list:
  import numpy
  return [numpy.ravel(to_numpy(v)) for v in values]


def check_columnar(case: HandlerCase, tmp_path: Path) -> None:
  """Where the handler offers ``matrix_predictor()``: ``RunInferenceColumnar``
  on the examples' rows predicts what ``run_inference`` does. Where it does
  not: ``RunInferenceColumnar`` refuses it at construction, naming the
  handler and the way out (``predict_fn``)."""
  import numpy
  from ..columnar import RunInferenceColumnar
  handler = build(case, tmp_path)
  try:
    offered = handler.matrix_predictor()
  except TypeError as e:  # e.g. a custom inference_fn the hook cannot use
    offered, declined = None, e
  else:
    declined = None
  if offered is None:
    _check_columnar_refused(case, handler, declined)
    return
  examples = case.examples()
  chunk, columns = (case.make_chunk or _default_chunk)(examples)
  per_example = inferences(case, handler, examples)
  if any(isinstance(v, dict) for v in per_example):
    raise SkipCheck('dict predictions: compare the columns yourself')
  want = numpy.concatenate(_flat(per_example))
  name = '_conformance_prediction'
  p = beam.Pipeline()
  out = (p | beam.Create([chunk])
         | RunInferenceColumnar(handler, columns, name)
         | beam.Map(_column, name))

  def match(actual):
    if len(actual) != 1:
      raise ConformanceError(f'{case.name}: RunInferenceColumnar gave '
                             f'{len(actual)} chunks for 1.')
    compare(case, numpy.ravel(actual[0]), want,
            'RunInferenceColumnar and run_inference predictions')
  assert_that(out, match)
  _run(p)
