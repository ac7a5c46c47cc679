"""The same pipelines on every runner we can reach from one machine.

Legs: the DirectRunner; the multi-process DirectRunner (2 worker processes);
the portable runner (in-process job service, SDK workers started as
separate processes by Beam's worker pool, ``--environment_type=EXTERNAL``);
and ``runinference.runners.DaskRunner`` on a ``LocalCluster`` of 2 worker
processes. One pipeline of all branches runs once per leg (see
scale_out_fixtures); each branch's output must equal its expected multiset.

``--environment_type=PROCESS`` is not a leg: Beam's Python job service has no
handler for ``beam:env:process:v1`` (only the Java Flink/Spark job servers do,
with the SDK container's ``boot`` binary); EXTERNAL runs the same SDK harness
in separate processes.
"""
import collections
import os
import socket
import subprocess
import sys
import time
import typing

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.util import assert_that, equal_to

from tests.runners import scale_out_fixtures as fx

distributed = pytest.importorskip(
    'dask.distributed', reason="the dask extra: pip install 'runinference[dask]'")

pytestmark = pytest.mark.timeout(240)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LEGS = ['direct', 'direct_multiprocess', 'portable_external', 'dask']
EXPECTED = fx.expected()
BOUND_S = 60  # every wait below (cluster, worker pool) is bounded by this


@pytest.fixture(scope='module')
def worker_env():
  """Worker processes import this repo's tests and the venv's python."""
  with pytest.MonkeyPatch.context() as mp:
    mp.setenv('PYTHONPATH',
              os.pathsep.join(filter(None, [REPO, os.environ.get('PYTHONPATH')])))
    mp.setenv('PATH', os.path.dirname(sys.executable) + os.pathsep +
              os.environ['PATH'])
    yield


@pytest.fixture(scope='module')
def dask_address(worker_env):
  cluster = distributed.LocalCluster(
      n_workers=2, threads_per_worker=1, processes=True, host='127.0.0.1',
      dashboard_address=None, timeout=BOUND_S)
  try:
    yield cluster.scheduler_address
  finally:
    cluster.close(timeout=BOUND_S)


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def _wait_for_port(port: int, proc: subprocess.Popen) -> None:
  deadline = time.monotonic() + BOUND_S
  while time.monotonic() < deadline:
    if proc.poll() is not None:
      raise RuntimeError(f'worker pool exited with {proc.returncode}')
    with socket.socket() as s:
      if s.connect_ex(('127.0.0.1', port)) == 0:
        return
    time.sleep(0.2)
  raise TimeoutError(f'worker pool not listening on {port} in {BOUND_S}s')


