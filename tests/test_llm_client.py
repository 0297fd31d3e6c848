"""LLMClient's policy with scripted in-process backends: retries, waits, limits, counters."""

import threading
import time

import pytest

from rznas_jax.llm import (LLMClient, LLMConnectionError, LLMError, LLMHTTPError,
                           LLMMalformedResponseError, LLMTimeoutError, Message, Request,
                           RequestsPerMinuteLimiter, Response, estimate_cost_usd)
from rznas_jax.llm.errors import MAX_RETRY_AFTER_S, parse_retry_after

REQUEST = Request(system="s", messages=(Message("user", "u"),))


class ScriptedBackend:
  """Raises the scripted errors in turn, then answers."""
  name = "scripted"
  model = "gpt-4o"

  def __init__(self, *errors, delay_s=0.0, tokens=(1000, 500)):
    self.errors = list(errors)
    self.delay_s = delay_s
    self.tokens = tokens
    self.calls = 0
    self.in_flight = self.max_in_flight = 0
    self._lock = threading.Lock()

  def complete(self, request):
    with self._lock:
      self.calls += 1
      self.in_flight += 1
      self.max_in_flight = max(self.max_in_flight, self.in_flight)
      error = self.errors.pop(0) if self.errors else None
    try:
      time.sleep(self.delay_s)
      if error is not None:
        raise error
      return Response(text=request.prompt_text, model=self.model, input_tokens=self.tokens[0],
                      output_tokens=self.tokens[1], backend=self.name)
    finally:
      with self._lock:
        self.in_flight -= 1


class FakeTime:
  """A clock that only moves when something sleeps."""

  def __init__(self):
    self.now = 0.0
    self.waits = []

  def sleep(self, seconds):
    self.waits.append(seconds)
    self.now += seconds

  def clock(self):
    return self.now


def client_for(backend, **kwargs):
  fake = FakeTime()
  kwargs.setdefault("sleep", fake.sleep)
  return LLMClient(backend, **kwargs), fake


@pytest.mark.parametrize("error", [LLMHTTPError(429, None, "slow down"), LLMHTTPError(503, None, "x"),
                                   LLMHTTPError(408, None, "x"), LLMTimeoutError("t"),
                                   LLMConnectionError("c")])
def test_transient_errors_are_retried(error):
  backend = ScriptedBackend(error, error)
  client, fake = client_for(backend)
  assert client.complete(REQUEST).text == "u"
  assert backend.calls == 3 and len(fake.waits) == 2
  assert client.stats()["retries"] == 2 and client.stats()["attempts"] == 3


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_other_4xx_are_not_retried(status):
  backend = ScriptedBackend(LLMHTTPError(status, None, "nope"))
  client, fake = client_for(backend)
  with pytest.raises(LLMError):
    client.complete(REQUEST)
  assert backend.calls == 1 and fake.waits == []


def test_a_plain_llm_error_passes_through_unchanged():
  backend = ScriptedBackend(LLMError("No recorded reply for request abc."))
  with pytest.raises(LLMError, match=r"^No recorded reply for request abc\.$"):
    client_for(backend)[0].complete(REQUEST)
  assert backend.calls == 1


def test_backoff_doubles_with_jitter_up_to_the_cap():
  backend = ScriptedBackend(*[LLMHTTPError(500, None, "x")] * 8)
  client, fake = client_for(backend, max_retries=8, backoff_base_s=1.0, backoff_max_s=10.0)
  client.complete(REQUEST)
  nominal = [1, 2, 4, 8, 10, 10, 10, 10]
  assert all(n / 2 <= w <= n for w, n in zip(fake.waits, nominal)), fake.waits
  assert len(set(fake.waits)) == len(fake.waits)  # Jittered, not a fixed schedule.
  # Seeded: the same seed gives the same waits.
  again, fake_again = client_for(ScriptedBackend(*[LLMHTTPError(500, None, "x")] * 8), max_retries=8,
                                 backoff_base_s=1.0, backoff_max_s=10.0)
  again.complete(REQUEST)
  assert fake_again.waits == fake.waits


def test_retry_after_is_a_lower_bound_on_the_wait():
  backend = ScriptedBackend(LLMHTTPError(429, 30.0, "x"), LLMHTTPError(429, 0.0, "x"))
  client, fake = client_for(backend)
  client.complete(REQUEST)
  assert 30.0 <= fake.waits[0] <= 33.0
  assert 0.5 <= fake.waits[1] <= 2.0  # Retry-After 0 still backs off (nominal 2 s on try 2).


def test_malformed_bodies_get_two_retries_even_with_a_larger_budget():
  backend = ScriptedBackend(*[LLMMalformedResponseError("not JSON")] * 5)
  client, _ = client_for(backend, max_retries=5)
  with pytest.raises(LLMError, match=r"failed after 3 attempt\(s\), the last with: not JSON"):
    client.complete(REQUEST)
  assert backend.calls == 3


def test_the_retry_budget_counts_retries_not_attempts():
  backend = ScriptedBackend(*[LLMTimeoutError("no answer within 1 s")] * 3)
  with pytest.raises(LLMError, match=r"after 3 attempt\(s\)"):
    client_for(backend, max_retries=2)[0].complete(REQUEST)
  with pytest.raises(LLMError, match=r"after 1 attempt\(s\)"):
    client_for(ScriptedBackend(LLMTimeoutError("t")), max_retries=0)[0].complete(REQUEST)


