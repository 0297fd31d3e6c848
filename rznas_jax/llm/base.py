"""The one protocol every LLM backend speaks: a `Request` in, a `Response` out.

A search talks to its LLM only through `Backend.complete`. Requests are plain values with a
stable `fingerprint` (a SHA-256 of their canonical JSON), which is what the replay backend looks
replies up by; responses carry what the run log and the cost counters need.

Example:
  >>> request = Request(system="You mutate NAS-Bench-201 cells.",
  ...                   messages=(Message("user", '{"arch": "|none~0|+|...|"}'),),
  ...                   temperature=0.4, seed=7, purpose="mutation")
  >>> response = backend.complete(request)
  >>> response.text
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any, Protocol

ROLES = ("user", "assistant")


class LLMError(RuntimeError):
  """An LLM call that failed for good: after its retries, or on an error that no retry fixes.

  The message is one sentence a person can act on (bad key, unknown model, timeout after N
  tries, no recorded reply for a fingerprint); it never contains an API key.
  """


@dataclasses.dataclass(frozen=True)
class Message:
  """One turn of the conversation; `role` is 'user' or 'assistant'."""
  role: str
  text: str

  def __post_init__(self):
    if self.role not in ROLES:
      raise ValueError(f"Message role {self.role!r} is not one of {', '.join(ROLES)}.")


@dataclasses.dataclass(frozen=True)
class Request:
  """What is asked of the LLM.

  Attributes:
    system: the system instruction.
    messages: the conversation, oldest first; the last one is the user's.
    temperature: sampling temperature.
    seed: sampling seed, sent where the backend supports one (OpenAI-compatible servers, the
      offline agent); part of the fingerprint either way.
    max_output_tokens: cap on the reply's length.
    response_schema: optional JSON schema of the reply, as canonical JSON text (a string so that
      the request stays hashable); backends that support structured output pass it on in their
      provider's own form (`rznas_jax.llm.structured`).
    grammar: optional GBNF grammar (llama.cpp's syntax) that admits the same replies as
      `response_schema`; sent where a backend takes grammars (llama.cpp, in-process or served).
    purpose: what the call is for ('mutation', 'reflection', ...), for logs and counters.
  """
  system: str
  messages: tuple[Message, ...]
  temperature: float = 1.0
  seed: int | None = None
  max_output_tokens: int = 2048
  response_schema: str | None = None
  purpose: str = ""
  grammar: str | None = None

  def to_json(self) -> dict[str, Any]:
    out = {"system": self.system,
           "messages": [{"role": m.role, "text": m.text} for m in self.messages],
           "temperature": self.temperature, "seed": self.seed,
           "max_output_tokens": self.max_output_tokens,
           "response_schema": self.response_schema, "purpose": self.purpose}
    if self.grammar is not None:  # Only when set: logs written before it existed keep their hashes.
      out["grammar"] = self.grammar
    return out

  @classmethod
  def from_json(cls, d: dict[str, Any]) -> "Request":
    return cls(system=d["system"], messages=tuple(Message(m["role"], m["text"]) for m in d["messages"]),
               temperature=d["temperature"], seed=d["seed"], max_output_tokens=d["max_output_tokens"],
               response_schema=d["response_schema"], purpose=d["purpose"],
               grammar=d.get("grammar"))

  def fingerprint(self) -> str:
    """SHA-256 (hex) of the canonical JSON of the request: equal requests, equal fingerprints."""
    text = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()

  @property
  def prompt_text(self) -> str:
    """The last user message: what the offline agent reads."""
    return self.messages[-1].text


@dataclasses.dataclass(frozen=True)
class Response:
  """The LLM's answer.

  Attributes:
    text: the reply text, exactly as received.
    model: the model that answered.
    input_tokens / output_tokens: token counts as the backend reports them (estimates offline).
    latency_s: wall seconds of the successful attempt.
    call_id: unique id of the call (the server's id, or one we make); trials refer to it.
    backend: 'gemini', 'openai', 'local', 'offline', 'replay'.
    structured: how the reply was constrained (`rznas_jax.llm.structured.FORMS`: 'json_schema',
      'json_object', 'grammar', or 'off' when the backend sent the request plain); '' when the
      request asked for no structure.
  """
  text: str
  model: str
  input_tokens: int = 0
  output_tokens: int = 0
  latency_s: float = 0.0
  call_id: str = ""
  backend: str = ""
  structured: str = ""

  def to_json(self) -> dict[str, Any]:
    return dataclasses.asdict(self)

  @classmethod
  def from_json(cls, d: dict[str, Any]) -> "Response":
    return cls(**{f.name: d[f.name] for f in dataclasses.fields(cls) if f.name in d})


class Backend(Protocol):
  """Anything that answers a `Request`. Implementations must be safe to call from many threads."""
  name: str

  def complete(self, request: Request) -> Response:
    ...
