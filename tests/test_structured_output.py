"""Structured output on the real Gemini and OpenAI SDKs, against local servers that read the body.

Each backend must carry the reply's schema (or grammar) in its provider's own form, and under
`auto` a server that refuses a structured request gets the same call at once in the next form,
down to one plain retry, and the run keeps the form that worked.
"""

import json

import pytest

import llm_servers as srv_lib
from rznas_jax.llm import GeminiBackend, LLMClient, LLMError, Message, OpenAIBackend, Request
from rznas_jax.llm import config as llm_config
from rznas_jax.llm import structured

SCHEMA = {"type": "object", "properties": {"arch": {"type": "string", "pattern": "^[a-z|~+0-9_]+$"}},
          "required": ["arch"], "additionalProperties": False}
GRAMMAR = 'root ::= "{\\"arch\\": \\"" [a-z]+ "\\"}"'
STRUCTURED = Request(system="s", messages=(Message("user", "mutate"),), seed=1,
                     response_schema=json.dumps(SCHEMA), grammar=GRAMMAR, purpose="mutation")
PLAIN = Request(system="s", messages=(Message("user", "reflect"),), seed=1, purpose="reflection")


class NoSleep:

  def __call__(self, seconds):
    del seconds


def openai_client(server, mode="auto", **kwargs):
  backend = OpenAIBackend("m", api_key="k", base_url=server.base_url, timeout_s=2.0,
                          structured_output=mode)
  return LLMClient(backend, max_retries=2, timeout_s=2.0, sleep=NoSleep(), **kwargs)


def gemini_client(server, mode="auto"):
  backend = GeminiBackend("gemini-2.5-flash", api_key="k", base_url=server.base_url, timeout_s=2.0,
                          structured_output=mode)
  return LLMClient(backend, max_retries=2, timeout_s=2.0, sleep=NoSleep())


def refusing(*forms, status=500, message=None):
  """A responder that refuses requests whose structured part is one of ``forms`` (OpenAI bodies),
  in the words llama-cpp-python's server uses, and echoes the others."""

  def form_of(body):
    if "grammar" in body:
      return "grammar"
    return body.get("response_format", {}).get("type", "off")

  def respond(body):
    form = form_of(body)
    if form in forms:
      return srv_lib.http_error(status, message=message or f"response_format {form} is not supported")
    return srv_lib.echo_responder(body)

  return respond


# -- each backend's own form ---------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["json_schema", "json_object", "grammar", "off"])
def test_openai_compatible_bodies_carry_the_form_asked_for(mode):
  with srv_lib.OpenAIServer() as srv:
    response = openai_client(srv, mode).complete(STRUCTURED)
    body = srv.requests[0].json
  assert response.structured == mode
  if mode == "json_schema":  # OpenAI's structured outputs, strict
    assert body["response_format"] == {"type": "json_schema",
                                       "json_schema": {"name": "reply", "strict": True,
                                                       "schema": SCHEMA}}
  elif mode == "json_object":  # llama-cpp-python's server: JSON mode with the schema beside it
    assert body["response_format"] == {"type": "json_object", "schema": SCHEMA}
  else:
    assert "response_format" not in body
  assert body.get("grammar") == (GRAMMAR if mode == "grammar" else None)


@pytest.mark.parametrize("mode", ["json_schema", "json_object", "off"])
def test_gemini_bodies_carry_json_mode_and_the_schema(mode):
  with srv_lib.GeminiServer() as srv:
    response = gemini_client(srv, mode).complete(STRUCTURED)
    generation = srv.requests[0].json["generationConfig"]
  assert response.structured == mode
  if mode == "off":
    assert "responseMimeType" not in generation and "responseSchema" not in generation
    return
  assert generation["responseMimeType"] == "application/json"
  if mode == "json_schema":
    # Gemini's OpenAPI subset: the pattern travels, additionalProperties does not, and the field
    # order is pinned.
    assert generation["responseSchema"] == {
        "type": "OBJECT", "required": ["arch"], "property_ordering": ["arch"],
        "properties": {"arch": {"type": "STRING", "pattern": SCHEMA["properties"]["arch"]["pattern"]}}}
  else:
    assert "responseSchema" not in generation


