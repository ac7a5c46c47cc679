import gc
import logging
import os
import pathlib
import pickle
import sys

# Under xdist (`make test`'s first phase) two workers share the machine: one
# BLAS/OpenMP thread each (torch, numpy), not one per core each -- spinning
# thread pools that outnumber the cores slow both workers several times over.
# Set before numpy (here) or any test module imports torch or numpy's BLAS; subprocesses
# inherit it.
if os.environ.get('PYTEST_XDIST_WORKER'):
  for _var in ('OMP_NUM_THREADS', 'MKL_NUM_THREADS', 'OPENBLAS_NUM_THREADS'):
    os.environ.setdefault(_var, '1')

import numpy as np  # noqa: E402
import pytest  # noqa: E402

logging.getLogger('apache_beam').setLevel(logging.ERROR)


@pytest.fixture
def five_model(tmp_path):
  """A scikit-learn LinearRegression that learned y = 5x, pickled."""
  from sklearn.linear_model import LinearRegression
  x = np.arange(20, dtype=float).reshape(-1, 1)
  path = tmp_path / 'five.pkl'
  with open(path, 'wb') as f:
    pickle.dump(LinearRegression().fit(x, 5 * x.ravel()), f)
  return str(path)


@pytest.fixture
def ten_model(tmp_path):
  from sklearn.linear_model import LinearRegression
  x = np.arange(20, dtype=float).reshape(-1, 1)
  path = tmp_path / 'ten.pkl'
  with open(path, 'wb') as f:
    pickle.dump(LinearRegression().fit(x, 10 * x.ravel()), f)
  return str(path)


# Every test module imports its libraries (Beam, TensorFlow, torch, sklearn,
# ...): millions of long-lived objects. A full collection -- the model
# manager's gc.collect() after an eviction, or an automatic generation-2 one
# -- walks them all again, ~0.3 s early in the suite and several seconds
# late in it. Before each module's first test, collect what earlier modules
# left behind and freeze the survivors (gc.freeze: the collector skips them
# from then on; reference counting still frees them). Objects a test makes
# are collected exactly as before, so tests of what gets released still see
# it released.
_frozen_before = [None]


def pytest_runtest_setup(item):
  module = getattr(item, 'module', None)
  if module is not _frozen_before[0]:
    _frozen_before[0] = module
    gc.collect()
    gc.freeze()


# `make test` runs the tests listed in serial_modules.txt after the rest,
# one module per worker (see that file).
SERIAL_MODULES = frozenset(
    line.split('#')[0].strip()
    for line in (pathlib.Path(__file__).resolve().parent /
                 'serial_modules.txt').read_text().splitlines()
    if line.split('#')[0].strip())
# Modules that share the real model servers (servers.shared_server: one per
# process): one worker runs them all, so that each server starts once.
SERVER_MODULES = {'handlers/test_conformance.py', 'remote/test_real_servers.py'}
# Modules whose module-scoped fixtures cost seconds (a whole pipeline per
# runner, a Dask cluster, a demo run, a browser): one worker runs each, so that
# the fixture runs once rather than once per worker.
FIXTURE_MODULES = {'runners/test_scale_out.py', 'evaluation/test_dask.py',
                   'cli/test_demo.py', 'cli/test_report_of_run.py'}
_TESTS = pathlib.Path(__file__).resolve().parent


@pytest.hookimpl(tryfirst=True)  # before -m deselects by marker
def pytest_collection_modifyitems(config, items):
  for item in items:
    rel = pathlib.Path(str(item.path)).resolve().relative_to(_TESTS).as_posix()
    name = getattr(item, 'originalname', item.name)
    if rel in SERIAL_MODULES or f'{rel}::{name}' in SERIAL_MODULES:
      item.add_marker(pytest.mark.serial)
    elif rel in SERVER_MODULES:
      item.add_marker(pytest.mark.xdist_group('servers'))
    elif rel in FIXTURE_MODULES:
      item.add_marker(pytest.mark.xdist_group(rel))


def pytest_collection_finish(session):
  """Fails the run when ``--dist loadgroup`` would not honour xdist_group
  (pytest 9 with pytest-xdist 3.8 drops the ``@group`` node-id suffix, and
  the groups above silently become single tests)."""
  if not getattr(session.config.option, 'loadgroup', False):
    return
  lost = [item.nodeid for item in session.items
          if item.get_closest_marker('xdist_group') and '@' not in item.nodeid]
  if lost:
    message = (f'{len(lost)} tests marked xdist_group have no @group node id '
               f'(e.g. {lost[0]}): this pytest/pytest-xdist pair ignores the '
               "groups; install the versions pyproject.toml's test extra pins")
    print(message, file=sys.__stderr__, flush=True)  # a worker's error is not shown
    raise pytest.UsageError(message)
