"""`LLMClient`: retries, timeouts, a concurrency cap, a rate limit, counters and the run log.

Every backend is wrapped in one client, so that a search sees the same behaviour whichever model
answers:

* HTTP 408, 429 and 5xx, timeouts and broken connections are retried with exponential backoff
  and jitter, waiting at least as long as a Retry-After header asks; a malformed 200 body is
  retried at most twice (a proxy hiccup), since a server that keeps sending one will not stop.
* Other HTTP 4xx end the call at once with one sentence: the key was rejected (401/403), the
  model does not exist (404), or the server's own message (400, ...).
* At most `max_concurrency` calls are in flight; optionally at most `requests_per_minute` start
  in any minute. Retry waits do not hold a concurrency slot.
* Every exchange, answered or failed, is appended to the JSONL log (`replay.py`); API keys given
  as `secrets` are scrubbed from the log and from error messages.

Example:
  >>> client = LLMClient(GeminiBackend("gemini-2.5-flash", api_key=key), log_path="run/llm_log.jsonl",
  ...                    secrets=(key,))
  >>> replies = client.complete_many(requests)        # Response or LLMError, in request order
  >>> client.stats()["cost_usd"]
"""

from __future__ import annotations

import concurrent.futures
import os
import random
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from rznas_jax.llm.base import Backend, LLMError, Request, Response
from rznas_jax.llm.errors import (LLMConnectionError, LLMHTTPError, LLMMalformedResponseError,
                                  LLMTimeoutError)
from rznas_jax.llm.pricing import estimate_cost_usd
from rznas_jax.llm.rate_limit import RequestsPerMinuteLimiter
from rznas_jax.llm.replay import LLMLog, REDACTED, log_entry, utc_now_iso

_RETRYABLE_STATUS = frozenset({408, 409, 429})  # 409: OpenAI's "try again" conflict.
_FREE_BACKENDS = frozenset({"offline", "replay"})


