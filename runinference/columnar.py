"""The columnar fast path: score whole chunks of rows at once.

Each element is a chunk of rows -- a ``pyarrow.RecordBatch``, a
``pyarrow.Table`` or a ``pandas.DataFrame`` (e.g. from
``beam.io.ReadFromParquetBatched``). The model runs once per chunk on a 2-D
matrix of the feature columns, and the same chunk comes out with the
prediction column(s) appended: no Python object per row::

    from runinference.columnar import RunInferenceColumnar
    from runinference.sklearn_inference import SklearnModelHandlerNumpy

    scored = (p
              | beam.io.ReadFromParquetBatched('rows-*.parquet')
              | RunInferenceColumnar(SklearnModelHandlerNumpy('model.pkl'),
                                     feature_columns=['x1', 'x2', 'x3']))

Needs ``pyarrow`` and/or ``pandas`` (``pip install 'runinference[arrow]'``),
imported only when chunks of theirs arrive.
"""
from ._columnar.transform import RunInferenceColumnar
from ._core.contract import MatrixPredictor
from ._core.naming import relabel
from .exceptions import MissingColumnsError

__all__ = ['MatrixPredictor', 'MissingColumnsError', 'RunInferenceColumnar']

relabel(globals())
