"""The real Gemini and OpenAI SDKs against local servers: every failure mode ends as specified.

Each scenario runs for both protocols. Timeouts are ~0.5-1 s and retry waits go to a fake
`sleep` (which records them), so nothing here waits long and nothing can hang.
"""

import json
import socket
import sys
import time

import pytest

import llm_servers as srv_lib
from rznas_jax.llm import (GeminiBackend, LLMClient, LLMError, Message, OpenAIBackend, Request)

KINDS = {
    "gemini": (srv_lib.GeminiServer, GeminiBackend, "gemini-2.5-flash"),
    "openai": (srv_lib.OpenAIServer, OpenAIBackend, "gpt-4o"),
}
REQUEST = Request(system="You mutate NAS-Bench-201 cells.",
                  messages=(Message("user", "first"), Message("assistant", "ok"),
                            Message("user", "mutate |none~0|")),
                  temperature=0.4, seed=7, max_output_tokens=64, purpose="mutation")


class FakeSleep:
  """Records the waits instead of making them."""

  def __init__(self):
    self.waits = []

  def __call__(self, seconds):
    self.waits.append(seconds)


def make_client(kind, server_or_url, *, timeout_s=1.0, max_retries=3, sleep=None, model=None,
                **kwargs):
  _, backend_cls, default_model = KINDS[kind]
  url = server_or_url if isinstance(server_or_url, str) else server_or_url.base_url
  backend = backend_cls(model or default_model, api_key="test-key", base_url=url,
                        timeout_s=timeout_s)
  return LLMClient(backend, max_retries=max_retries, timeout_s=timeout_s,
                   sleep=sleep or FakeSleep(), **kwargs)


def serve(kind, **kwargs):
  return KINDS[kind][0](**kwargs)


@pytest.fixture(params=sorted(KINDS))
def kind(request):
  return request.param


def test_normal_answer_sends_the_whole_request(kind):
  with serve(kind) as srv:
    client = make_client(kind, srv)
    response = client.complete(REQUEST)
    body, headers = srv.requests[0].json, srv.requests[0].headers
  assert response.text == "echo: mutate |none~0|"
  assert response.backend == kind and response.model == KINDS[kind][2]
  assert response.call_id and response.input_tokens > 0 and response.output_tokens == 3
  assert response.latency_s > 0
  if kind == "gemini":
    assert headers["x-goog-api-key"] == "test-key"
    assert body["systemInstruction"]["parts"][0]["text"] == REQUEST.system
    assert [c["role"] for c in body["contents"]] == ["user", "model", "user"]
    assert body["generationConfig"] == {"temperature": 0.4, "seed": 7, "maxOutputTokens": 64}
  else:
    assert headers["authorization"] == "Bearer test-key"
    assert [m["role"] for m in body["messages"]] == ["system", "user", "assistant", "user"]
    assert (body["temperature"], body["seed"], body["max_tokens"]) == (0.4, 7, 64)
    assert "response_format" not in body
  assert client.stats()["calls"] == 1 and client.stats()["retries"] == 0


def test_429_is_retried_after_the_servers_retry_after(kind):
  sleep = FakeSleep()
  with serve(kind, script=[srv_lib.http_error(429, retry_after=7)]) as srv:
    client = make_client(kind, srv, sleep=sleep)
    response = client.complete(REQUEST)
    assert len(srv.requests) == 2
  assert response.text == "echo: mutate |none~0|"
  assert len(sleep.waits) == 1 and 7.0 <= sleep.waits[0] <= 7.7
  assert client.stats()["retries"] == 1 and client.stats()["failures"] == 0


def test_repeated_500s_end_when_the_retry_budget_does(kind):
  sleep = FakeSleep()
  with serve(kind, default=srv_lib.http_error(500)) as srv:
    client = make_client(kind, srv, max_retries=3, sleep=sleep)
    with pytest.raises(LLMError, match=r"failed after 4 attempt\(s\).*HTTP 500"):
      client.complete(REQUEST)
    assert len(srv.requests) == 4
  # Exponential backoff with jitter: nominal 1, 2, 4 s, each in [nominal/2, nominal].
  assert [0.5 <= w / n <= 1.0 for w, n in zip(sleep.waits, (1, 2, 4))] == [True] * 3
  assert client.stats()["failures"] == 1 and client.stats()["retries"] == 3


def test_a_hang_past_the_timeout_is_retried_then_reported(kind):
  with serve(kind, default=srv_lib.hang(30)) as srv:
    client = make_client(kind, srv, timeout_s=0.5, max_retries=1)
    start = time.monotonic()
    with pytest.raises(LLMError, match=r"failed after 2 attempt\(s\).*within 0.5 s"):
      client.complete(REQUEST)
    elapsed = time.monotonic() - start
    assert len(srv.requests) == 2
  assert 0.9 < elapsed < 4.0


