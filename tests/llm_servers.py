"""Local HTTP servers that speak the Gemini and OpenAI chat protocols, for tests and benchmarks.

Each server listens on 127.0.0.1 on a free port, answers every request on its own thread, and
follows a script: a list of `Behaviour`s used one per request in arrival order, then `default`
for every later request. It records what it received and the most requests it ever had in
flight at once.

Example:
  >>> with OpenAIServer(responder=lambda body: "ok", delay_s=0.2) as srv:
  ...   client = openai.OpenAI(base_url=srv.base_url, api_key="x")
  ...   ...
  ...   srv.max_in_flight, len(srv.requests)

Behaviours (module-level constructors): `answer()` (the responder's reply, or a fixed text),
`http_error(status, retry_after=None)`, `hang(seconds)`, `malformed_body()`, `truncated_body()`
(a JSON body cut off mid-way), and `truncated_reply()` (a well-formed answer whose text is JSON
cut off by the token limit, finish reason `length` / `MAX_TOKENS`).
"""

from __future__ import annotations

import dataclasses
import http.server
import json
import re
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

# Maps a request's JSON body to the reply text, or to a `Behaviour` (an error for this request).
Responder = Callable[[dict[str, Any]], "str | Behaviour"]

_GEMINI_PATH = re.compile(r"^/(?:v1beta|v1|v1alpha)/models/([^/:]+):generateContent$")
_OPENAI_PATH = re.compile(r"^(?:/v1)?/chat/completions$")
TRUNCATED_REPLY_TEXT = '{"genotype": "|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|none~0|avg_po'


@dataclasses.dataclass(frozen=True)
class Behaviour:
  """What the server does with one request (build with the constructors below)."""
  kind: str  # 'answer', 'http_error', 'hang', 'malformed_body', 'truncated_body', 'truncated_reply'
  status: int = 200
  retry_after: float | None = None
  text: str | None = None
  seconds: float = 0.0


def answer(text: str | None = None) -> Behaviour:
  """A normal reply: `text`, or what the responder says when `text` is None."""
  return Behaviour("answer", text=text)


def http_error(status: int, retry_after: float | None = None, message: str | None = None) -> Behaviour:
  """An HTTP error in the protocol's error format, with a Retry-After header when given."""
  return Behaviour("http_error", status=status, retry_after=retry_after, text=message)


def hang(seconds: float = 30.0) -> Behaviour:
  """Sends nothing for `seconds` (or until the server stops), then closes the connection."""
  return Behaviour("hang", seconds=seconds)


def malformed_body() -> Behaviour:
  """HTTP 200 with a body that is not JSON at all."""
  return Behaviour("malformed_body")


def truncated_body() -> Behaviour:
  """HTTP 200 with the protocol's JSON cut off half-way (Content-Length matches what is sent)."""
  return Behaviour("truncated_body")


def truncated_reply(text: str = TRUNCATED_REPLY_TEXT) -> Behaviour:
  """A well-formed answer whose reply text is truncated JSON (the model hit its token limit)."""
  return Behaviour("truncated_reply", text=text)


@dataclasses.dataclass(frozen=True)
class ReceivedRequest:
  """One request as the server saw it (header names in lower case)."""
  path: str
  headers: dict[str, str]
  json: dict[str, Any]


def last_user_text(body: dict[str, Any]) -> str:
  """The last user turn of a Gemini or OpenAI request body."""
  if "contents" in body:
    turns = [c for c in body["contents"] if c.get("role", "user") == "user"]
    return "".join(p.get("text", "") for p in turns[-1]["parts"]) if turns else ""
  turns = [m for m in body.get("messages", []) if m.get("role") == "user"]
  return str(turns[-1]["content"]) if turns else ""


def echo_responder(body: dict[str, Any]) -> str:
  """The default responder: a deterministic reply naming the last user message."""
  return f"echo: {last_user_text(body)}"


class _Handler(http.server.BaseHTTPRequestHandler):
  protocol_version = "HTTP/1.1"
  # Headers and body go out in separate writes; with Nagle's algorithm on, the body waits for the
  # client's delayed ACK (~40 ms per reply), which would swamp a latency benchmark.
  disable_nagle_algorithm = True
  server: "_HTTPServer"

  def log_message(self, format, *args):  # pylint: disable=redefined-builtin
    del format, args  # Quiet: tests read the recorded requests instead.

  def do_POST(self):  # pylint: disable=invalid-name
    self.server.owner._handle(self)


