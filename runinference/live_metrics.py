"""``runinference.live_metrics``: the live metrics registry, now
``runinference.report.live`` (this name keeps working: it is that module)."""
import sys

from runinference.report import live as _live

sys.modules[__name__] = _live
