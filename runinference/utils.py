"""Helpers importable as in ``apache_beam.ml.inference.utils``."""
from ._core.naming import relabel
from ._core.watch import _START_TIME_STAMP, WatchFilePattern
from ._core.watch_compat import (_ConvertIterToSingleton,
                                   _GetLatestFileByTimeStamp)
from ._core.results import to_results as _convert_to_result

__all__ = ['WatchFilePattern']

relabel(globals())
