"""The search's PRNG keys in NumPy: JAX's default key derivation, bit for bit, without JAX.

A search state carries its key as data (two uint32 as ints) and derives every draw from it
(`rznas_jax.search.state.plan_step`). The keys were made with ``jax.random`` when the search was
written; this module computes the same values so that the state needs no JAX and a run recorded
before still replays to the same result:

* `seed_key` is ``jax.random.key(seed)`` with JAX's default ``threefry2x32`` implementation and
  64-bit types off (the key is ``(0, seed mod 2**32)``);
* `split` is ``jax.random.split(key, num)`` with ``jax_threefry_partitionable`` on (JAX's default
  since 0.5): key ``i`` is Threefry-2x32 of the counter pair ``(0, i)``.

Threefry-2x32 with 20 rounds is the counter-based generator of Salmon et al., "Parallel random
numbers: as easy as 1, 2, 3" (SC 2011); the rotation constants and key schedule are JAX's
(``jax._src.prng.threefry2x32``). ``tests/test_search_parts.py`` checks both functions against
``jax.random``.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

KeyData = tuple[int, ...]

_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_PARITY = 0x1BD11BDA  # Threefish's key-schedule constant
_MASK = 0xFFFFFFFF


def threefry2x32(key: Sequence[int], x0: np.ndarray,
                 x1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Threefry-2x32 (20 rounds) of the counter words ``(x0, x1)`` under ``key``.

  Args:
    key: two uint32 values.
    x0, x1: uint32 arrays of one shape, the counters' two words.

  Returns:
    The two output words, uint32 arrays of that shape.
  """
  k0, k1 = (np.uint32(int(k) & _MASK) for k in key)
  schedule = (k0, k1, k0 ^ k1 ^ np.uint32(_PARITY))
  x0 = np.asarray(x0, np.uint32)
  x1 = np.asarray(x1, np.uint32)
  with np.errstate(over="ignore"):  # uint32 arithmetic is meant to wrap around
    x0 = x0 + schedule[0]
    x1 = x1 + schedule[1]
    for i in range(5):
      for r in _ROTATIONS[i % 2]:
        x0 = x0 + x1
        x1 = (x1 << np.uint32(r)) | (x1 >> np.uint32(32 - r))
        x1 = x1 ^ x0
      x0 = x0 + schedule[(i + 1) % 3]
      x1 = x1 + schedule[(i + 2) % 3] + np.uint32(i + 1)
  return x0, x1


def seed_key(seed: int) -> KeyData:
  """The key data of ``jax.random.key(seed)`` (64-bit types off): ``(0, seed mod 2**32)``."""
  return (0, int(seed) & _MASK)


def split(key: Sequence[int], num: int = 2) -> tuple[KeyData, ...]:
  """The key data of ``jax.random.split(key, num)``: ``num`` new keys, none equal to ``key``."""
  high, low = threefry2x32(key, np.zeros(num, np.uint32), np.arange(num, dtype=np.uint32))
  return tuple((int(h), int(l)) for h, l in zip(high, low))
