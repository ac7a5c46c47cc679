"""Beam YAML's standard providers, with their Python transforms imported on
first use instead of up front.

Beam builds its standard providers eagerly: its ``python`` provider imports
``apache_beam.yaml.yaml_ml`` (and so sentence-transformers, transformers,
torch and, through torch, TensorFlow) and its ``AnomalyDetection`` provider
imports ``apache_beam.ml``, for every pipeline, used or not: 5-15 s and over
a gigabyte of memory before a pipeline of ``Create`` and ``WriteToText``
starts. ``standard_providers()`` here gives the same transforms with the
same providers, each Python factory imported when a pipeline uses it.
``lazy_standard_providers()`` puts it in place of Beam's while a pipeline is
built (``runinference run`` does; Beam's own ``apache_beam.yaml.main`` keeps
its eager providers).
"""
from __future__ import annotations

import collections.abc
import contextlib
from typing import Iterator


class _LazyFactories(collections.abc.Mapping):
  """``{type name: factory}`` whose factories are imported on first look-up
  (what Beam's ``InlineProvider`` keeps in ``_transform_factories``)."""

  def __init__(self, sources: dict, loader):
    self._sources = dict(sources)
    self._loader = loader
    self._loaded: dict = {}

  def __getitem__(self, name):
    if name not in self._loaded:
      self._loaded[name] = self._loader(self._sources[name])
    return self._loaded[name]

  def __iter__(self):
    return iter(self._sources)

  def __len__(self):
    return len(self._sources)


def _load_source(source):
  from apache_beam.utils import python_callable
  return python_callable.PythonCallableWithSource.load_from_source(source)


def inline_provider(urns: dict):
  """Beam's ``python`` provider of ``{type: qualified name}``, each factory
  imported on first use."""
  from apache_beam.yaml.yaml_provider import InlineProvider
  return InlineProvider(_LazyFactories(urns, _load_source))


def _anomaly_detection(_):
  from apache_beam.ml.anomaly.transforms import AnomalyDetection
  return AnomalyDetection


def _spec_provider():
  """Beam's ``create_spec_providers()`` without importing ``apache_beam.ml``
  until ``AnomalyDetection`` is used."""
  from apache_beam.yaml.yaml_provider import InlineProvider

  class LazySpecProvider(InlineProvider):
    def create_transform(self, type, args, yaml_create_transform):
      from apache_beam.yaml.yaml_specifiable import SpecProvider
      return SpecProvider.create_transform(self, type, args,
                                           yaml_create_transform)

  return LazySpecProvider(_LazyFactories({'AnomalyDetection': None},
                                         _anomaly_detection))


def _file_providers():
  """The providers of Beam's ``standard_providers.yaml``, its plain
  ``python`` ones lazy."""
  import yaml
  from apache_beam.yaml import yaml_provider, yaml_utils
  from apache_beam.yaml.yaml_utils import SafeLineLoader
  path = yaml_utils.locate_data_file('standard_providers.yaml')
  with open(path) as f:
    specs = yaml.load(f, Loader=SafeLineLoader)
  out = []
  for spec in specs:
    plain = SafeLineLoader.strip_metadata(spec)
    if (plain.get('type') == 'python' and not plain.get('config')
        and 'include' not in plain):
      out.append(inline_provider(plain['transforms']))
    else:
      out.extend(yaml_provider.parse_providers(path, [spec]))
  return out


_CACHE: list = []


def standard_providers():
  """What ``apache_beam.yaml.yaml_provider.standard_providers()`` returns,
  with the Python factories imported on first use."""
  if not _CACHE:
    from apache_beam.yaml import yaml_provider
    from apache_beam.yaml.yaml_combine import create_combine_providers
    from apache_beam.yaml.yaml_io import io_providers
    from apache_beam.yaml.yaml_join import create_join_providers
    from apache_beam.yaml.yaml_mapping import create_mapping_providers
    _CACHE.append(yaml_provider.merge_providers(
        yaml_provider.YamlProviders.create_builtin_provider(),
        yaml_provider.create_java_builtin_provider(),
        create_mapping_providers(),
        create_combine_providers(),
        create_join_providers(),
        io_providers(),
        _spec_provider(),
        _file_providers()))
  return _CACHE[0]


@contextlib.contextmanager
def lazy_standard_providers() -> Iterator[None]:
  """While active, Beam YAML expands pipelines with ``standard_providers()``
  from here."""
  from apache_beam.yaml import yaml_provider
  eager = yaml_provider.standard_providers
  yaml_provider.standard_providers = standard_providers
  try:
    yield
  finally:
    yaml_provider.standard_providers = eager
