"""Helpers importable as in ``apache_beam.ml.inference.utils``."""
from ._refresh import (_START_TIME_STAMP, WatchFilePattern,
                       _ConvertIterToSingleton, _GetLatestFileByTimeStamp)
from ._results import to_results as _convert_to_result

__all__ = ['WatchFilePattern']