@pytest.mark.parametrize("server, make", [(srv_lib.OpenAIServer, openai_client),
                                          (srv_lib.GeminiServer, gemini_client)])
def test_a_request_without_a_schema_goes_plain(server, make):
  with server() as srv:
    response = make(srv).complete(PLAIN)
    body = srv.requests[0].json
  assert response.structured == ""
  assert "response_format" not in body and "grammar" not in body
  assert "responseMimeType" not in body.get("generationConfig", {})


# -- auto: the fallback ----------------------------------------------------------------------------


def test_auto_falls_back_once_and_remembers_the_form_that_worked():
  with srv_lib.OpenAIServer(refusing("json_schema")) as srv:
    client = openai_client(srv)
    first = client.complete(STRUCTURED)
    second = client.complete(STRUCTURED)
    forms = [r.json.get("response_format", {}).get("type") for r in srv.requests]
  assert forms == ["json_schema", "json_object", "json_object"]  # refused once, then remembered
  assert first.structured == second.structured == "json_object"
  assert client.stats()["structured"] == {"json_object": 2}
  assert client.stats()["retries"] == 0  # a change of form is not a retry of a failed call


def test_a_server_that_refuses_every_structured_form_gets_one_plain_retry():
  with srv_lib.OpenAIServer(refusing("json_schema", "json_object", "grammar", status=400)) as srv:
    response = openai_client(srv).complete(STRUCTURED)
    bodies = [r.json for r in srv.requests]
  plain = [b for b in bodies if "response_format" not in b and "grammar" not in b]
  assert len(bodies) == 4 and len(plain) == 1 and plain[0] is bodies[-1]
  assert response.structured == "off" and response.text == "echo: mutate"


def test_openai_itself_goes_from_json_schema_straight_to_plain():
  chooser = structured.FormChooser("auto", "openai")
  assert chooser.form == "json_schema"
  assert chooser.fall_back("json_schema", 400, "Invalid schema for response_format 'reply'") == "off"
  assert chooser.fall_back("off", 400, "response_format") is None


def test_gemini_auto_falls_back_on_a_refused_schema():
  def respond(body):
    if "responseSchema" in body.get("generationConfig", {}):
      return srv_lib.http_error(400, message="Invalid JSON payload: unknown field response_schema")
    return srv_lib.echo_responder(body)

  with srv_lib.GeminiServer(respond) as srv:
    response = gemini_client(srv).complete(STRUCTURED)
    assert len(srv.requests) == 2
  assert response.structured == "json_object"


def test_an_error_that_does_not_name_the_structure_is_retried_as_before():
  with srv_lib.OpenAIServer(script=[srv_lib.http_error(500, message="CUDA out of memory")]) as srv:
    client = openai_client(srv)
    response = client.complete(STRUCTURED)
    forms = [r.json.get("response_format", {}).get("type") for r in srv.requests]
  assert forms == ["json_schema", "json_schema"] and response.structured == "json_schema"
  assert client.stats()["retries"] == 1


def test_an_explicit_mode_the_server_refuses_is_an_error_not_a_fallback():
  with srv_lib.OpenAIServer(refusing("grammar", status=400)) as srv:
    with pytest.raises(LLMError, match="rejected the request.*grammar"):
      openai_client(srv, "grammar").complete(STRUCTURED)
    assert len(srv.requests) == 1


# -- settings --------------------------------------------------------------------------------------


def test_modes_a_backend_cannot_send_are_refused_in_one_sentence():
  with pytest.raises(ValueError, match=r"'grammar' cannot be sent to the gemini backend; it takes "
                                       r"json_schema, json_object, off"):
    structured.FormChooser("grammar", "gemini")
  with pytest.raises(ValueError, match=r"llm.structured_output='yes' is not a mode; use one of auto"):
    llm_config.make_client({"backend": "offline", "structured_output": "yes"}, "/tmp",
                           offline_factory=lambda: None)


