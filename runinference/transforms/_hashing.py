"""String hashing that matches TensorFlow's bucket hashes bit for bit.

* ``fingerprint64``: FarmHash Fingerprint64 (``tf.strings.to_hash_bucket_fast``,
  out-of-vocabulary buckets of vocabulary lookups), from ``pyfarmhash``.
* ``siphash24``: keyed SipHash-2-4 (``tf.strings.to_hash_bucket_strong``).
"""
from __future__ import annotations

import struct
from ..exceptions import MissingDependencyError
from typing import Sequence

_MASK = 0xFFFFFFFFFFFFFFFF


def _farmhash():
  try:
    import farmhash  # pyfarmhash
  except ImportError as e:  # pragma: no cover - depends on the install
    raise MissingDependencyError(
        'HashStrings and num_oov_buckets need pyfarmhash (FarmHash '
        "Fingerprint64, as TensorFlow uses): pip install 'runinference[transforms]' "
        'or pip install pyfarmhash') from e
  return farmhash


def fingerprint64(data: bytes) -> int:
  return _farmhash().fingerprint64(data)


def _rotl(x: int, b: int) -> int:
  return ((x << b) | (x >> (64 - b))) & _MASK


def siphash24(key: Sequence[int], data: bytes) -> int:
  """SipHash-2-4 of ``data`` with a 128-bit key given as two uint64."""
  k0, k1 = int(key[0]) & _MASK, int(key[1]) & _MASK
  v0 = k0 ^ 0x736f6d6570736575
  v1 = k1 ^ 0x646f72616e646f6d
  v2 = k0 ^ 0x6c7967656e657261
  v3 = k1 ^ 0x7465646279746573

  def rounds(v0, v1, v2, v3, n):
    for _ in range(n):
      v0 = (v0 + v1) & _MASK
      v1 = _rotl(v1, 13) ^ v0
      v0 = _rotl(v0, 32)
      v2 = (v2 + v3) & _MASK
      v3 = _rotl(v3, 16) ^ v2
      v0 = (v0 + v3) & _MASK
      v3 = _rotl(v3, 21) ^ v0
      v2 = (v2 + v1) & _MASK
      v1 = _rotl(v1, 17) ^ v2
      v2 = _rotl(v2, 32)
    return v0, v1, v2, v3

  n = len(data)
  end = n - n % 8
  for off in range(0, end, 8):
    m = struct.unpack_from('<Q', data, off)[0]
    v3 ^= m
    v0, v1, v2, v3 = rounds(v0, v1, v2, v3, 2)
    v0 ^= m
  last = ((n & 0xFF) << 56) | int.from_bytes(data[end:] + b'\0' * 8, 'little') \
      & 0x00FFFFFFFFFFFFFF
  v3 ^= last
  v0, v1, v2, v3 = rounds(v0, v1, v2, v3, 2)
  v0 ^= last
  v2 ^= 0xFF
  v0, v1, v2, v3 = rounds(v0, v1, v2, v3, 4)
  return v0 ^ v1 ^ v2 ^ v3


def hash_buckets(tokens, num_buckets: int, key=None) -> list[int]:
  """Bucket of each token (bytes) in ``[0, num_buckets)``."""
  if key is None:
    fp = _farmhash().fingerprint64
    return [fp(t) % num_buckets for t in tokens]
  return [siphash24(key, t) % num_buckets for t in tokens]
