"""The LLM layer: one request/response protocol, Gemini and OpenAI-compatible backends, record and
replay, and a client that retries, rate-limits, counts tokens and logs every exchange.

Example:
  >>> from rznas_jax import llm
  >>> client = llm.make_client(llm.default_config(), workdir, offline_factory=make_offline_agent)
  >>> client.complete(llm.Request(system="...", messages=(llm.Message("user", "..."),))).text
"""

from rznas_jax.llm.base import Backend, LLMError, Message, Request, Response
from rznas_jax.llm.client import LLMClient
from rznas_jax.llm.config import BACKENDS, default_config, make_client
from rznas_jax.llm.errors import (LLMConnectionError, LLMHTTPError, LLMMalformedResponseError,
                                  LLMTimeoutError)
from rznas_jax.llm.gemini import GeminiBackend
from rznas_jax.llm.openai_compat import OpenAIBackend
from rznas_jax.llm.pricing import estimate_cost_usd
from rznas_jax.llm.rate_limit import RequestsPerMinuteLimiter
from rznas_jax.llm.replay import LLMLog, ReplayBackend, log_entry

__all__ = [
    "BACKENDS", "Backend", "GeminiBackend", "LLMClient", "LLMConnectionError", "LLMError",
    "LLMHTTPError", "LLMLog", "LLMMalformedResponseError", "LLMTimeoutError", "Message",
    "OpenAIBackend", "ReplayBackend", "Request", "RequestsPerMinuteLimiter", "Response",
    "default_config", "estimate_cost_usd", "log_entry", "make_client",
]