class LLMClient:
  """Calls a `Backend` robustly from many threads; see the module docstring for the policy."""

  def __init__(self, backend: Backend, *, max_retries: int = 5, timeout_s: float | None = 60.0,
               max_concurrency: int = 8, requests_per_minute: int | None = None,
               log_path: str | os.PathLike | None = None,
               sleep: Callable[[float], None] = time.sleep, rng_seed: int = 0,
               secrets: Iterable[str] = (), backoff_base_s: float = 1.0,
               backoff_max_s: float = 60.0, max_malformed_retries: int = 2,
               clock: Callable[[], float] = time.monotonic):
    """Wraps a backend.

    Args:
      backend: what answers (Gemini, OpenAI-compatible, offline, replay).
      max_retries: retries after the first attempt (so at most max_retries + 1 attempts).
      timeout_s: seconds per attempt. Network backends enforce it themselves; as a safety net the
        client abandons an attempt that is still running at 1.5 x timeout_s + 1 s (an endpoint
        that trickles bytes defeats per-read HTTP timeouts). None disables the safety net.
      max_concurrency: most calls in flight at once, over all threads.
      requests_per_minute: most call starts in any 60 s; None or 0 for no limit.
      log_path: the JSONL log to append each exchange to; None for no log.
      sleep: how retry and rate-limit waits are made (tests pass a fake).
      rng_seed: seeds the backoff jitter.
      secrets: strings (API keys) that must never reach the log or an error message.
      backoff_base_s: the first retry's nominal wait; it doubles each retry.
      backoff_max_s: cap on the nominal wait.
      max_malformed_retries: retries allowed for malformed 200 bodies (within max_retries).
      clock: monotonic seconds for the rate limiter (tests pass a fake).

    Raises:
      ValueError: a limit is out of range (the message names it).
    """
    if max_retries < 0:
      raise ValueError(f"max_retries={max_retries} must be 0 or more.")
    if max_concurrency < 1:
      raise ValueError(f"max_concurrency={max_concurrency} must be at least 1.")
    if timeout_s is not None and timeout_s <= 0:
      raise ValueError(f"timeout_s={timeout_s} must be positive (or None for no safety net).")
    if requests_per_minute is not None and requests_per_minute < 0:
      raise ValueError(f"requests_per_minute={requests_per_minute} must be 0 (no limit) or more.")
    self.backend = backend
    self.max_retries = max_retries
    self.timeout_s = timeout_s
    self.max_concurrency = max_concurrency
    self.requests_per_minute = requests_per_minute or None
    self.backoff_base_s = backoff_base_s
    self.backoff_max_s = backoff_max_s
    self.max_malformed_retries = max_malformed_retries
    self._sleep = sleep
    self._secrets = tuple(s for s in secrets if s)
    self._slots = threading.BoundedSemaphore(max_concurrency)
    self._limiter = (RequestsPerMinuteLimiter(self.requests_per_minute, clock=clock, sleep=sleep)
                     if self.requests_per_minute else None)
    self._log = LLMLog(log_path, self._secrets) if log_path is not None else None
    self._rng = random.Random(rng_seed)
    self._lock = threading.Lock()
    self._stats: dict[str, Any] = dict(calls=0, failures=0, retries=0, attempts=0, input_tokens=0,
                                       output_tokens=0, cost_usd=0.0, structured={})

  def __repr__(self) -> str:
    return f"LLMClient({self.backend!r}, max_concurrency={self.max_concurrency})"

  @property
  def log_path(self) -> str | None:
    """Where exchanges are logged, or None."""
    return self._log.path if self._log is not None else None

  # -- public API ----------------------------------------------------------------------------------

  def complete(self, request: Request) -> Response:
    """Asks the backend, retrying what a retry can fix.

    Args:
      request: what to ask.

    Returns:
      The backend's response.

    Raises:
      LLMError: the call failed for good; the message is one sentence a person can act on.
    """
    started_at, start = utc_now_iso(), time.monotonic()
    attempts = malformed = 0
    while True:
      attempts += 1
      try:
        response = self._attempt(request)
      except LLMError as error:
        delay = self._retry_delay(error, attempts, malformed)
        if delay is not None:
          malformed += isinstance(error, LLMMalformedResponseError)
          with self._lock:
            self._stats["retries"] += 1
          self._sleep(delay)
          continue
        final = LLMError(self._scrub(self._final_message(error, attempts)))
        self._record(request, None, final, started_at, start, attempts)
        raise final from None
      except Exception as error:  # A bug in a backend: log it, then let it surface as is.
        self._record(request, None, error, started_at, start, attempts)
        raise
      self._record(request, response, None, started_at, start, attempts)
      return response

  def complete_many(self, requests: Sequence[Request]) -> list[Response | LLMError]:
    """Asks many requests concurrently (up to `max_concurrency` in flight).

    Args:
      requests: what to ask.

    Returns:
      One entry per request, in request order: its `Response`, or the `LLMError` it ended with.
      One failure does not stop the others.
    """
    if not requests:
      return []
    workers = min(len(requests), 2 * self.max_concurrency)  # Spares keep slots busy during waits.
    with concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="llm") as pool:
      futures = [pool.submit(self.complete, r) for r in requests]
      concurrent.futures.wait(futures)
    results: list[Response | LLMError] = []
    for future in futures:
      error = future.exception()
      if error is not None and not isinstance(error, LLMError):
        raise error
      results.append(error if error is not None else future.result())
    return results

  def stats(self) -> dict[str, Any]:
    """Counters since the client was made.

    Returns:
      calls (complete() calls), failures (calls that ended in LLMError), retries, attempts,
      input_tokens, output_tokens, cost_usd (a list-price estimate, `pricing.py`; 0 for unknown
      models, the offline agent and replays), structured ({form: answered calls} for the calls
      that asked for structured output, by the form they went out in: `structured.FORMS`).
    """
    with self._lock:
      out = dict(self._stats)
      out["structured"] = dict(self._stats["structured"])
      return out

  # -- one attempt ---------------------------------------------------------------------------------

  def _attempt(self, request: Request) -> Response:
    self._slots.acquire()
    try:
      if self._limiter is not None:
        self._limiter.acquire()
    except BaseException:
      self._slots.release()
      raise
    with self._lock:
      self._stats["attempts"] += 1
    if self.timeout_s is None:
      try:
        return self.backend.complete(request)
      finally:
        self._slots.release()
    # The attempt runs on its own thread, which owns the slot: if the safety net abandons it, the
    # slot stays taken until the backend really returns, so the cap holds even then.
    outcome: dict[str, Any] = {}
    done = threading.Event()

    def run():
      try:
        outcome["response"] = self.backend.complete(request)
      except BaseException as e:  # pylint: disable=broad-except  # Handed to the caller.
        outcome["error"] = e
      finally:
        self._slots.release()
        done.set()

    threading.Thread(target=run, name="llm-attempt", daemon=True).start()
    limit = 1.5 * self.timeout_s + 1.0
    if not done.wait(limit):
      raise LLMTimeoutError(f"no answer within {limit:g} s (the backend did not time out itself)")
    if "error" in outcome:
      raise outcome["error"]
    return outcome["response"]

  # -- policy --------------------------------------------------------------------------------------

  def _retry_delay(self, error: LLMError, attempts: int, malformed: int) -> float | None:
    """Seconds to wait before the next attempt, or None when the call must end now."""
    if attempts > self.max_retries:
      return None
    retry_after = None
    if isinstance(error, LLMHTTPError):
      if error.status not in _RETRYABLE_STATUS and error.status < 500:
        return None
      retry_after = error.retry_after
    elif isinstance(error, LLMMalformedResponseError):
      if malformed >= self.max_malformed_retries:
        return None
    elif not isinstance(error, (LLMTimeoutError, LLMConnectionError)):
      return None
    nominal = min(self.backoff_max_s, self.backoff_base_s * 2 ** (attempts - 1))
    with self._lock:
      jitter, spread = self._rng.random(), self._rng.random()
    delay = nominal * (0.5 + 0.5 * jitter)  # "Equal jitter": never much shorter than nominal.
    if retry_after is not None:
      # At least what the server asked, spread a little so that waiting calls do not return at once.
      delay = max(delay, retry_after * (1.0 + 0.1 * spread))
    return delay

  def _final_message(self, error: LLMError, attempts: int) -> str:
    name = getattr(self.backend, "name", type(self.backend).__name__)
    model = getattr(self.backend, "model", "?")
    if isinstance(error, LLMHTTPError):
      detail = f"HTTP {error.status}: {error.message}".rstrip(". ")
      if error.status in (401, 403):
        env = " or ".join(getattr(self.backend, "key_env_vars", ()))
        where = f"; set a valid key in {env}" if env else ""
        return f"The API key was rejected by the {name} backend ({detail}){where}."
      if error.status == 404:
        return (f"Model {model!r} was not found by the {name} backend ({detail}); set llm.model to "
                "a model this endpoint serves, or check llm.base_url.")
      if error.status < 500 and error.status not in _RETRYABLE_STATUS:
        return f"The {name} backend rejected the request ({detail})."
    if type(error) is LLMError:  # pylint: disable=unidiomatic-typecheck  # Already for people.
      return str(error)
    what = str(error).rstrip(". ")
    advice = ("lower llm.max_concurrency or set llm.requests_per_minute"
              if isinstance(error, LLMHTTPError) and error.status == 429
              else "raise llm.max_retries or llm.timeout_s")
    return (f"The {name} backend ({model}) failed after {attempts} attempt(s), the last with: "
            f"{what}; {advice}, or try again later.")

  # -- bookkeeping ---------------------------------------------------------------------------------

  def _scrub(self, text: str) -> str:
    for secret in self._secrets:
      text = text.replace(secret, REDACTED)
    return text

  def _record(self, request: Request, response: Response | None, error: BaseException | None,
              started_at: str, start: float, attempts: int) -> None:
    with self._lock:
      self._stats["calls"] += 1
      if response is None:
        self._stats["failures"] += 1
      else:
        self._stats["input_tokens"] += response.input_tokens
        self._stats["output_tokens"] += response.output_tokens
        if response.structured:
          forms = self._stats["structured"]
          forms[response.structured] = forms.get(response.structured, 0) + 1
        if response.backend not in _FREE_BACKENDS:
          self._stats["cost_usd"] += estimate_cost_usd(response.model, response.input_tokens,
                                                       response.output_tokens)
    if self._log is None:
      return
    message = None if error is None else (str(error) if isinstance(error, LLMError)
                                          else f"{type(error).__name__}: {error}")
    name = getattr(self.backend, "name", type(self.backend).__name__)
    self._log.append(log_entry(request, backend=name, started_at=started_at,
                               latency_s=time.monotonic() - start, attempts=attempts,
                               response=response, error=message))
