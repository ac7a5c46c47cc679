"""The coder of blocks between MLTransform's steps.

Beam samples the size of the elements each step outputs for its counters; a
coder's default size estimate encodes the element, so every sampled block
was pickled once just to be measured (8% of a read-mode run). Blocks are
measured from their buffers instead.
"""
from __future__ import annotations

import pickle

import apache_beam as beam

from ._blocks import Block


class BlockCoder(beam.coders.Coder):
  """Pickles a block (its rows travel as one blob); sizes it without pickling."""
  def encode(self, value: Block) -> bytes:
    return pickle.dumps(value, pickle.HIGHEST_PROTOCOL)

  def decode(self, encoded: bytes) -> Block:
    return pickle.loads(encoded)

  def is_deterministic(self) -> bool:
    return False

  def estimate_size(self, value: Block) -> int:
    return value.estimated_bytes()

  def to_type_hint(self):
    return Block


def register() -> None:
  """Makes BlockCoder the coder of every PCollection of blocks."""
  beam.coders.registry.register_coder(Block, BlockCoder)