def test_the_search_config_rejects_an_unknown_mode():
  from rznas_jax.search import config as search_config
  config = search_config.default_config()
  config.llm.structured_output = "strict"
  with pytest.raises(search_config.ConfigError, match="structured_output 'strict' is unknown"):
    search_config.check_config(config)


def test_gemini_schema_keeps_what_gemini_takes():
  nested = {"type": "object", "additionalProperties": False,
            "properties": {"b": {"type": "string"}, "a": {"type": "array", "items": {
                "type": "object", "additionalProperties": False, "properties": {"x": {"type": "integer"}}}}}}
  assert structured.gemini_schema(nested) == {
      "type": "object", "property_ordering": ["b", "a"],
      "properties": {"b": {"type": "string"}, "a": {"type": "array", "items": {
          "type": "object", "property_ordering": ["x"], "properties": {"x": {"type": "integer"}}}}}}


def test_old_log_requests_keep_their_fingerprints():
  # A request without a grammar hashes as it did before the field existed (replays of old logs).
  old = {"system": "s", "messages": [{"role": "user", "text": "u"}], "temperature": 1.0,
         "seed": None, "max_output_tokens": 2048, "response_schema": None, "purpose": ""}
  request = Request.from_json(old)
  assert request.grammar is None and request.to_json() == old
  assert Request.from_json({**old, "grammar": "root ::= \"a\""}).fingerprint() != request.fingerprint()


# -- the search side -------------------------------------------------------------------------------


def test_mutation_requests_carry_the_spaces_schema_and_grammar_and_reflections_do_not():
  from rznas_jax import spaces  # pylint: disable=import-outside-toplevel
  from rznas_jax.search import prompts  # pylint: disable=import-outside-toplevel
  space = spaces.get("nb201")
  parent = "|none~0|+|skip_connect~0|none~1|+|none~0|none~1|nor_conv_3x3~2|"
  on, off = prompts.PromptOptions(structured=True), prompts.PromptOptions()
  request = prompts.mutation_request(space, "synflow", parent, 1.0, [], on, temperature=1.0, seed=0)
  assert json.loads(request.response_schema) == space.reply_schema()
  assert request.grammar == space.reply_grammar()
  assert 'Reply with exactly one JSON object and nothing else: {"arch"' in request.system
  assert "<Thinking>" not in request.system
  plain = prompts.mutation_request(space, "synflow", parent, 1.0, [], off, temperature=1.0, seed=0)
  assert plain.response_schema is None and plain.grammar is None and "<Thinking>" in plain.system
  reflection = prompts.reflection_request(space, "synflow", parent, 1.0, parent, 1.0, None, [], on,
                                          temperature=1.0, seed=0)
  assert reflection.response_schema is None and reflection.grammar is None


@pytest.mark.parametrize("mode", ["auto", "off"])
def test_a_search_records_the_mode_and_each_replys_form(tmp_path, mode):
  from launch.configs import tiny_cpu  # pylint: disable=import-outside-toplevel
  from rznas_jax import search  # pylint: disable=import-outside-toplevel
  config = tiny_cpu.get_config("params")
  config.search.iterations = 4
  config.llm.structured_output = mode
  summary = search.run(config, str(tmp_path), progress=False)
  with open(tmp_path / "llm_log.jsonl") as f:
    log = [json.loads(line) for line in f]
  mutations = [e for e in log if e["request"]["purpose"] == "mutation"]
  assert len(mutations) == 4 and summary["llm"]["structured_output"] == mode
  if mode == "auto":  # The offline agent answers the bare object a schema admits.
    assert summary["llm"]["structured"] == {"json_schema": 4}
    assert all(e["request"]["grammar"] and e["response"]["structured"] == "json_schema"
               and json.loads(e["response"]["text"]).keys() == {"arch"} for e in mutations)
  else:
    assert summary["llm"]["structured"] == {}
    assert all("grammar" not in e["request"] and "<Thinking>" in e["response"]["text"]
               for e in mutations)
