"""The ModelHandler contract and the wrappers that add pre/post-processing or
turn batching off. Knows nothing of Beam."""
from __future__ import annotations

import dataclasses
import os
import pickle
from types import MappingProxyType
from typing import (Any, Callable, ClassVar, Generic, Iterable, Mapping,
                    Optional, Sequence, TypeVar, Union)

from ..exceptions import ConfigurationError, ConfigurationTypeError
from .batching import check_required_pairs
from .integrity import DigestSpec, allowed_digests
from .options import reject_unknown
from .types import KeyModelPathMapping

ExampleT = TypeVar('ExampleT')
PredictionT = TypeVar('PredictionT')
ModelT = TypeVar('ModelT')
PreProcessT = TypeVar('PreProcessT')
PostProcessT = TypeVar('PostProcessT')

_EMPTY: Mapping = MappingProxyType({})


@dataclasses.dataclass(frozen=True)
class MatrixPredictor:
  """How a handler's loaded model predicts many rows at once: the hook the
  columnar path (``RunInferenceColumnar``) uses.

  ``fn(model, features, inference_args)`` returns one prediction per row
  (an array, a 2-D array, or a dict of such per output). ``takes`` is
  ``'numpy'`` (a 2-D feature matrix) or ``'pandas'`` (a DataFrame of the
  feature columns, for models that need column names).
  """
  fn: Callable[[Any, Any, dict], Any]
  takes: str = 'numpy'

  def __post_init__(self):
    if not callable(self.fn):
      raise ConfigurationTypeError(f'MatrixPredictor.fn must be callable, got {self.fn!r}.')
    if self.takes not in ('numpy', 'pandas'):
      raise ConfigurationError(
          f"MatrixPredictor.takes must be 'numpy' or 'pandas', got "
          f'{self.takes!r}.')

  def __call__(self, model, features, inference_args: dict):
    return self.fn(model, features, inference_args)


