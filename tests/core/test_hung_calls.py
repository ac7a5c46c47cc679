"""A model call that never returns: with a timeout its element becomes a dead
letter and the process still exits; hung calls are bounded (no thread per
attempt, all daemons) and the runner is usable again once they return.
Timing-sensitive (wall-clock bounds): in the serial phase."""
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from runinference.exceptions import InferenceTimeoutError, TooManyHungCalls


def test_a_hung_model_call_does_not_keep_the_process_alive():
  code = textwrap.dedent('''
      import threading, apache_beam as beam
      from runinference.base import ModelHandler, RunInference

      class Hang(ModelHandler):
        def load_model(self):
          return None
        def run_inference(self, batch, model, inference_args=None):
          if 3 in batch:
            threading.Event().wait()  # forever
          return list(batch)

      with beam.Pipeline() as p:
        main, dlq = (p | beam.Create(list(range(6)))
                     | RunInference(Hang(max_batch_size=1))
                     .with_exception_handling(timeout=1))
        dlq.failed_inferences | beam.Map(lambda r: print('DEAD', r[0]))
      print('PIPELINE DONE', flush=True)
  ''')
  start = time.time()
  done = subprocess.run([sys.executable, '-c', code], capture_output=True,
                        text=True, timeout=240)
  assert done.returncode == 0, done.stderr[-2000:]
  assert 'PIPELINE DONE' in done.stdout and 'DEAD [3]' in done.stdout
  assert time.time() - start < 240


def test_hung_calls_are_bounded():
  from runinference._core.timeouts import TimeoutRunner
  release = threading.Event()
  runner = TimeoutRunner(0.2, max_hung=2)
  before = threading.active_count()
  for _ in range(2):
    with pytest.raises(InferenceTimeoutError):
      runner(release.wait)
  with pytest.raises(TooManyHungCalls, match='still running'):
    runner(lambda: 1)
  assert threading.active_count() - before <= 2  # no thread per attempt
  assert all(t.daemon for t in threading.enumerate()
             if t.name == 'runinference-timeout')
  release.set()
  deadline = time.time() + 5
  while runner.hung_calls() and time.time() < deadline:
    time.sleep(0.02)
  assert runner(lambda: 7) == 7  # usable again once they returned
