"""glibc malloc settings that make XLA:CPU scoring faster: keep freed memory in the heap.

XLA:CPU allocates one temporary buffer per call of a compiled function and frees it after. By
default glibc returns large blocks to the kernel (``mmap``/trim), so every call faults the same
pages in again; on the NB201 switch network's gradient that cost about 1.2x here (docs/scoring.md,
XLA:CPU). One arena, no ``mmap`` for large blocks and no trimming keep the pages.
The process's resident memory then stays at its peak, which scoring on a CPU can afford.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

# Set to 0 to leave glibc's defaults (`tune_unless_disabled`).
ENV_VAR = "RZNAS_MALLOC_TUNING"

# mallopt(3) parameters.
_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8


def keep_freed_memory() -> bool:
  """Sets the glibc options above; returns False (and changes nothing) without glibc."""
  name = ctypes.util.find_library("c")
  try:
    libc = ctypes.CDLL(name or "libc.so.6")
    mallopt = libc.mallopt
  except (OSError, AttributeError):
    return False  # not glibc (macOS, musl): nothing to tune
  return bool(mallopt(_M_ARENA_MAX, 1) and mallopt(_M_MMAP_MAX, 0)
              and mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))


def tune_unless_disabled() -> bool:
  """`keep_freed_memory`, unless the environment sets ``RZNAS_MALLOC_TUNING=0``: what the
  launchers and the scoring worker processes do first. Returns whether the options were set."""
  return os.environ.get(ENV_VAR, "1") != "0" and keep_freed_memory()
