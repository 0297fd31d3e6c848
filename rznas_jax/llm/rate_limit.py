"""A requests-per-minute limiter: at most N call starts in any 60-second window."""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable


class RequestsPerMinuteLimiter:
  """Blocks `acquire` until a call may start without exceeding `requests_per_minute`.

  A sliding window (not a fixed spacing): a short search may use its whole minute's quota at
  once, and no 60-second window ever holds more than the limit, which is how provider quotas
  count. Thread-safe.
  """

  def __init__(self, requests_per_minute: int, *, clock: Callable[[], float] = time.monotonic,
               sleep: Callable[[float], None] = time.sleep, window_s: float = 60.0):
    """Starts with an empty window.

    Args:
      requests_per_minute: the limit, at least 1.
      clock: monotonic seconds (injectable for tests).
      sleep: waits that many seconds (injectable for tests).
      window_s: the window's length.

    Raises:
      ValueError: the limit is below 1.
    """
    if requests_per_minute < 1:
      raise ValueError(f"requests_per_minute={requests_per_minute} must be at least 1 "
                       "(use 0 or None for no limit).")
    self.requests_per_minute = requests_per_minute
    self._clock = clock
    self._sleep = sleep
    self._window_s = window_s
    self._starts: collections.deque[float] = collections.deque()
    self._lock = threading.Lock()

  def acquire(self) -> float:
    """Waits for a free place in the window and takes it.

    Returns:
      Seconds waited.
    """
    waited = 0.0
    while True:
      with self._lock:
        now = self._clock()
        while self._starts and self._starts[0] <= now - self._window_s:
          self._starts.popleft()
        if len(self._starts) < self.requests_per_minute:
          self._starts.append(now)
          return waited
        wait = self._starts[0] + self._window_s - now
      self._sleep(wait)
      waited += wait
