"""Gemini through the maintained `google-genai` SDK (`from google import genai`).

The brief named `google-generativeai`; that package has reached end of support, and `google-genai`
is its successor with the same keys and models. The SDK's own retries are switched off
(`HttpRetryOptions(attempts=1)`): `LLMClient` is the one place that retries, so attempts, waits
and the log agree. Structured output is JSON mode (``response_mime_type="application/json"``)
with the reply's ``response_schema`` (`rznas_jax.llm.structured`).

Example:
  >>> backend = GeminiBackend("gemini-2.5-flash", api_key=os.environ["GEMINI_API_KEY"])
  >>> backend.complete(Request(system="...", messages=(Message("user", "..."),))).text
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from rznas_jax.llm.base import Request, Response
from rznas_jax.llm.errors import (LLMConnectionError, LLMHTTPError, LLMMalformedResponseError,
                                  LLMTimeoutError, parse_retry_after)
from rznas_jax.llm.http_logs import quiet_http_logs
from rznas_jax.llm.structured import FormChooser, gemini_schema, schema_of

DEFAULT_MODEL = "gemini-2.5-flash"


def _transport_errors() -> tuple[tuple[type, ...], tuple[type, ...]]:
  """(timeout classes, connection classes) of whichever httpx the SDK runs on."""
  timeouts: list[type] = []
  connections: list[type] = []
  for module_name in ("httpx2", "httpx"):
    try:
      module = __import__(module_name)
    except ImportError:
      continue
    timeouts.append(module.TimeoutException)
    connections.append(module.TransportError)  # Parent of ConnectError, ReadError, ...
  return tuple(timeouts), tuple(connections)


class GeminiBackend:
  """Answers requests with a Gemini model (`generateContent`).

  Thread-safe: one SDK client (one pooled HTTP client) is shared by all calls.

  Attributes:
    name: 'gemini'.
    model: the model name, e.g. 'gemini-2.5-flash'.
    key_env_vars: where `make_client` reads the key from (named in 'key rejected' errors).
    structured: the `FormChooser` that says how structured requests are sent.
  """
  name = "gemini"
  key_env_vars = ("GEMINI_API_KEY", "GOOGLE_API_KEY")

  def __init__(self, model: str = DEFAULT_MODEL, api_key: str = "", base_url: str | None = None,
               timeout_s: float = 60.0, structured_output: str = "auto"):
    """Builds the SDK client.

    Args:
      model: Gemini model name.
      api_key: the API key (never logged or stored anywhere but the SDK client).
      base_url: another endpoint than Google's (a proxy, or a local test server), or None.
      timeout_s: per-attempt HTTP timeout in seconds.
      structured_output: 'auto' or 'json_schema' (JSON mode with the schema), 'json_object'
        (JSON mode alone), 'off'.

    Raises:
      ValueError: a structured_output mode Gemini has no form for (grammar).
    """
    self.structured = FormChooser(structured_output, "gemini")
    from google import genai  # pylint: disable=g-import-not-at-top
    from google.genai import types  # pylint: disable=g-import-not-at-top
    self._types = types
    self._api_error = genai.errors.APIError
    self._timeouts, self._connections = _transport_errors()
    self.model = model
    self.timeout_s = timeout_s
    options = types.HttpOptions(base_url=base_url, timeout=max(1, int(round(timeout_s * 1000))),
                                retry_options=types.HttpRetryOptions(attempts=1))
    self._client = genai.Client(api_key=api_key, http_options=options)
    quiet_http_logs()

  def __repr__(self) -> str:
    return f"GeminiBackend(model={self.model!r})"

  def _config(self, request: Request, form: str = "off") -> Any:
    types = self._types
    kwargs: dict[str, Any] = dict(system_instruction=request.system or None,
                                  temperature=request.temperature,
                                  max_output_tokens=request.max_output_tokens)
    if request.seed is not None:
      kwargs["seed"] = request.seed
    schema = schema_of(request)
    if form in ("json_schema", "json_object") and schema is not None:
      kwargs["response_mime_type"] = "application/json"
      if form == "json_schema":
        kwargs["response_schema"] = gemini_schema(schema)
    return types.GenerateContentConfig(**kwargs)

  def complete(self, request: Request) -> Response:
    """Sends one `generateContent` call.

    Args:
      request: what to ask.

    Returns:
      The reply, with token counts from `usage_metadata` (thinking tokens count as output: they
      are billed as output).

    Raises:
      LLMHTTPError: the server answered with an error status.
      LLMTimeoutError / LLMConnectionError: no answer in time / the connection failed.
      LLMMalformedResponseError: a 200 whose body is not a Gemini reply, or has no text.
    """
    return self.structured.complete(request, self._send)

  def _send(self, request: Request, form: str) -> Response:
    types = self._types
    contents = [types.Content(role="model" if m.role == "assistant" else "user",
                              parts=[types.Part(text=m.text)]) for m in request.messages]
    config = self._config(request, form)  # Outside the `try`: a bad request is not a bad answer.
    start = time.monotonic()
    try:
      reply = self._client.models.generate_content(model=self.model, contents=contents,
                                                   config=config)
    except self._api_error as e:
      headers = getattr(getattr(e, "response", None), "headers", None)
      message = getattr(e, "message", None) or str(e)
      raise LLMHTTPError(int(e.code or 0), parse_retry_after(headers), str(message)) from None
    except self._timeouts:
      raise LLMTimeoutError(f"no answer from Gemini within {self.timeout_s:g} s") from None
    except self._connections as e:
      raise LLMConnectionError(f"connection to Gemini failed ({type(e).__name__})") from None
    except (ValueError, KeyError, TypeError) as e:  # JSONDecodeError is a ValueError.
      raise LLMMalformedResponseError(
          f"Gemini's answer is not a valid generateContent body ({type(e).__name__})") from None
    latency = time.monotonic() - start
    return Response(text=self._text_of(reply), model=reply.model_version or self.model,
                    input_tokens=_usage(reply, "prompt_token_count"),
                    output_tokens=(_usage(reply, "candidates_token_count")
                                   + _usage(reply, "thoughts_token_count")),
                    latency_s=latency, call_id=reply.response_id or uuid.uuid4().hex,
                    backend=self.name, structured=form)

  @staticmethod
  def _text_of(reply: Any) -> str:
    candidates = reply.candidates or []
    if not candidates or candidates[0].content is None:
      feedback = getattr(reply, "prompt_feedback", None)
      reason = getattr(feedback, "block_reason", None)
      raise LLMMalformedResponseError(
          f"Gemini returned no candidate (block reason: {reason})" if reason
          else "Gemini returned no candidate")
    parts = candidates[0].content.parts or []
    # Thought summaries are not the answer; only the visible text is.
    texts = [p.text for p in parts if p.text is not None and not getattr(p, "thought", False)]
    if not texts:
      finish = getattr(candidates[0].finish_reason, "value", candidates[0].finish_reason)
      raise LLMMalformedResponseError(f"Gemini returned no text (finish reason {finish})")
    return "".join(texts)


def _usage(reply: Any, field: str) -> int:
  usage = getattr(reply, "usage_metadata", None)
  return int(getattr(usage, field, None) or 0) if usage is not None else 0
