"""The `llm` config block and `make_client`'s choice of backend."""

import logging
import os

import ml_collections
import pytest

import llm_servers as srv_lib
from rznas_jax.llm import (GeminiBackend, Message, OpenAIBackend, Request, Response,
                           default_config, make_client)

KEY_VARS = ("GEMINI_API_KEY", "GOOGLE_API_KEY", "OPENAI_API_KEY")


class Offline:
  name, model = "offline", "offline-agent"

  def complete(self, request):
    return Response(text="offline reply", model=self.model, backend=self.name)


@pytest.fixture(autouse=True)
def no_keys(monkeypatch):
  for name in KEY_VARS:
    monkeypatch.delenv(name, raising=False)


@pytest.fixture
def picked(caplog):
  """The INFO line make_client logs."""
  caplog.set_level(logging.INFO)
  return lambda: [r.getMessage() for r in caplog.records if r.getMessage().startswith("LLM backend")]


def test_default_config_has_every_key_with_its_default():
  config = default_config()
  assert isinstance(config, ml_collections.ConfigDict)
  assert config.to_dict() == dict(backend="auto", model=None, base_url=None, timeout_s=60.0,
                                  max_retries=5, max_concurrency=8, requests_per_minute=0,
                                  log_path=None, structured_output="auto", local_threads=None)
  config.model, config.base_url, config.log_path = "gpt-4o", "http://h/v1", "/tmp/x.jsonl"  # Typed.
  with pytest.raises(TypeError):
    config.max_retries = "many"


def test_auto_without_a_key_is_offline_and_says_why(tmp_path, picked):
  client = make_client(default_config(), tmp_path, offline_factory=Offline)
  assert isinstance(client.backend, Offline)
  assert client.complete(Request(system="s", messages=(Message("user", "u"),))).text == "offline reply"
  assert picked() == [f"LLM backend: offline (Offline), because llm.backend='auto' and neither "
                      f"GEMINI_API_KEY nor GOOGLE_API_KEY is set; exchanges are logged to "
                      f"{os.path.join(tmp_path, 'llm_log.jsonl')}."]
  assert client.log_path == os.path.join(tmp_path, "llm_log.jsonl")
  assert os.path.exists(client.log_path)


@pytest.mark.parametrize("variable", ["GEMINI_API_KEY", "GOOGLE_API_KEY"])
def test_auto_with_a_gemini_key_is_gemini(tmp_path, monkeypatch, picked, variable):
  monkeypatch.setenv(variable, "k")
  client = make_client(default_config(), tmp_path, offline_factory=Offline)
  assert isinstance(client.backend, GeminiBackend)
  assert client.backend.model == "gemini-2.5-flash"
  assert f"llm.backend='auto' and {variable} is set" in picked()[0]


def test_a_whole_run_config_is_accepted(tmp_path):
  run = ml_collections.ConfigDict({"seed": 0})
  run.llm = default_config()
  run.llm.backend = "offline"
  run.llm.max_concurrency = 2
  run.llm.log_path = str(tmp_path / "elsewhere.jsonl")
  client = make_client(run, tmp_path / "run", offline_factory=Offline)
  assert client.max_concurrency == 2 and client.log_path == str(tmp_path / "elsewhere.jsonl")


@pytest.mark.parametrize("backend, variables", [("gemini", "GEMINI_API_KEY or GOOGLE_API_KEY"),
                                                ("openai", "OPENAI_API_KEY")])
def test_a_missing_key_names_the_variable(tmp_path, backend, variables):
  config = default_config()
  config.backend = backend
  with pytest.raises(ValueError, match=f"^llm.backend='{backend}' needs an API key in the "
                                       f"environment variable {variables}, or llm.base_url"):
    make_client(config, tmp_path)


def test_a_local_server_needs_no_key(tmp_path):
  with srv_lib.OpenAIServer() as srv:
    config = default_config()
    config.backend, config.base_url, config.model = "openai", srv.base_url, "llama-3.1-8b"
    config.timeout_s, config.requests_per_minute = 2.0, 100
    client = make_client(config, tmp_path)
    reply = client.complete(Request(system="s", messages=(Message("user", "hi"),)))
    assert srv.requests[0].headers["authorization"] == "Bearer not-needed"
  assert isinstance(client.backend, OpenAIBackend) and reply.text == "echo: hi"
  assert reply.model == "llama-3.1-8b" and client.requests_per_minute == 100


def test_openai_key_and_default_model(tmp_path, monkeypatch):
  monkeypatch.setenv("OPENAI_API_KEY", "k")
  config = default_config()
  config.backend = "openai"
  assert make_client(config, tmp_path).backend.model == "gpt-4o"


@pytest.mark.parametrize("value", ["claude", "replay:", "Gemini"])
def test_an_unknown_backend_lists_the_valid_ones(tmp_path, value):
  config = default_config()
  config.backend = value
  with pytest.raises(ValueError, match=f"^llm.backend='{value}' is not a known backend; use one of "
                                       "auto, gemini, openai, local:PATH.gguf, offline, replay:PATH.$"):
    make_client(config, tmp_path)


def test_offline_without_a_factory_is_a_clear_error(tmp_path):
  with pytest.raises(ValueError, match="no offline_factory was given"):
    make_client(default_config(), tmp_path)


def test_a_local_gemini_endpoint_needs_no_key(tmp_path):
  with srv_lib.GeminiServer() as srv:
    config = default_config()
    config.backend, config.base_url, config.timeout_s = "gemini", srv.base_url, 2.0
    client = make_client(config, tmp_path)
    reply = client.complete(Request(system="s", messages=(Message("user", "hi"),)))
    assert srv.requests[0].headers["x-goog-api-key"] == "not-needed"
  assert isinstance(client.backend, GeminiBackend) and reply.text == "echo: hi"
