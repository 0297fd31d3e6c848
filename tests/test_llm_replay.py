"""Record a run, replay it offline, and make sure the log never holds an API key."""

import itertools
import json
import os

import pytest

import llm_servers as srv_lib
from rznas_jax.llm import (LLMClient, LLMError, Message, OpenAIBackend, ReplayBackend, Request,
                           default_config, make_client)

FAKE_KEY = "sk-FAKE-4f9c2e7d1b8a6035-DO-NOT-LOG"


def ask(text, temperature=0.7, seed=1):
  return Request(system="You mutate cells.", messages=(Message("user", text),),
                 temperature=temperature, seed=seed, purpose="mutation")


# The same request twice (a), so replay must hand back its two replies in their recorded order.
SESSION = [ask("a"), ask("b"), ask("a"), ask("c", seed=2)]


def counting_responder():
  counter = itertools.count()
  return lambda body: f"reply {next(counter)} to {srv_lib.last_user_text(body)}"


def record(tmp_path):
  log = tmp_path / "run" / "llm_log.jsonl"
  with srv_lib.OpenAIServer(responder=counting_responder()) as srv:
    client = LLMClient(OpenAIBackend("gpt-4o", "k", srv.base_url, timeout_s=1.0), log_path=log)
    recorded = [client.complete(r) for r in SESSION]
  return log, recorded


def test_replay_gives_the_same_replies_in_the_same_order_without_network(tmp_path):
  log, recorded = record(tmp_path)  # The server is gone from here on.
  assert [r.text for r in recorded] == ["reply 0 to a", "reply 1 to b", "reply 2 to a",
                                        "reply 3 to c"]
  client = LLMClient(ReplayBackend(log))
  replayed = [client.complete(r) for r in SESSION]
  assert [r.text for r in replayed] == [r.text for r in recorded]
  assert [(r.call_id, r.model, r.input_tokens, r.output_tokens) for r in replayed] == [
      (r.call_id, r.model, r.input_tokens, r.output_tokens) for r in recorded]
  assert {r.backend for r in replayed} == {"replay"}
  assert client.stats()["cost_usd"] == 0.0  # A replay spends nothing.


def test_log_lines_have_the_documented_fields(tmp_path):
  log, recorded = record(tmp_path)
  lines = [json.loads(line) for line in log.read_text().splitlines()]
  assert len(lines) == len(SESSION)
  first = lines[0]
  assert set(first) == {"fingerprint", "request", "response", "backend", "started_at", "latency_s",
                        "attempts"}
  assert first["fingerprint"] == SESSION[0].fingerprint()
  assert Request.from_json(first["request"]) == SESSION[0]
  assert first["response"]["text"] == recorded[0].text and first["backend"] == "openai"
  assert first["attempts"] == 1 and first["latency_s"] > 0 and first["started_at"].endswith("+00:00")


def test_a_changed_request_is_reported_with_its_fingerprint(tmp_path):
  log, _ = record(tmp_path)
  replay = ReplayBackend(log)
  changed = ask("b", temperature=0.9)
  with pytest.raises(LLMError) as info:
    LLMClient(replay).complete(changed)
  message = str(info.value)
  assert changed.fingerprint()[:12] in message and str(log) in message
  assert "differs in: temperature" in message


def test_asking_more_often_than_recorded_is_reported(tmp_path):
  log, _ = record(tmp_path)
  replay = ReplayBackend(log)
  replay.complete(ask("b"))
  with pytest.raises(LLMError, match=r"recorded 1 time\(s\).*all its replies have been used"):
    replay.complete(ask("b"))


def test_failed_calls_are_logged_and_skipped_by_replay(tmp_path):
  log = tmp_path / "llm_log.jsonl"
  with srv_lib.OpenAIServer(script=[srv_lib.http_error(400, message="bad")]) as srv:
    client = LLMClient(OpenAIBackend("gpt-4o", "k", srv.base_url, timeout_s=1.0), log_path=log)
    with pytest.raises(LLMError):
      client.complete(ask("x"))
    client.complete(ask("x"))
  lines = [json.loads(line) for line in log.read_text().splitlines()]
  assert "error" in lines[0] and "response" not in lines[0] and "HTTP 400: bad" in lines[0]["error"]
  assert ReplayBackend(log).complete(ask("x")).text == "echo: x"


@pytest.mark.parametrize("content, expected", [
    ('{"fingerprint": "x"', r"^Line 2 of the replay log .* is not JSON"),
    ('[1, 2]', r"^Line 2 of the replay log .* is not an LLM log entry"),
    ('{"fingerprint": "x", "request": {}}', r"^Line 2 .* has neither 'response' nor 'error'"),
    ('{"fingerprint": "x", "request": {"system": 1}, "response": {}}', r"unreadable request"),
])
def test_a_malformed_log_is_one_clear_sentence(tmp_path, content, expected):
  log, _ = record(tmp_path)
  lines = log.read_text().splitlines()
  log.write_text("\n".join([lines[0], content] + lines[1:]) + "\n")
  with pytest.raises(LLMError, match=expected):
    ReplayBackend(log)


def test_an_edited_request_does_not_match_its_fingerprint(tmp_path):
  log, _ = record(tmp_path)
  entry = json.loads(log.read_text().splitlines()[0])
  entry["request"]["temperature"] = 0.1
  log.write_text(json.dumps(entry) + "\n")
  with pytest.raises(LLMError, match="hashes to .* the log was edited"):
    ReplayBackend(log)


def test_a_missing_log_is_reported(tmp_path):
  with pytest.raises(LLMError, match="does not exist"):
    ReplayBackend(tmp_path / "nope.jsonl")


def test_make_client_replays_from_a_path(tmp_path):
  log, recorded = record(tmp_path)
  config = default_config()
  config.backend = f"replay:{log}"
  client = make_client(config, tmp_path / "run")  # Same folder: must not append to its source.
  before = log.read_text()
  assert [client.complete(r).text for r in SESSION] == [r.text for r in recorded]
  assert log.read_text() == before
  assert client.log_path == str(tmp_path / "run" / "llm_log.replayed.jsonl")


def test_the_api_key_never_reaches_any_file_the_run_writes(tmp_path, monkeypatch):
  monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)
  # A server that echoes the key in its error, as real APIs echo a bad key back.
  def responder(body):
    text = srv_lib.last_user_text(body)
    if text == "fail":
      return srv_lib.http_error(401, message=f"Incorrect API key provided: {FAKE_KEY}.")
    return f"echo: {text}"

  workdir = tmp_path / "run"
  with srv_lib.OpenAIServer(responder=responder) as srv:
    config = default_config()
    config.backend, config.base_url = "openai", srv.base_url
    client = make_client(config, workdir)
    results = client.complete_many([ask("ok"), ask("fail"), ask("ok again")])
    sent = [r.headers.get("authorization") for r in srv.requests]
  assert sent == [f"Bearer {FAKE_KEY}"] * 3  # The key was really used...
  assert isinstance(results[1], LLMError) and FAKE_KEY not in str(results[1])
  written = [os.path.join(d, f) for d, _, files in os.walk(tmp_path) for f in files]
  assert written  # ...and the run wrote its log...
  for path in written:  # ...but no file holds the key.
    with open(path, "rb") as f:
      assert FAKE_KEY.encode() not in f.read(), path
  assert "[REDACTED]" in (workdir / "llm_log.jsonl").read_text()