def test_a_hang_then_an_answer_succeeds(kind):
  with serve(kind, script=[srv_lib.hang(30)]) as srv:
    response = make_client(kind, srv, timeout_s=0.5).complete(REQUEST)
  assert response.text == "echo: mutate |none~0|"


@pytest.mark.parametrize("bad", [srv_lib.malformed_body, srv_lib.truncated_body])
def test_a_malformed_body_is_retried_twice_then_reported(kind, bad):
  with serve(kind, default=bad()) as srv:
    client = make_client(kind, srv, max_retries=5)
    with pytest.raises(LLMError, match=r"failed after 3 attempt\(s\).*not a"):
      client.complete(REQUEST)
    assert len(srv.requests) == 3  # 1 + max_malformed_retries, though max_retries allows 5.
  with serve(kind, script=[bad()]) as srv:
    assert make_client(kind, srv).complete(REQUEST).text == "echo: mutate |none~0|"


def test_a_truncated_json_reply_is_returned_verbatim_for_the_parser(kind):
  # A reply cut off by the token limit is a valid answer: the parser reports it to the LLM.
  with serve(kind, default=srv_lib.truncated_reply()) as srv:
    client = make_client(kind, srv)
    response = client.complete(REQUEST)
    assert len(srv.requests) == 1
  assert response.text == srv_lib.TRUNCATED_REPLY_TEXT
  with pytest.raises(json.JSONDecodeError):
    json.loads(response.text)


def test_401_is_not_retried_and_says_the_key_was_rejected(kind):
  sleep = FakeSleep()
  with serve(kind, default=srv_lib.http_error(401, message="invalid key")) as srv:
    client = make_client(kind, srv, sleep=sleep)
    with pytest.raises(LLMError) as info:
      client.complete(REQUEST)
    assert len(srv.requests) == 1
  env = "GEMINI_API_KEY or GOOGLE_API_KEY" if kind == "gemini" else "OPENAI_API_KEY"
  assert str(info.value) == (f"The API key was rejected by the {kind} backend (HTTP 401: invalid "
                             f"key); set a valid key in {env}.")
  assert sleep.waits == []


def test_unknown_model_is_a_404_naming_it(kind):
  with serve(kind, models=["served-model"]) as srv:
    client = make_client(kind, srv, model="no-such-model")
    with pytest.raises(LLMError, match=r"^Model 'no-such-model' was not found by the .* backend"):
      client.complete(REQUEST)
    assert len(srv.requests) == 1


def test_400_passes_the_servers_message_on(kind):
  message = "max_output_tokens must be at most 8192"
  with serve(kind, default=srv_lib.http_error(400, message=message)) as srv:
    with pytest.raises(LLMError, match=f"rejected the request \\(HTTP 400: {message}\\)"):
      make_client(kind, srv).complete(REQUEST)
    assert len(srv.requests) == 1


def test_a_refused_connection_is_retried_then_reported(kind):
  with socket.socket() as s:  # A port that was free a moment ago: nothing listens there.
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  url = f"http://127.0.0.1:{port}/" + ("v1" if kind == "openai" else "")
  sleep = FakeSleep()
  with pytest.raises(LLMError, match=r"failed after 3 attempt\(s\).*connection"):
    make_client(kind, url, max_retries=2, sleep=sleep).complete(REQUEST)
  assert len(sleep.waits) == 2


def test_concurrency_cap_holds_against_the_server(kind):
  with serve(kind, delay_s=0.1) as srv:
    client = make_client(kind, srv, max_concurrency=3)
    requests = [Request(system="s", messages=(Message("user", f"q{i}"),)) for i in range(9)]
    start = time.monotonic()
    replies = client.complete_many(requests)
    elapsed = time.monotonic() - start
    assert srv.max_in_flight == 3
  assert [r.text for r in replies] == [f"echo: q{i}" for i in range(9)]
  assert elapsed >= 0.3 - 0.02  # 9 calls of 0.1 s, 3 at a time.


def test_complete_many_keeps_order_and_isolates_failures(kind):
  def responder(body):
    text = srv_lib.last_user_text(body)
    return srv_lib.http_error(403, message="no access") if text == "q2" else f"echo: {text}"

  with serve(kind, responder=responder) as srv:
    client = make_client(kind, srv, max_concurrency=4)
    requests = [Request(system="s", messages=(Message("user", f"q{i}"),)) for i in range(5)]
    replies = client.complete_many(requests)
  assert isinstance(replies[2], LLMError) and "API key was rejected" in str(replies[2])
  assert [r.text for i, r in enumerate(replies) if i != 2] == ["echo: q0", "echo: q1", "echo: q3",
                                                               "echo: q4"]
  assert client.stats()["calls"] == 5 and client.stats()["failures"] == 1


def test_a_missing_openai_package_says_how_to_install_it(monkeypatch):
  monkeypatch.setitem(sys.modules, "openai", None)  # Makes `import openai` fail.
  with pytest.raises(LLMError, match=r'pip install "rznas_jax\[openai\]"'):
    OpenAIBackend("gpt-4o", api_key="k")
