"""Typed failures that backends raise and `LLMClient` sorts into retry or give up.

A backend turns whatever its SDK raises into one of these; the client decides what to do with
it (`LLMClient._classify`): HTTP 408/429/5xx, timeouts, dropped connections and (a few times)
malformed bodies are retried; other HTTP 4xx and plain `LLMError`s end the call at once.
"""

from __future__ import annotations

import datetime
import email.utils
from collections.abc import Mapping

from rznas_jax.llm.base import LLMError

# Longest wait a Retry-After header may impose; a server asking for more is waited on this long.
MAX_RETRY_AFTER_S = 300.0


class LLMHTTPError(LLMError):
  """The server answered with an HTTP error status.

  Attributes:
    status: the HTTP status code.
    retry_after: seconds the server asked us to wait (Retry-After), or None.
    message: the server's own explanation, as plain text.
  """

  def __init__(self, status: int, retry_after: float | None, message: str):
    super().__init__(f"HTTP {status}: {message}")
    self.status = status
    self.retry_after = retry_after
    self.message = message


class LLMTimeoutError(LLMError):
  """No answer within the per-call timeout."""


class LLMConnectionError(LLMError):
  """The connection could not be made or broke before an answer arrived."""


class LLMMalformedResponseError(LLMError):
  """The server answered 200 with a body that is not the protocol's JSON (or has no reply)."""


def parse_retry_after(headers: Mapping[str, str] | None) -> float | None:
  """Reads how long a server asked us to wait.

  Understands `Retry-After` in seconds or as an HTTP date (RFC 9110 §10.2.3), and the
  `retry-after-ms` header that OpenAI sends.

  Args:
    headers: response headers (case-insensitive mapping, e.g. httpx's), or None.

  Returns:
    Seconds to wait, clipped to [0, MAX_RETRY_AFTER_S], or None when no usable header is there.
  """
  if not headers:
    return None
  lowered = {str(k).lower(): str(v) for k, v in headers.items()}
  seconds = None
  if "retry-after-ms" in lowered:
    try:
      seconds = float(lowered["retry-after-ms"]) / 1000.0
    except ValueError:
      seconds = None
  if seconds is None and "retry-after" in lowered:
    value = lowered["retry-after"].strip()
    try:
      seconds = float(value)
    except ValueError:
      try:
        when = email.utils.parsedate_to_datetime(value)
      except (TypeError, ValueError):
        return None
      if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.timezone.utc)
      seconds = (when - datetime.datetime.now(datetime.timezone.utc)).total_seconds()
  if seconds is None:
    return None
  return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)
