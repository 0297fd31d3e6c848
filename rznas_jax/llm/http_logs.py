"""Keeps the HTTP libraries under the SDKs from logging every request at INFO.

httpx (and its fork httpx2, which google-genai and openai now use) logs one INFO line per request;
under absl, whose handler shows INFO, a search would print one line per LLM call. Our own log
(`llm_log.jsonl`) already records every exchange.
"""

import logging

_LOGGERS = ("httpx", "httpx2", "httpcore", "httpcore2")


def quiet_http_logs() -> None:
  """Raises the HTTP loggers to WARNING, unless the user has set their level already."""
  for name in _LOGGERS:
    logger = logging.getLogger(name)
    if logger.level == logging.NOTSET:
      logger.setLevel(logging.WARNING)