class _HTTPServer(http.server.ThreadingHTTPServer):
  daemon_threads = True
  block_on_close = False
  # socketserver's default backlog is 5: a burst of new connections overflows it and the dropped
  # SYNs are retransmitted a second later, which looks like a slow server.
  request_queue_size = 256
  owner: "_LLMServer"


class _LLMServer:
  """Shared machinery; subclasses format replies in their protocol."""

  def __init__(self, responder: Responder | None = None, *, delay_s: float = 0.0,
               script: Sequence[Behaviour] = (), default: Behaviour | None = None,
               models: Sequence[str] | None = None):
    """Configures the server (it starts on `start()` or `with`).

    Args:
      responder: maps a request's JSON body to the reply text, or to a `Behaviour` for requests
        that should fail (default: `echo_responder`).
      delay_s: seconds every request waits before it is answered.
      script: behaviours for the first requests, one each, in arrival order.
      default: the behaviour after the script runs out (default: `answer()`).
      models: model names that exist; others get a 404 (default: every name exists).
    """
    self.responder = responder or echo_responder
    self.delay_s = delay_s
    self._script = list(script)
    self.default = default or answer()
    self.models = None if models is None else set(models)
    self.requests: list[ReceivedRequest] = []
    self.in_flight = 0
    self.max_in_flight = 0
    self._lock = threading.Lock()
    self._stopping = threading.Event()
    self._httpd: _HTTPServer | None = None
    self._thread: threading.Thread | None = None

  # -- lifecycle ---------------------------------------------------------------------------------

  def start(self) -> "_LLMServer":
    self._httpd = _HTTPServer(("127.0.0.1", 0), _Handler)
    self._httpd.owner = self
    self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                    daemon=True)
    self._thread.start()
    return self

  def stop(self) -> None:
    self._stopping.set()  # Wakes hanging handlers.
    if self._httpd is not None:
      self._httpd.shutdown()
      self._httpd.server_close()
      self._httpd = None

  def __enter__(self):
    return self.start()

  def __exit__(self, *exc):
    self.stop()

  @property
  def port(self) -> int:
    assert self._httpd is not None, "the server is not running"
    return self._httpd.server_address[1]

  @property
  def base_url(self) -> str:
    raise NotImplementedError

  def reset_counters(self) -> None:
    """Forgets the recorded requests and the in-flight maximum (e.g. between benchmark runs)."""
    with self._lock:
      self.requests.clear()
      self.max_in_flight = self.in_flight

  # -- one request -------------------------------------------------------------------------------

  def _next_behaviour(self) -> Behaviour:
    with self._lock:
      return self._script.pop(0) if self._script else self.default

  def _handle(self, handler: _Handler) -> None:
    with self._lock:
      self.in_flight += 1
      self.max_in_flight = max(self.max_in_flight, self.in_flight)
    try:
      length = int(handler.headers.get("Content-Length") or 0)
      raw = handler.rfile.read(length) if length else b""
      try:
        body = json.loads(raw or b"{}")
      except json.JSONDecodeError:
        body = {}
      with self._lock:
        self.requests.append(ReceivedRequest(
            handler.path, {k.lower(): v for k, v in handler.headers.items()}, body))
      behaviour = self._next_behaviour()
      if self.delay_s:
        self._stopping.wait(self.delay_s)
      self._respond(handler, behaviour, body)
    except (BrokenPipeError, ConnectionResetError):
      pass  # The client gave up (its timeout); nothing to answer.
    finally:
      with self._lock:
        self.in_flight -= 1

  def _respond(self, handler: _Handler, behaviour: Behaviour, body: dict[str, Any]) -> None:
    if behaviour.kind in ("answer", "truncated_body") and behaviour.text is None:
      reply = self.responder(body)
      behaviour = (reply if isinstance(reply, Behaviour)
                   else dataclasses.replace(behaviour, text=reply))
    model = self._model_of(handler.path, body)
    if model is None:
      self._send(handler, 404, json.dumps(self._error_json(404, f"no route {handler.path}")))
      return
    if self.models is not None and model not in self.models:
      self._send(handler, 404, json.dumps(self._error_json(404, f"model {model} is not served here")))
      return
    kind = behaviour.kind
    if kind == "hang":
      self._stopping.wait(behaviour.seconds)
      handler.close_connection = True
      return
    if kind == "http_error":
      headers = {}
      if behaviour.retry_after is not None:
        headers["Retry-After"] = f"{behaviour.retry_after:g}"
      message = behaviour.text or f"scripted error {behaviour.status}"
      self._send(handler, behaviour.status, json.dumps(self._error_json(behaviour.status, message)),
                 headers)
      return
    if kind == "malformed_body":
      self._send(handler, 200, "<html>502 bad gateway from a proxy</html>", content_type="text/html")
      return
    if kind == "truncated_reply":
      self._send(handler, 200, json.dumps(self._reply_json(model, behaviour.text, body, truncated=True)))
      return
    payload = json.dumps(self._reply_json(model, behaviour.text or "", body, truncated=False))
    if kind == "truncated_body":
      payload = payload[: len(payload) // 2]
    self._send(handler, 200, payload)

  @staticmethod
  def _send(handler: _Handler, status: int, payload: str, headers: dict[str, str] | None = None,
            content_type: str = "application/json") -> None:
    data = payload.encode()
    handler.send_response(status)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(data)))
    for name, value in (headers or {}).items():
      handler.send_header(name, value)
    handler.end_headers()
    handler.wfile.write(data)
    handler.wfile.flush()

  # -- protocol-specific -------------------------------------------------------------------------

  def _model_of(self, path: str, body: dict[str, Any]) -> str | None:
    raise NotImplementedError

  def _reply_json(self, model: str, text: str, body: dict[str, Any], truncated: bool) -> dict[str, Any]:
    raise NotImplementedError

  def _error_json(self, status: int, message: str) -> dict[str, Any]:
    raise NotImplementedError


