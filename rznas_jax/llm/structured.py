"""Structured output: telling a backend the shape of the reply, in its provider's own form.

A mutation `Request` carries the search space's reply schema (JSON schema with a regex `pattern`
for the genotype) and the same language as a GBNF grammar (`rznas_jax.spaces.reply_format`). How
that reaches the model depends on the backend and on `llm.structured_output`:

* ``json_schema``: OpenAI's structured outputs (``response_format={"type": "json_schema",
  "json_schema": {..., "strict": true}}``), which OpenAI, vLLM (guided decoding), Ollama and
  llama.cpp's C++ ``llama-server`` accept; Gemini's ``response_mime_type="application/json"`` and
  ``response_schema``; llama-cpp-python in-process turns the schema into a grammar.
* ``json_object``: JSON mode with the schema beside it, ``{"type": "json_object", "schema": ...}``,
  the form llama-cpp-python's server takes (it answers OpenAI's ``json_schema`` with HTTP 500);
  Gemini gets JSON mode without a schema.
* ``grammar``: the GBNF grammar, as ``"grammar"`` in the body (llama.cpp servers) or in-process.
* ``off``: the request goes plain; the reply is parsed and validated as before.
* ``auto`` (the default): the best form the backend is known to take, falling back down a ladder
  (`FALLBACKS`) when a server rejects a structured request with an error that names it: the call
  is retried at once in the next form, one line is logged, and the run keeps the form that worked.

The reply is still parsed and validated in full: a schema cannot say everything (budgets,
channel arithmetic), and a server may ignore what it does not know.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from typing import Any

from absl import logging

from rznas_jax.llm.base import Request, Response
from rznas_jax.llm.errors import LLMHTTPError

MODES = ("auto", "json_schema", "json_object", "grammar", "off")
FORMS = ("json_schema", "json_object", "grammar", "off")
# What `auto` tries, best first, for each backend kind. OpenAI itself takes json_schema only; any
# other OpenAI-compatible server (vLLM, Ollama, llama.cpp) is walked down the ladder.
FALLBACKS = {
    "openai": ("json_schema", "off"),
    "openai_compatible": ("json_schema", "json_object", "grammar", "off"),
    "gemini": ("json_schema", "json_object", "off"),
    "local": ("grammar", "off"),
}
# Which explicit modes each backend kind can send.
SUPPORTED = {
    "openai": ("json_schema", "json_object", "off"),
    "openai_compatible": ("json_schema", "json_object", "grammar", "off"),
    "gemini": ("json_schema", "json_object", "off"),
    "local": ("json_schema", "grammar", "off"),
}
# Words by which a server's error names the structured part of a request.
_STRUCTURE_WORDS = ("response_format", "json_schema", "json schema", "response_schema",
                    "responseschema", "response_mime_type", "responsemimetype", "grammar",
                    "guided", "structured")


def mode_of(llm) -> str:
  """The `structured_output` setting of an `llm` config block ('auto' when it has none, as in
  configs written before the setting existed)."""
  return str(llm.get("structured_output") or "auto").strip()


def check_mode(mode: str, kind: str) -> str:
  """The mode, checked against what backend ``kind`` can send.

  Raises:
    ValueError: an unknown mode, or one this backend has no form for (one sentence).
  """
  mode = str(mode or "auto").strip()
  if mode not in MODES:
    raise ValueError(f"llm.structured_output={mode!r} is not a mode; use one of {', '.join(MODES)}.")
  if mode != "auto" and mode not in SUPPORTED[kind]:
    raise ValueError(f"llm.structured_output={mode!r} cannot be sent to the {kind.replace('_', '-')} "
                     f"backend; it takes {', '.join(SUPPORTED[kind])} (or auto).")
  return mode


def names_structure(message: str) -> bool:
  """Whether a server's error message is about the structured part of the request."""
  text = message.lower()
  return any(word in text for word in _STRUCTURE_WORDS)


def is_structured(request: Request) -> bool:
  return request.response_schema is not None or request.grammar is not None


class FormChooser:
  """The form a backend sends structured requests in, and the fallback when a server refuses it.

  Thread-safe: concurrent calls share one choice, and a refusal moves every later call on.

  Attributes:
    mode: the configured mode (`MODES`).
    kind: the backend kind (a key of `FALLBACKS`).
  """

  def __init__(self, mode: str, kind: str):
    self.mode = check_mode(mode, kind)
    self.kind = kind
    self._ladder: Sequence[str] = FALLBACKS[kind] if self.mode == "auto" else (self.mode,)
    self._index = 0
    self._lock = threading.Lock()

  @property
  def form(self) -> str:
    """The form the next structured request goes out in."""
    with self._lock:
      return self._ladder[self._index]

  def fall_back(self, refused: str, status: int, message: str) -> str | None:
    """Moves past a form a server refused; returns the form to retry in, or None for none.

    Only ``auto`` falls back; an explicit mode the server refuses is the user's to change, so the
    error goes up as it came.
    """
    if self.mode != "auto" or not names_structure(message):
      return None
    with self._lock:
      position = self._ladder.index(refused) if refused in self._ladder else self._index
      if position + 1 >= len(self._ladder):
        return None
      if self._index <= position:
        self._index = position + 1
        logging.warning("The %s server refused structured output as %s (HTTP %d: %s); this run "
                        "sends %s from now on.", self.kind.replace("_", "-"), refused, status,
                        " ".join(message.split())[:200], self._ladder[self._index])
      return self._ladder[self._index]

  def form_for(self, request: Request) -> str:
    """The form ``request`` goes out in: '' when it asks for no structure, 'off' when it lacks
    what the current form sends (a schema for the JSON forms, a grammar for 'grammar')."""
    if not is_structured(request):
      return ""
    form = self.form
    if (form in ("json_schema", "json_object") and request.response_schema is None
        or form == "grammar" and request.grammar is None):
      return "off"
    return form

  def complete(self, request: Request, send: Callable[[Request, str], Response]) -> Response:
    """``send(request, form)`` in the request's form; a server that refuses a structured form
    (`fall_back`) gets the same call at once in the next one. Other errors go up as they came."""
    form = self.form_for(request)
    while True:
      try:
        return send(request, form)
      except LLMHTTPError as e:
        following = self.fall_back(form, e.status, e.message) if form not in ("", "off") else None
        if following is None:
          raise
        form = self.form_for(request) if following != "off" else "off"

  def record(self) -> dict[str, str]:
    """What `summary.json` says of structured output: the mode asked for and the form in use."""
    return {"mode": self.mode, "form": self.form}


def schema_of(request: Request) -> dict[str, Any] | None:
  return json.loads(request.response_schema) if request.response_schema is not None else None


def gemini_schema(schema: dict[str, Any]) -> dict[str, Any]:
  """A JSON schema in the OpenAPI subset that Gemini's ``response_schema`` takes.

  Gemini's `Schema` has no ``additionalProperties`` in every API version; it is dropped (the
  object's ``properties`` and ``required`` already pin it), and ``property_ordering`` is added so
  that the fields come out in the schema's order.
  """
  out: dict[str, Any] = {}
  for key, value in schema.items():
    if key == "additionalProperties":
      continue
    if key == "properties":
      value = {name: gemini_schema(sub) for name, sub in value.items()}
      out["property_ordering"] = list(value)
    elif key == "items" and isinstance(value, dict):
      value = gemini_schema(value)
    out[key] = value
  return out