class ModelHandler(Generic[ExampleT, PredictionT, ModelT]):
  """Loads a model and runs it on a batch of examples.

  Subclasses implement ``load_model`` and ``run_inference``; everything else
  has a working default. Subclasses that never call ``super().__init__()``
  still work: every attribute read below has a class-level default.
  """
  # Class-level defaults so handlers that skip __init__ behave as configured
  # with no options.
  _env_vars: Mapping[str, str] = _EMPTY
  _batching_kwargs: Mapping[str, Any] = _EMPTY
  _large_model: bool = False
  _model_copies: Optional[int] = None
  _share_across_processes: bool = False
  _model_sha256: frozenset = frozenset()
  #: The attribute holding the path/URI of the model file, for handlers whose
  #: model is one location: ``model_location``, the default
  #: ``update_model_path`` and ``__repr__`` read it.
  _model_location_attr: ClassVar[Optional[str]] = None

  def __init__(
      self,
      *,
      min_batch_size: Optional[int] = None,
      max_batch_size: Optional[int] = None,
      max_batch_duration_secs: Optional[float] = None,
      max_batch_weight: Optional[int] = None,
      element_size_fn: Optional[Callable[[Any], int]] = None,
      batch_length_fn: Optional[Callable[[Any], int]] = None,
      batch_bucket_boundaries: Optional[list[int]] = None,
      large_model: bool = False,
      model_copies: Optional[int] = None,
      model_sha256: DigestSpec = None,
      **kwargs):
    """
    Args:
      min_batch_size: smallest batch to run (batches grow adaptively from it).
      max_batch_size: largest batch to run.
      max_batch_duration_secs: longest an element waits for its batch; with
        it, batches span bundles (a streaming pipeline's small bundles).
      max_batch_weight: most total weight in one batch (needs
        ``element_size_fn``), e.g. a token budget.
      element_size_fn: weight of one element, e.g. its number of tokens;
        without ``max_batch_weight``, its contribution to the batch size
        that ``min_batch_size``/``max_batch_size`` bound (as Beam's
        ``BatchElements``).
      batch_length_fn: length of one element; elements of similar length
        (see ``batch_bucket_boundaries``) are batched together.
      batch_bucket_boundaries: sorted length boundaries of the buckets,
        default ``[16, 32, 64, 128, 256, 512]``.
      large_model: hold one copy of the model per machine, shared by the
        worker processes, instead of one per process.
      model_copies: exactly how many copies to hold per machine.
      model_sha256: the SHA-256 hex digest of the model file, or a
        collection of allowed digests: a file with another digest is never
        loaded (checked before every load, refreshes included).
      env_vars: environment variables set before the model loads.
    """
    env_vars = kwargs.pop('env_vars', None)
    reject_unknown(type(self).__name__, kwargs, _OPTIONS)
    if env_vars is not None and not isinstance(env_vars, Mapping):
      raise ConfigurationTypeError(
          f'env_vars must be a dict of str to str, got {env_vars!r:.100}.')
    if model_copies is not None and (
        isinstance(model_copies, bool) or not isinstance(model_copies, int) or
        model_copies < 1):
      raise ConfigurationError(
          f'model_copies must be a positive integer, got {model_copies!r} '
          '(leave it unset for one model per process).')
    self._env_vars = dict(env_vars or {})
    self._model_sha256 = allowed_digests(model_sha256)
    batching = {
        'min_batch_size': min_batch_size,
        'max_batch_size': max_batch_size,
        'max_batch_duration_secs': max_batch_duration_secs,
        'max_batch_weight': max_batch_weight,
        'element_size_fn': element_size_fn,
        'length_fn': batch_length_fn,
        'bucket_boundaries': batch_bucket_boundaries,
    }
    self._batching_kwargs = {k: v for k, v in batching.items() if v is not None}
    check_required_pairs(max_batch_weight, element_size_fn, batch_length_fn,
                         batch_bucket_boundaries)
    self._large_model = large_model
    self._model_copies = model_copies
    self._share_across_processes = large_model or (model_copies is not None)

  @property
  def model_sha256(self) -> frozenset:
    """Allowed SHA-256 digests of the model file (empty: any file)."""
    return self._model_sha256

  def load_model(self) -> ModelT:
    """Loads and returns the model."""
    raise NotImplementedError(type(self))

  def run_inference(
      self,
      batch: Sequence[ExampleT],
      model: ModelT,
      inference_args: Optional[dict[str, Any]] = None) -> Iterable[PredictionT]:
    """Runs the model on a batch; returns one prediction per example."""
    raise NotImplementedError(type(self))

  def get_num_bytes(self, batch: Sequence[ExampleT]) -> int:
    """Size of a batch in bytes (for the batch byte-size metric)."""
    return len(pickle.dumps(batch))

  def get_metrics_namespace(self) -> str:
    return 'RunInference'

  def get_resource_hints(self) -> dict:
    return {}

  def batch_elements_kwargs(self) -> Mapping[str, Any]:
    return self._batching_kwargs

  def validate_inference_args(self, inference_args: Optional[dict[str, Any]]):
    """Raise here to reject ``inference_args`` at pipeline construction."""

  @property
  def model_location(self) -> Optional[str]:
    """Path or URI of the model this handler loads (None if it has none);
    also the ``model_id`` of its results."""
    attr = self._model_location_attr
    value = getattr(self, attr, None) if attr else None
    return value if isinstance(value, str) else None

  def update_model_path(self, model_path: Optional[str] = None):
    """Point the handler at a new model; the next ``load_model`` loads it."""
    if model_path and self._model_location_attr:
      setattr(self, self._model_location_attr, model_path)

  def matrix_predictor(self) -> Optional[MatrixPredictor]:
    """How the loaded model predicts a whole feature matrix at once, for
    ``RunInferenceColumnar``; None (the default) if it cannot."""
    return None

  def update_model_paths(
      self,
      model: ModelT,
      model_paths: Optional[Union[str, list[KeyModelPathMapping]]] = None):
    """Like ``update_model_path`` for handlers that hold many models."""

  def get_preprocess_fns(self) -> list[Callable[[Any], Any]]:
    """Functions run on each element before batching, in the order they run
    (the last applied runs first)."""
    return []

  def get_postprocess_fns(self) -> list[Callable[[Any], Any]]:
    """Functions run on each prediction, in application order."""
    return []

  def should_skip_batching(self) -> bool:
    return False

  def set_environment_vars(self):
    for name, value in self._env_vars.items():
      os.environ[name] = value

  def with_preprocess_fn(
      self, fn: Callable[[PreProcessT], ExampleT]
  ) -> 'ModelHandler[PreProcessT, PredictionT, ModelT]':
    """A handler that runs ``fn`` on each element first. Several run from
    the last applied to the first applied."""
    return _PreProcessingModelHandler(self, fn)

  def with_postprocess_fn(
      self, fn: Callable[[PredictionT], PostProcessT]
  ) -> 'ModelHandler[ExampleT, PostProcessT, ModelT]':
    """A handler that runs ``fn`` on each prediction. Several run in the
    order applied."""
    return _PostProcessingModelHandler(self, fn)

  def with_no_batching(self) -> 'ModelHandler':
    """A handler whose input elements are already batches."""
    return _PrebatchedModelHandler(self)

  def share_model_across_processes(self) -> bool:
    return self._share_across_processes

  def model_copies(self) -> int:
    return self._model_copies or 1

  def override_metrics(self, metrics_namespace: str = '') -> bool:
    """Return True if the handler reports its own metrics."""
    return False

  def should_garbage_collect_on_timeout(self) -> bool:
    return self.share_model_across_processes()

  def overlap_by_default(self) -> bool:
    """Whether ``RunInference`` runs this handler's model calls on a thread
    of their own by default, so the model works on one batch while the
    pipeline builds the next (``RunInference(overlap=...)`` decides per
    step). True pays off when the CPU is free while a call runs: waiting on
    a server, or a model on a GPU. On the CPU a framework's threads already
    fill the cores, and a call that is mostly Python (a small scikit-learn
    model stacking rows) contends with the pipeline for the GIL."""
    return False

  def __repr__(self):
    attr = self._model_location_attr
    if attr is None:
      return super().__repr__()
    return f'{type(self).__name__}({attr.lstrip("_")}={self.model_location!r})'


