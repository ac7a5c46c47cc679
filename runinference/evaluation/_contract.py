"""The metric contract: a mergeable accumulator over column blocks.

``MetricCombiner`` is what a user-defined metric implements (four methods,
each working on whole numpy blocks); ``Metric`` is a named view of one
combiner's result. Built-in metrics that need the same statistics (accuracy,
precision, recall and F1 all read one confusion matrix) share a combiner, so
each statistic is computed once per block.
"""
from __future__ import annotations

from typing import Any, Callable, Hashable, Optional

from ..exceptions import ConfigurationError, ConfigurationTypeError
from ._blocks import Block


class MetricCombiner:
  """A mergeable metric over blocks, as a Beam ``CombineFn`` but vectorised.

  Subclass it for a user-defined metric and give an instance to
  ``EvaluateModel(metrics=[...])``::

      class MaxError(MetricCombiner):
        name = 'max_error'
        def create_accumulator(self):
          return 0.0
        def add_block(self, acc, block):
          return max(acc, float(abs(block.labels - block.predictions).max()))
        def merge_accumulators(self, accs):
          return max(accs)
        def extract(self, acc):
          return acc

  ``add_block`` gets a ``Block``: ``labels``, ``predictions`` and
  ``weights`` numpy arrays (the weights are all 1 without a weight column,
  and Poisson draws under bootstrap); it may update ``acc`` in place.
  """
  #: the metric's name in the output (user-defined metrics).
  name: str = ''
  #: False for a metric whose value is not a number (no interval, no
  #: threshold).
  scalar: bool = True

  def create_accumulator(self) -> Any:
    raise NotImplementedError

  def add_block(self, acc: Any, block: Block) -> Any:
    raise NotImplementedError

  def merge_accumulators(self, accs: list) -> Any:
    raise NotImplementedError

  def extract(self, acc: Any) -> Any:
    raise NotImplementedError

  def key(self) -> Hashable:
    """Combiners with equal keys are computed once (built-ins: class and
    parameters; by default every instance is its own)."""
    return (type(self).__qualname__, id(self))

  def for_bootstrap(self) -> 'MetricCombiner':
    """The combiner each bootstrap replicate uses (a cheaper one where the
    exact one keeps every example)."""
    return self


class Metric:
  """A named value read from one combiner's result by ``view``."""
  def __init__(self, name: str, combiner: MetricCombiner,
               view: Optional[Callable[[Any], Any]] = None,
               scalar: bool = True):
    self.name = name
    self.combiner = combiner
    self.view = view or (lambda x: x)
    self.scalar = scalar

  def __repr__(self):
    return f'Metric({self.name!r})'


def as_metric(obj: Any) -> Metric:
  if isinstance(obj, Metric):
    return obj
  if isinstance(obj, MetricCombiner):
    if not obj.name:
      raise ConfigurationError(
          f'{type(obj).__name__} needs a name (class attribute `name`).')
    return Metric(obj.name, obj, scalar=obj.scalar)
  raise ConfigurationTypeError(
      f'a metric is a Metric or a MetricCombiner, got {type(obj).__name__}: '
      f'{obj!r:.80}.')


__all__ = ['Metric', 'MetricCombiner']
