"""Reports of a run: the run report (``RunReport``: text, JSON, a
self-contained HTML page) and the live metrics registry (``live``, also
importable as ``runinference.live_metrics``) that a running pipeline updates
and ``--metrics-port`` and the CLI's progress line read.

    result = pipeline.run()
    result.wait_until_finish()
    print(RunReport.from_result(result))
    RunReport.from_result(result).write_html('report.html')
"""
from . import live
from .run_report import (ErrorSample, RunContext, RunReport, StepReport,
                         TimelinePoint, public_step_name)

__all__ = ['ErrorSample', 'RunContext', 'RunReport', 'StepReport',
           'TimelinePoint', 'live', 'public_step_name']

from runinference._core.naming import relabel  # noqa: E402

relabel(globals())