_OPTIONS = (
    'min_batch_size', 'max_batch_size', 'max_batch_duration_secs',
    'max_batch_weight', 'element_size_fn', 'batch_length_fn',
    'batch_bucket_boundaries', 'large_model', 'model_copies', 'model_sha256',
    'env_vars')


#: The contract a wrapper forwards to the handler it wraps (properties
#: first): ``forwarding(attr, names)`` builds the forwarding methods.
CONTRACT_PROPERTIES = ('model_location', 'model_sha256')
CONTRACT_METHODS = (
    'load_model', 'run_inference', 'get_num_bytes', 'matrix_predictor',
    'get_metrics_namespace', 'get_resource_hints', 'batch_elements_kwargs',
    'validate_inference_args', 'update_model_path', 'update_model_paths',
    'get_preprocess_fns', 'get_postprocess_fns', 'should_skip_batching',
    'set_environment_vars', 'share_model_across_processes', 'model_copies',
    'override_metrics', 'should_garbage_collect_on_timeout',
    'overlap_by_default')


def _forward_method(attr: str, name: str):
  def forward(self, *args, **kwargs):
    return getattr(getattr(self, attr), name)(*args, **kwargs)
  forward.__name__ = forward.__qualname__ = name
  forward.__doc__ = f'``self.{attr}.{name}(...)``.'
  return forward


def _forward_property(attr: str, name: str):
  return property(lambda self: getattr(getattr(self, attr), name),
                  doc=f'``self.{attr}.{name}``.')


def forwarding(attr: str, names, *, module: str = __name__) -> type:
  """A mixin whose methods (and contract properties) named in ``names``
  forward to the handler in ``self.<attr>``: the one way a wrapper hands on
  the parts of the contract it does not change. Put it before
  ``ModelHandler`` in the bases so that it wins over the defaults."""
  namespace: dict = {'__module__': module}
  for name in names:
    namespace[name] = (_forward_property(attr, name)
                       if name in CONTRACT_PROPERTIES else
                       _forward_method(attr, name))
  return type(f'Forwarding_{attr.lstrip("_")}', (), namespace)


_FORWARD_BASE = forwarding('_base', CONTRACT_PROPERTIES + CONTRACT_METHODS)


class _DelegatingModelHandler(_FORWARD_BASE, ModelHandler):  # type: ignore[misc,valid-type]
  """Forwards the whole contract to ``base``; wrappers override a part."""
  def __init__(self, base: ModelHandler):
    self._base = base
    self._env_vars = base._env_vars

  def __getattr__(self, name):
    # Framework-specific attributes (e.g. _model_uri) of the wrapped handler.
    if name.startswith('__') or name == '_base':
      raise AttributeError(name)
    return getattr(self._base, name)


class _PreProcessingModelHandler(_DelegatingModelHandler):
  def __init__(self, base: ModelHandler, fn: Callable[[Any], Any]):
    super().__init__(base)
    self._fn = fn

  def get_preprocess_fns(self):
    return [self._fn] + list(self._base.get_preprocess_fns())


class _PostProcessingModelHandler(_DelegatingModelHandler):
  def __init__(self, base: ModelHandler, fn: Callable[[Any], Any]):
    super().__init__(base)
    self._fn = fn

  def get_postprocess_fns(self):
    return list(self._base.get_postprocess_fns()) + [self._fn]


class _PrebatchedModelHandler(_DelegatingModelHandler):
  def should_skip_batching(self):
    return True
