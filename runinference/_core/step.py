"""What every inference step shares, whatever its unit (element or chunk):
the model holder, metrics, dead-letter counts and the failure threshold."""
from __future__ import annotations

from typing import Optional

from ..exceptions import FailureThresholdExceeded
from .failures import ErrorPolicy
from .metrics import MetricsCollector
from .model_holder import LoadedModel, ModelHolder


class InferenceStep:
  """Base of ``InferenceEngine`` and ``ColumnarScorer``.

  Subclasses set ``holder``, ``namespace`` and ``policy`` and list in
  ``_RUNTIME`` the attributes ``_init_runtime`` rebuilds after unpickling.
  """
  _STEP_NAME = 'RunInference'
  _UNIT = 'elements'
  _RUNTIME: tuple = ('metrics', 'counts')

  holder: ModelHolder
  namespace: str
  policy: ErrorPolicy
  metrics: Optional[MetricsCollector]
  counts: list  # [seen, dead-lettered]

  def _init_runtime(self) -> None:
    self.metrics = None
    self.counts = [0, 0]

  def __getstate__(self):
    state = self.__dict__.copy()
    for name in self._RUNTIME:
      state.pop(name, None)
    return state

  def __setstate__(self, state):
    self.__dict__.update(state)
    self._init_runtime()

  def setup_model(self, load: bool) -> None:
    """Sets env vars and metrics; loads the model now if ``load``."""
    handler = self.holder.handler
    handler.set_environment_vars()
    self.metrics = (
        None if handler.override_metrics(self.namespace) else
        MetricsCollector(self.namespace))
    if load:
      loaded = self.holder.get()
      if self.metrics is not None:
        # Metrics recorded during DoFn.setup are dropped by some runners.
        self.metrics.cache_load_model_metrics(loaded.load_ms, loaded.byte_size)

  def loaded_model(self) -> LoadedModel:
    """The model to call, loading it (and recording the load) if needed."""
    fresh = self.holder.loaded is None
    loaded = self.holder.get()
    if fresh and self.metrics is not None:
      self.metrics.update_load_model_metrics(loaded.load_ms, loaded.byte_size)
    return loaded

  def check_threshold(self) -> None:
    seen, dead = self.counts
    if seen and self.policy.threshold < 1 and dead / seen > self.policy.threshold:
      raise FailureThresholdExceeded(
          f'{dead} of {seen} {self._UNIT} failed in {self._STEP_NAME}, over '
          f'the threshold of {self.policy.threshold:.0%} set in '
          'with_exception_handling(threshold=...).')
