"""Any OpenAI-compatible chat-completions endpoint: GPT-4o, vLLM, llama.cpp, Ollama, gateways.

Uses the official `openai` client, an optional extra (`pip install "rznas_jax[openai]"`),
imported only when this backend is built. The SDK's own retries are off (`max_retries=0`):
`LLMClient` is the one place that retries.

Example:
  >>> backend = OpenAIBackend("gpt-4o", api_key=os.environ["OPENAI_API_KEY"])
  >>> local = OpenAIBackend("llama-3.1-8b", api_key="not-needed",
  ...                       base_url="http://localhost:8000/v1")   # a vLLM server
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from rznas_jax.llm.base import LLMError, Request, Response
from rznas_jax.llm.errors import (LLMConnectionError, LLMHTTPError, LLMMalformedResponseError,
                                  LLMTimeoutError, parse_retry_after)
from rznas_jax.llm.http_logs import quiet_http_logs
from rznas_jax.llm.structured import FormChooser, schema_of

DEFAULT_MODEL = "gpt-4o"


def _import_openai() -> Any:
  try:
    import openai  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise LLMError('The openai backend needs the openai package; install it with '
                   'pip install "rznas_jax[openai]".') from None
  return openai


def _error_message(error: Any) -> str:
  """The server's own words from an `openai.APIStatusError`."""
  body = getattr(error, "body", None)
  if isinstance(body, dict):
    inner = body.get("error", body)
    if isinstance(inner, dict) and inner.get("message"):
      return str(inner["message"])
    if isinstance(inner, str):
      return inner
  return str(getattr(error, "message", None) or error)


class OpenAIBackend:
  """Answers requests through `POST {base_url}/chat/completions`.

  Thread-safe: one SDK client (one pooled HTTP client) is shared by all calls.

  Attributes:
    name: 'openai'.
    model: the model name the endpoint serves, e.g. 'gpt-4o'.
    key_env_vars: where `make_client` reads the key from (named in 'key rejected' errors).
    structured: the `FormChooser` that says how structured requests are sent.
  """
  name = "openai"
  key_env_vars = ("OPENAI_API_KEY",)

  def __init__(self, model: str = DEFAULT_MODEL, api_key: str = "", base_url: str | None = None,
               timeout_s: float = 60.0, structured_output: str = "auto"):
    """Builds the SDK client.

    Args:
      model: model name as the endpoint knows it.
      api_key: the API key (local servers accept any non-empty string).
      base_url: the endpoint, e.g. 'http://localhost:8000/v1'; None for api.openai.com.
      timeout_s: per-attempt HTTP timeout in seconds.
      structured_output: `rznas_jax.llm.structured.MODES`; 'auto' tries OpenAI's json_schema first
        and, on a server other than api.openai.com, then json_object, grammar and plain.

    Raises:
      LLMError: the `openai` package is not installed.
      ValueError: an unknown structured_output mode.
    """
    openai = _import_openai()
    self._openai = openai
    self.model = model
    self.timeout_s = timeout_s
    official = base_url is None or "api.openai.com" in base_url
    self.structured = FormChooser(structured_output, "openai" if official else "openai_compatible")
    self._client = openai.OpenAI(api_key=api_key or "not-needed", base_url=base_url,
                                 timeout=timeout_s, max_retries=0)
    quiet_http_logs()

  def __repr__(self) -> str:
    return f"OpenAIBackend(model={self.model!r})"

  def _arguments(self, request: Request, form: str = "off") -> dict[str, Any]:
    messages = [{"role": "system", "content": request.system}] if request.system else []
    messages += [{"role": m.role, "content": m.text} for m in request.messages]
    kwargs: dict[str, Any] = dict(model=self.model, messages=messages,
                                  temperature=request.temperature,
                                  max_tokens=request.max_output_tokens)
    if request.seed is not None:
      kwargs["seed"] = request.seed
    schema = schema_of(request)
    if form == "json_schema" and schema is not None:
      kwargs["response_format"] = {"type": "json_schema",
                                   "json_schema": {"name": "reply", "strict": True, "schema": schema}}
    elif form == "json_object" and schema is not None:
      kwargs["response_format"] = {"type": "json_object", "schema": schema}
    elif form == "grammar" and request.grammar is not None:
      kwargs["extra_body"] = {"grammar": request.grammar}
    return kwargs

  def complete(self, request: Request) -> Response:
    """Sends one chat-completions call.

    Args:
      request: what to ask.

    Returns:
      The reply, with token counts from `usage`.

    Raises:
      LLMHTTPError: the server answered with an error status.
      LLMTimeoutError / LLMConnectionError: no answer in time / the connection failed.
      LLMMalformedResponseError: a 200 whose body is not a chat completion, or has no text.
    """
    return self.structured.complete(request, self._send)

  def _send(self, request: Request, form: str) -> Response:
    openai = self._openai
    arguments = self._arguments(request, form)  # Outside the `try`: a bad request is not a bad answer.
    start = time.monotonic()
    try:
      reply = self._client.chat.completions.create(**arguments)
    except openai.APIStatusError as e:
      headers = getattr(getattr(e, "response", None), "headers", None)
      raise LLMHTTPError(int(e.status_code), parse_retry_after(headers), _error_message(e)) from None
    except openai.APITimeoutError:  # Before APIConnectionError: it is a subclass.
      raise LLMTimeoutError(f"no answer from the endpoint within {self.timeout_s:g} s") from None
    except openai.APIConnectionError as e:
      raise LLMConnectionError(f"connection to the endpoint failed ({type(e).__name__})") from None
    except (ValueError, openai.APIResponseValidationError) as e:  # JSONDecodeError is a ValueError.
      raise LLMMalformedResponseError(
          f"the endpoint's answer is not a valid chat completion ({type(e).__name__})") from None
    latency = time.monotonic() - start
    try:
      text = reply.choices[0].message.content
      usage = reply.usage
      input_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
      output_tokens = int(getattr(usage, "completion_tokens", 0) or 0)
      call_id = getattr(reply, "id", None) or uuid.uuid4().hex
      model = getattr(reply, "model", None) or self.model
    except (AttributeError, IndexError, KeyError, TypeError):
      # A non-JSON 200 comes back from the SDK as a plain string, not a ChatCompletion.
      raise LLMMalformedResponseError(
          f"the endpoint's answer is not a chat completion (got {type(reply).__name__})") from None
    if not isinstance(text, str):
      raise LLMMalformedResponseError("the endpoint's chat completion has no text content")
    return Response(text=text, model=str(model), input_tokens=input_tokens,
                    output_tokens=output_tokens, latency_s=latency, call_id=str(call_id),
                    backend=self.name, structured=form)