def test_the_safety_net_abandons_a_backend_that_never_returns():
  release = threading.Event()

  class Stuck:
    name, model = "stuck", "m"

    def complete(self, request):
      release.wait(10)
      return Response(text="late", model="m")

  client = LLMClient(Stuck(), timeout_s=0.1, max_retries=0, max_concurrency=1)
  start = time.monotonic()
  with pytest.raises(LLMError, match=r"no answer within 1.15 s"):
    client.complete(REQUEST)
  assert time.monotonic() - start < 3
  # The abandoned attempt still holds the only slot, so the cap holds until it really returns.
  assert not client._slots.acquire(blocking=False)  # pylint: disable=protected-access
  release.set()
  assert client._slots.acquire(timeout=5)  # pylint: disable=protected-access


def test_concurrency_is_capped_over_all_threads():
  backend = ScriptedBackend(delay_s=0.02)
  client = LLMClient(backend, max_concurrency=3)
  requests = [Request(system="s", messages=(Message("user", str(i)),)) for i in range(24)]
  replies = client.complete_many(requests)
  assert [r.text for r in replies] == [str(i) for i in range(24)]
  assert backend.max_in_flight == 3


def test_requests_per_minute_is_a_sliding_window():
  fake = FakeTime()
  limiter = RequestsPerMinuteLimiter(3, clock=fake.clock, sleep=fake.sleep)
  starts = []
  for _ in range(7):
    limiter.acquire()
    starts.append(fake.now)
  assert starts == [0, 0, 0, 60, 60, 60, 120]
  assert all(sum(s <= t < s + 60 for t in starts) <= 3 for s in starts)


def test_the_client_applies_the_rate_limit():
  backend = ScriptedBackend()
  fake = FakeTime()
  client = LLMClient(backend, requests_per_minute=2, sleep=fake.sleep, clock=fake.clock)
  for _ in range(5):
    client.complete(REQUEST)
  assert fake.waits == [60.0, 60.0]


def test_stats_count_tokens_and_cost():
  client, _ = client_for(ScriptedBackend(LLMHTTPError(500, None, "x")))
  client.complete(REQUEST)
  client.complete(REQUEST)
  stats = client.stats()
  assert stats["calls"] == 2 and stats["failures"] == 0 and stats["retries"] == 1
  assert (stats["input_tokens"], stats["output_tokens"]) == (2000, 1000)
  assert stats["cost_usd"] == pytest.approx(2 * (1000 * 2.50 + 500 * 10.00) / 1e6)


def test_price_table_uses_the_longest_prefix_and_zero_for_unknown_models():
  assert estimate_cost_usd("gpt-4o-mini-2024-07-18", 1e6, 1e6) == pytest.approx(0.15 + 0.60)
  assert estimate_cost_usd("gpt-4o-2024-08-06", 1e6, 0) == pytest.approx(2.50)
  assert estimate_cost_usd("models/gemini-2.5-flash", 0, 1e6) == pytest.approx(2.50)
  assert estimate_cost_usd("gemini-2.5-flash-lite", 1e6, 0) == pytest.approx(0.10)
  assert estimate_cost_usd("llama-3.1-8b-instruct", 1e6, 1e6) == 0.0


def test_parse_retry_after_reads_seconds_dates_and_milliseconds():
  assert parse_retry_after({"Retry-After": "7"}) == 7.0
  assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
  assert parse_retry_after({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0  # In the past.
  assert parse_retry_after({"Retry-After": "100000"}) == MAX_RETRY_AFTER_S
  assert parse_retry_after({"Retry-After": "soon"}) is None
  assert parse_retry_after(None) is None


@pytest.mark.parametrize("kwargs, match", [
    (dict(max_concurrency=0), "max_concurrency=0 must be at least 1"),
    (dict(max_retries=-1), "max_retries=-1 must be 0 or more"),
    (dict(timeout_s=0), "timeout_s=0 must be positive"),
    (dict(requests_per_minute=-5), "requests_per_minute=-5 must be 0"),
])
def test_bad_limits_are_one_sentence(kwargs, match):
  with pytest.raises(ValueError, match=match):
    LLMClient(ScriptedBackend(), **kwargs)


def test_a_backend_bug_surfaces_as_itself():
  class Broken:
    name, model = "broken", "m"

    def complete(self, request):
      raise ZeroDivisionError("bug")

  client = LLMClient(Broken())
  with pytest.raises(ZeroDivisionError):
    client.complete(REQUEST)
  with pytest.raises(ZeroDivisionError):
    client.complete_many([REQUEST, REQUEST])


def test_a_rate_limit_that_never_clears_suggests_the_rate_limit_settings():
  client, _ = client_for(ScriptedBackend(*[LLMHTTPError(429, 1.0, "quota")] * 3), max_retries=2)
  with pytest.raises(LLMError, match=r"HTTP 429: quota; lower llm.max_concurrency or set "
                                     r"llm.requests_per_minute, or try again later\.$"):
    client.complete(REQUEST)
