import apache_beam as beam
import json

from runinference.base import RunInference
from runinference.report import RunReport
from tests.helpers import MultiplierHandler, run_pipeline


def test_report_counts_rows_failures_and_batches():
  good = MultiplierHandler(min_batch_size=5, max_batch_size=5)
  bad = MultiplierHandler(fail_on={3}, min_batch_size=5, max_batch_size=5)

  def build(p):
    data = p | beam.Create(list(range(10)))
    _ = data | 'Good' >> RunInference(good)
    _ = data | 'Bad' >> RunInference(bad).with_exception_handling()

  report = RunReport.from_result(run_pipeline(build))
  by_step = {s.step.split('/')[0]: s for s in report.steps}
  assert by_step['Good'].inferences == 10
  assert by_step['Good'].batches == 2 and by_step['Good'].max_batch_size == 5
  assert by_step['Good'].model_loads == 1
  assert by_step['Bad'].inferences == 9
  assert by_step['Bad'].failed_inferences == 1
  assert report.total_inferences == 19 and report.total_failed == 1
  text = str(report)
  assert 'Good' in text and 'Bad' in text
  assert json.loads(report.to_json())['steps'][0]['namespace'] == 'Test_Multiplier'