def _count_tokens(text: str) -> int:
  return max(1, len(text.split()))


class GeminiServer(_LLMServer):
  """Speaks `POST /v1beta/models/{model}:generateContent` (the Gemini API's REST form)."""

  @property
  def base_url(self) -> str:
    return f"http://127.0.0.1:{self.port}/"

  def _model_of(self, path, body):
    match = _GEMINI_PATH.match(path.split("?")[0])
    return match.group(1) if match else None

  def _reply_json(self, model, text, body, truncated):
    prompt = " ".join(p.get("text", "") for c in body.get("contents", []) for p in c.get("parts", []))
    prompt_tokens, reply_tokens = _count_tokens(prompt), _count_tokens(text)
    with self._lock:
      number = len(self.requests)
    return {
        "candidates": [{"content": {"role": "model", "parts": [{"text": text}]},
                        "finishReason": "MAX_TOKENS" if truncated else "STOP", "index": 0}],
        "usageMetadata": {"promptTokenCount": prompt_tokens, "candidatesTokenCount": reply_tokens,
                          "totalTokenCount": prompt_tokens + reply_tokens},
        "modelVersion": model,
        "responseId": f"gemini-{number}",
    }

  def _error_json(self, status, message):
    names = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
             404: "NOT_FOUND", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE"}
    return {"error": {"code": status, "message": message, "status": names.get(status, "UNKNOWN")}}


class OpenAIServer(_LLMServer):
  """Speaks `POST /v1/chat/completions` (OpenAI, vLLM, llama.cpp and others)."""

  @property
  def base_url(self) -> str:
    return f"http://127.0.0.1:{self.port}/v1"

  def _model_of(self, path, body):
    if not _OPENAI_PATH.match(path.split("?")[0]):
      return None
    return str(body.get("model", ""))

  def _reply_json(self, model, text, body, truncated):
    prompt = " ".join(str(m.get("content", "")) for m in body.get("messages", []))
    prompt_tokens, reply_tokens = _count_tokens(prompt), _count_tokens(text)
    with self._lock:
      number = len(self.requests)
    return {
        "id": f"chatcmpl-{number}", "object": "chat.completion", "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                     "finish_reason": "length" if truncated else "stop"}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": reply_tokens,
                  "total_tokens": prompt_tokens + reply_tokens},
    }

  def _error_json(self, status, message):
    kinds = {400: "invalid_request_error", 401: "invalid_api_key", 404: "model_not_found",
             429: "rate_limit_exceeded"}
    return {"error": {"message": message, "type": kinds.get(status, "server_error"), "param": None,
                      "code": kinds.get(status)}}