@pytest.fixture(scope='module')
def worker_pool(worker_env):
  """Beam's SDK worker pool in its own process; it starts each SDK worker
  as a further process (``python -c ...SdkHarness``)."""
  port = _free_port()
  proc = subprocess.Popen([
      sys.executable, '-m', 'apache_beam.runners.worker.worker_pool_main',
      f'--service_port={port}'
  ], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  try:
    _wait_for_port(port, proc)
    yield f'localhost:{port}'
  finally:
    proc.terminate()
    try:
      proc.wait(timeout=BOUND_S)
    except subprocess.TimeoutExpired:
      proc.kill()


@pytest.fixture(scope='module')
def models(tmp_path_factory):
  return fx.write_models(str(tmp_path_factory.mktemp('models')))


def _pipeline(leg: str, request) -> beam.Pipeline:
  if leg == 'direct':
    return beam.Pipeline()
  if leg == 'direct_multiprocess':
    request.getfixturevalue('worker_env')
    return beam.Pipeline(options=PipelineOptions([
        '--direct_running_mode=multi_processing', '--direct_num_workers=2'
    ]))
  if leg == 'portable_external':
    pool = request.getfixturevalue('worker_pool')
    return beam.Pipeline(options=PipelineOptions([
        '--runner=PortableRunner', '--job_endpoint=embed',
        '--environment_type=EXTERNAL', f'--environment_config={pool}',
        '--sdk_worker_parallelism=2'
    ]))
  from runinference.runners import DaskRunner
  address = request.getfixturevalue('dask_address')
  return beam.Pipeline(
      runner=DaskRunner(),
      options=PipelineOptions([f'--dask_client_address={address}']))


@pytest.fixture(scope='module')
def leg_outputs(request, models, tmp_path_factory):
  """Runs the whole pipeline once per leg (on first use); outputs by name."""
  cache = {}

  def outputs(leg: str, fixture_request) -> dict:
    if leg not in cache:
      directory = str(tmp_path_factory.mktemp(f'out_{leg}'))
      try:
        fx.run(_pipeline(leg, fixture_request), models, directory)
        cache[leg] = fx.read_outputs(directory)
      except Exception as e:  # every branch test of this leg reports it
        cache[leg] = e
    if isinstance(cache[leg], Exception):
      raise cache[leg]
    return cache[leg]

  return outputs


@pytest.mark.parametrize('branch', sorted(EXPECTED))
@pytest.mark.parametrize('leg', LEGS)
def test_branch_output_is_exact(leg, branch, leg_outputs, request):
  got = leg_outputs(leg, request).get(branch, collections.Counter())
  want = EXPECTED[branch]
  assert sum(got.values()) == sum(want.values()), (
      f'{leg}/{branch}: {sum(got.values())} records, want '
      f'{sum(want.values())}; missing {list((want - got).items())[:5]}, '
      f'unexpected {list((got - want).items())[:5]}')
  assert got == want


@pytest.mark.skipif(fx.MLTransform is None,
                    reason='runinference.transforms (MLTransform) not present')
@pytest.mark.parametrize('leg', LEGS)
def test_mltransform_output_is_exact(leg, leg_outputs, request):
  """float32 statistics: checked against numpy within 1e-4, and the other
  legs must equal the DirectRunner's output exactly."""
  got = leg_outputs(leg, request).get('mltransform', collections.Counter())
  want = fx.ml_expected()
  assert sum(got.values()) == len(want)
  seen = {}
  for record in got:
    row_id, z, s01 = record.split(':')
    seen[int(row_id)] = (float(z), float(s01))
  assert seen.keys() == want.keys()
  for row_id, (z, s01) in seen.items():
    assert z == pytest.approx(want[row_id][0], abs=1e-4)
    assert s01 == pytest.approx(want[row_id][1], abs=1e-4)
  if leg != 'direct':
    assert got == leg_outputs('direct', request)['mltransform']


@pytest.mark.parametrize('leg', LEGS[1:])
def test_work_ran_in_other_processes(leg, leg_outputs, request):
  pids = set(leg_outputs(leg, request)['pids'])
  assert pids and str(os.getpid()) not in pids


# -- the Dask runner's own behaviour -------------------------------------
class _Buffering(beam.DoFn):
  """Emits in batches of 7, the rest in finish_bundle (like batching)."""
  def start_bundle(self):
    self.held = []

  def process(self, x):
    self.held.append(x)
    if len(self.held) == 7:
      yield from self.held
      self.held = []

  def finish_bundle(self):
    for x in self.held:
      yield beam.utils.windowed_value.WindowedValue(
          x, 0, [beam.transforms.window.GlobalWindow()])


def _buffered_count(runner, address, directory) -> int:
  options = PipelineOptions([f'--dask_client_address={address}'])
  p = beam.Pipeline(runner=runner, options=options)
  _ = (p | beam.Create(range(1000)) | beam.ParDo(_Buffering())
       | beam.Map(str) | beam.ParDo(fx.Sink(directory, 'buffered')))
  result = p.run()
  try:
    result.wait_until_finish(duration=BOUND_S * 1000)
  finally:
    result.client.close()  # Beam's result never closes the client it opened
  return sum(fx.read_outputs(directory).get('buffered', {}).values())


def test_finish_bundle_outputs_kept_where_beams_runner_drops_them(
    dask_address, tmp_path):
  """Beam up to 2.77's DaskRunner reads a bundle's outputs before
  finish_bundle and drops what it emits there; Beam 2.78 fixed that (its
  apply_dofn_to_bundle reads them after). Ours keeps them on every version."""
  import apache_beam
  from apache_beam.runners.dask.dask_runner import DaskRunner as BeamDask

  from runinference.runners import DaskRunner
  (tmp_path / 'ours').mkdir()
  (tmp_path / 'beam').mkdir()
  assert _buffered_count(DaskRunner(), dask_address, str(tmp_path / 'ours')) == 1000
  beams = _buffered_count(BeamDask(), dask_address, str(tmp_path / 'beam'))
  fixed_upstream = tuple(
      int(x) for x in apache_beam.__version__.split('.')[:2]) >= (2, 78)
  assert (beams == 1000) if fixed_upstream else (beams < 1000), (
      f"Beam {apache_beam.__version__}'s DaskRunner delivered {beams} of "
      '1000: update docs/dask_runner_fixes.md section 1')


def test_read_from_text_on_dask_named_by_runner_option(dask_address, tmp_path):
  lines = [f'line {i}' for i in range(500)]
  (tmp_path / 'in.txt').write_text('\n'.join(lines) + '\n')
  (tmp_path / 'out').mkdir()
  options = PipelineOptions([
      '--runner=runinference.runners.DaskRunner',
      f'--dask_client_address={dask_address}'
  ])
  with beam.Pipeline(options=options) as p:
    _ = (p | beam.io.ReadFromText(str(tmp_path / 'in.txt'))
         | beam.ParDo(fx.Sink(str(tmp_path / 'out'), 'lines')))
  assert fx.read_outputs(str(tmp_path / 'out'))['lines'] == collections.Counter(lines)


def test_stateful_step_is_refused_on_dask(dask_address, models):
  from runinference.base import RunInference
  from runinference.runners import DaskRunner, UnsupportedOnDaskError
  from runinference.sklearn_inference import SklearnModelHandlerNumpy
  handler = SklearnModelHandlerNumpy(
      model_uri=models['five'], max_batch_duration_secs=1)
  options = PipelineOptions([f'--dask_client_address={dask_address}'])
  with pytest.raises(UnsupportedOnDaskError, match='max_batch_duration_secs'):
    with beam.Pipeline(runner=DaskRunner(), options=options) as p:
      _ = p | beam.Create([fx.as_array(1)]) | RunInference(handler)


def test_untranslatable_step_is_an_error_not_a_no_op(dask_address):
  from apache_beam.testing.test_stream import TestStream

  from runinference.runners import DaskRunner, UnsupportedOnDaskError
  options = PipelineOptions([f'--dask_client_address={dask_address}'])
  with pytest.raises(UnsupportedOnDaskError, match='no Dask translation'):
    with beam.Pipeline(runner=DaskRunner(), options=options) as p:
      _ = p | TestStream().add_elements([1]) | beam.Map(str)


class _Lifecycle(beam.DoFn):
  """Leaves a file per setup and per teardown."""
  def __init__(self, directory):
    self.directory = directory

  def _mark(self, what):
    open(os.path.join(self.directory, f'{what}.{self.name}'), 'w').close()

  def setup(self):
    import uuid
    self.name = f'{os.getpid()}-{uuid.uuid4().hex}'
    self._mark('setup')

  def process(self, x):
    yield x

  def teardown(self):
    self._mark('teardown')


def test_dofns_set_up_once_per_worker_and_torn_down(dask_address, tmp_path):
  """20 bundles on 2 single-threaded workers: at most one DoFn instance per
  worker process, each torn down when the run ends."""
  from runinference.runners import DaskRunner
  (tmp_path / 'out').mkdir()
  options = PipelineOptions([
      f'--dask_client_address={dask_address}', '--dask_partition_size=50'
  ])
  with beam.Pipeline(runner=DaskRunner(), options=options) as p:
    _ = (p | beam.Create(range(1000)) | beam.ParDo(_Lifecycle(str(tmp_path)))
         | beam.Map(str) | beam.ParDo(fx.Sink(str(tmp_path / 'out'), 'n')))
  setups = {f.name.split('.', 1)[1] for f in tmp_path.glob('setup.*')}
  teardowns = {f.name.split('.', 1)[1] for f in tmp_path.glob('teardown.*')}
  assert 1 <= len(setups) <= 2
  assert teardowns == setups
  assert sum(fx.read_outputs(str(tmp_path / 'out'))['n'].values()) == 1000


@pytest.mark.parametrize('items, options, want', [
    (16, {'min_partitions': 4}, {'npartitions': 4}),   # a few items fan out
    (3, {'min_partitions': 4}, {'npartitions': 3}),    # never more than items
    (100_000, {'min_partitions': 4}, {'partition_size': 128}),
    (16, {'min_partitions': 4, 'npartitions': 1}, {'npartitions': 1}),
    (16, {'min_partitions': 4, 'partition_size': 8}, {'partition_size': 8}),
])
def test_a_create_spreads_over_every_worker_unless_told(items, options, want):
  """Create(range(16)) | FlatMap(make rows): 16 items in one partition
  would be one worker's work; without --dask_npartitions/partition_size
  the runner asks for 2 partitions per worker thread."""
  from runinference.runners import _dask_ops
  assert _dask_ops._partition_kwargs(options, items) == want


def _combines(p, directory):
  """Combines the Dask runner lifts (and one it must not: a side input)."""
  from apache_beam.transforms import window
  rows = (p | beam.Create([(i % 7, i) for i in range(2000)])
          | 'Stamp' >> beam.Map(lambda kv: window.TimestampedValue(kv, kv[1])))
  sink = lambda name: beam.ParDo(fx.Sink(directory, name))  # noqa: E731
  _ = (rows | 'Count' >> beam.combiners.Count.Globally()
       | 'CountSink' >> sink('count'))
  _ = (rows | 'Fixed' >> beam.WindowInto(window.FixedWindows(500))
       | 'SumPerKey' >> beam.CombinePerKey(sum)
       | 'WithWindow' >> beam.Map(
           lambda kv, w=beam.DoFn.WindowParam, ts=beam.DoFn.TimestampParam:
           f'{kv[0]}:{kv[1]}:{int(w.start)}:{ts.micros // 1000}')
       | 'SumSink' >> sink('sum'))
  _ = (rows | 'Mean' >> beam.combiners.Mean.PerKey()
       | 'MeanText' >> beam.MapTuple(lambda k, v: f'{k}:{v}')
       | 'MeanSink' >> sink('mean'))
  # A global combine per window: its accumulators are gathered, not shuffled.
  _ = (rows | 'TotalValues' >> beam.Values()
       | 'FixedTotal' >> beam.WindowInto(window.FixedWindows(500))
       | 'TotalPerWindow' >> beam.CombineGlobally(sum).without_defaults()
       | 'TotalWithWindow' >> beam.Map(
           lambda v, w=beam.DoFn.WindowParam, ts=beam.DoFn.TimestampParam:
           f'{v}:{int(w.start)}:{ts.micros // 1000}')
       | 'TotalSink' >> sink('total'))
  floor = p | 'Floor' >> beam.Create([5000])
  _ = (rows | 'Values' >> beam.Values()
       | 'SideMax' >> beam.CombineGlobally(
           lambda xs, k: max([k, *xs]), k=beam.pvalue.AsSingleton(floor))
       | 'SideSink' >> sink('side'))


def test_combines_are_lifted_and_exact_on_dask(dask_address, tmp_path):
  """Count, a windowed sum per key, a mean per key and a combine with a side
  input (not lifted) give the DirectRunner's results, windows and times."""
  from runinference.runners import DaskRunner
  outputs = {}
  for name, runner, options in [
      ('direct', 'DirectRunner', ['--direct_num_workers=1']),
      ('dask', DaskRunner(), [f'--dask_client_address={dask_address}'])]:
    directory = tmp_path / name
    directory.mkdir()
    with beam.Pipeline(runner=runner, options=PipelineOptions(options)) as p:
      _combines(p, str(directory))
    outputs[name] = fx.read_outputs(str(directory))
  assert outputs['dask'] == outputs['direct']
  assert outputs['dask']['count'] == collections.Counter([2000])
  assert len(outputs['dask']['sum']) == 7 * 4  # 7 keys x 4 windows
  assert outputs['dask']['side'] == collections.Counter([5000])
  assert outputs['dask']['total'] == collections.Counter(
      f'{sum(range(w, w + 500))}:{w}:{(w + 500) * 1000 - 1}'
      for w in range(0, 2000, 500))


def test_only_combines_that_lift_exactly_are_lifted():
  from apache_beam.transforms import window

  from runinference.runners import _dask_combine
  p = beam.Pipeline()
  rows = p | beam.Create([(1, 2)])
  lifted = rows | 'Plain' >> beam.CombinePerKey(sum)
  sessions = (rows | beam.WindowInto(window.Sessions(10))
              | 'Sessions' >> beam.CombinePerKey(sum))
  side = rows | 'Side' >> beam.CombinePerKey(
      lambda xs, k: max([k, *xs]), k=beam.pvalue.AsSingleton(
          p | 'One' >> beam.Create([1])))
  total = rows | 'Total' >> beam.CombineGlobally(sum)
  del lifted, sessions, side, total
  composites = {}

  class Composites(beam.pipeline.PipelineVisitor):
    def enter_composite_transform(self, node):
      composites[node.full_label] = node

  p.visit(Composites())
  assert _dask_combine.liftable(composites['Plain'])
  assert not _dask_combine.liftable(composites['Sessions'])  # merging
  assert not _dask_combine.liftable(composites['Side'])  # a side input
  # Only a CombineGlobally's own CombinePerKey (key None) skips the shuffle.
  assert _dask_combine.is_global(composites['Total/CombinePerKey'])
  assert not _dask_combine.is_global(composites['Plain'])


def test_a_dask_run_skips_the_runner_api_round_trip(dask_address, monkeypatch):
  """Beam round-trips a pipeline through its runner-API proto before a run
  on a runner that is not 'fnapi compatible' (a check that re-pickles every
  transform); the Dask runner translates the pipeline objects themselves."""
  from runinference.runners import DaskRunner
  calls = []
  original = beam.Pipeline.to_runner_api

  def counted(self, *args, **kwargs):
    calls.append(1)
    return original(self, *args, **kwargs)

  monkeypatch.setattr(beam.Pipeline, 'to_runner_api', counted)
  options = PipelineOptions([f'--dask_client_address={dask_address}'])
  with beam.Pipeline(runner=DaskRunner(), options=options) as p:
    _ = p | beam.Create(range(10)) | beam.combiners.Count.Globally()
  assert not calls


def _fails_on_7(x):
  if x == 7:
    raise ValueError('seven')
  return x


def test_workers_collect_garbage_again_after_every_bundle(dask_address):
  """Bundles run with the cyclic GC paused (whole partitions are held in
  lists); it is back on in every worker after a run and after a failure."""
  import distributed

  from runinference.runners import DaskRunner
  options = PipelineOptions([f'--dask_client_address={dask_address}'])
  with beam.Pipeline(runner=DaskRunner(), options=options) as p:
    _ = p | beam.Create(range(100)) | beam.Map(str)
  with pytest.raises(Exception, match='seven'):
    with beam.Pipeline(runner=DaskRunner(), options=options) as p:
      _ = p | beam.Create(range(100)) | beam.Map(_fails_on_7)
  with distributed.Client(dask_address, timeout=BOUND_S) as client:
    import gc
    assert set(client.run(gc.isenabled).values()) == {True}


class _SeesBatches(beam.DoFn):
  """Yields (element, its batch's timestamp, the batch's size)."""
  @beam.DoFn.yields_elements
  def process_batch(self, batch: typing.List[int],
                    timestamp=beam.DoFn.TimestampParam):
    for x in batch:
      yield x, int(timestamp), len(batch)


class _YieldsBatches(beam.DoFn):
  def infer_output_type(self, input_type):
    return int

  def process_batch(self, batch: typing.List[int]) -> typing.Iterator[typing.List[int]]:
    yield batch


def test_batched_dofns_get_batches_of_one_timestamp_on_dask(dask_address):
  """A DoFn with only process_batch gets its elements in batches (not one
  call per element), each batch of one timestamp, every element once."""
  from runinference.runners import DaskRunner
  options = PipelineOptions([f'--dask_client_address={dask_address}'])
  with beam.Pipeline(runner=DaskRunner(), options=options) as p:
    out = (p | beam.Create(range(10_000))
           | beam.Map(lambda x: beam.window.TimestampedValue(x, x % 3))
           .with_output_types(int)
           | beam.ParDo(_SeesBatches())
           | beam.Map(lambda t: t[:2] + (t[2] > 1, )))
    assert_that(out, equal_to([(x, x % 3, True) for x in range(10_000)]))


def test_dofns_that_output_batches_are_refused_on_dask(dask_address):
  from runinference.runners import DaskRunner, UnsupportedOnDaskError
  options = PipelineOptions([f'--dask_client_address={dask_address}'])
  with pytest.raises(UnsupportedOnDaskError, match='outputs batches'):
    with beam.Pipeline(runner=DaskRunner(), options=options) as p:
      _ = p | beam.Create(range(10)) | beam.ParDo(_YieldsBatches())
