"""The `llm` block of every launch config, and `make_client`, which turns it into an `LLMClient`.

Keys are read from the environment only, never from configs or flags, so they never reach a
config dump, a checkpoint or the run log.

Example (in a launch config's `get_config`):
  >>> config.llm = rznas_jax.llm.default_config()
  # python -m launch.search --config=launch/configs/nb201.py --config.llm.backend=openai \
  #     --config.llm.model=llama-3.1-8b --config.llm.base_url=http://localhost:8000/v1

and in the library:
  >>> client = make_client(config.llm, workdir, offline_factory=lambda: OfflineAgent(...))
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

import ml_collections
from absl import logging
from ml_collections import config_dict

from rznas_jax.errors import UserError
from rznas_jax.llm.base import Backend
from rznas_jax.llm.client import LLMClient
from rznas_jax.llm.structured import MODES, mode_of


class LLMConfigError(UserError):
  """An ``llm`` config value that cannot be used (a backend, a mode, a missing API key)."""


BACKENDS = ("auto", "gemini", "openai", "local:PATH.gguf", "offline", "replay:PATH")
DEFAULT_MODELS = {"gemini": "gemini-2.5-flash", "openai": "gpt-4o"}
KEY_ENV_VARS = {"gemini": ("GEMINI_API_KEY", "GOOGLE_API_KEY"), "openai": ("OPENAI_API_KEY",)}
LOG_FILE = "llm_log.jsonl"
# Sent to local OpenAI-compatible or Gemini-compatible servers that ignore the key.
PLACEHOLDER_KEY = "not-needed"


def default_config() -> ml_collections.ConfigDict:
  """The `llm` config block, with the defaults every launch script shares.

  Returns:
    A ConfigDict with:
      backend: 'auto' (Gemini when GEMINI_API_KEY or GOOGLE_API_KEY is set, else the offline
        agent), 'gemini', 'openai' (any OpenAI-compatible server with base_url), 'local:PATH.gguf'
        (a GGUF model run in-process by llama-cpp-python, the `local` extra), 'offline', or
        'replay:PATH' (answer from a recorded log).
      model: model name; None for the backend's default (gemini-2.5-flash, gpt-4o).
      base_url: another endpoint (a vLLM or llama.cpp server, a proxy); None for the provider's.
      timeout_s: seconds per attempt (network backends; `local:` calls run to their token cap).
      max_retries: retries after the first attempt on 429, 5xx, timeouts.
      max_concurrency: most calls in flight at once.
      requests_per_minute: most call starts per minute; 0 for no limit.
      log_path: the JSONL log of every exchange; None for `<workdir>/llm_log.jsonl`.
      structured_output: how mutation replies are constrained (`rznas_jax.llm.structured`):
        'auto' (the best form the backend takes, falling back when a server refuses one),
        'json_schema', 'json_object', 'grammar' or 'off'. Reflection replies stay free text.
      local_threads: CPU threads for 'local:' (None: all cores).
  """
  config = ml_collections.ConfigDict()
  config.backend = "auto"
  config.model = config_dict.placeholder(str)
  config.base_url = config_dict.placeholder(str)
  config.timeout_s = 60.0
  config.max_retries = 5
  config.max_concurrency = 8
  config.requests_per_minute = 0
  config.log_path = config_dict.placeholder(str)
  config.structured_output = "auto"
  config.local_threads = config_dict.placeholder(int)
  return config


def _first_key(names: tuple[str, ...]) -> tuple[str | None, str | None]:
  """(variable name, value) of the first variable set to a non-empty value, else (None, None)."""
  for name in names:
    value = os.environ.get(name, "").strip()
    if value:
      return name, value
  return None, None


def _choose(backend: str) -> tuple[str, str]:
  """Resolves 'auto' to a concrete backend, with the reason for the log line."""
  if backend != "auto":
    return backend, f"llm.backend={backend!r}"
  name, _ = _first_key(KEY_ENV_VARS["gemini"])
  if name:
    return "gemini", f"llm.backend='auto' and {name} is set"
  return "offline", "llm.backend='auto' and neither GEMINI_API_KEY nor GOOGLE_API_KEY is set"


def _network_backend(kind: str, llm: Mapping, secrets: list[str]) -> Backend:
  variable, key = _first_key(KEY_ENV_VARS[kind])
  if key is None:
    if not llm.get("base_url"):
      names = " or ".join(KEY_ENV_VARS[kind])
      raise LLMConfigError(f"llm.backend={kind!r} needs an API key in the environment variable "
                       f"{names}, or llm.base_url set to a local server that needs none.")
    key = PLACEHOLDER_KEY
  else:
    secrets.append(key)
  model = llm.get("model") or DEFAULT_MODELS[kind]
  timeout_s = float(llm.get("timeout_s") or 60.0)
  structured = mode_of(llm)
  if kind == "gemini":
    from rznas_jax.llm.gemini import GeminiBackend  # pylint: disable=g-import-not-at-top
    return GeminiBackend(model, api_key=key, base_url=llm.get("base_url"), timeout_s=timeout_s,
                         structured_output=structured)
  from rznas_jax.llm.openai_compat import OpenAIBackend  # pylint: disable=g-import-not-at-top
  return OpenAIBackend(model, api_key=key, base_url=llm.get("base_url"), timeout_s=timeout_s,
                       structured_output=structured)



def make_client(config: ml_collections.ConfigDict | Mapping, workdir: str | os.PathLike,
                offline_factory: Callable[[], Backend] | None = None, *,
                sleep: Callable[[float], None] | None = None) -> LLMClient:
  """Builds the `LLMClient` a run uses, from its `llm` config block.

  Logs one INFO line naming the backend it picked and why.

  Args:
    config: the `llm` block (`default_config()`, possibly overridden); a whole run config with
      an `llm` block is accepted too.
    workdir: the run folder; the exchange log goes to `<workdir>/llm_log.jsonl` by default.
    offline_factory: returns the offline agent (a `Backend`); needed for 'offline' and for 'auto'
      without a key.
    sleep: how retry waits are made (tests pass a fake); default `time.sleep`.

  Returns:
    A client that retries, caps concurrency, counts tokens and logs every exchange.

  Raises:
    ValueError: an unknown backend or structured_output mode, a missing key, or 'offline'
      without an offline_factory.
    LLMError: a replay log that is missing or malformed, the openai package is missing, or a
      'local:' model that cannot be loaded (no llama-cpp-python, no such file, not a GGUF).
  """
  llm = config.llm if "llm" in config and "backend" not in config else config
  requested = str(llm.get("backend") or "auto").strip()
  kind, reason = _choose(requested)
  if mode_of(llm) not in MODES:
    raise LLMConfigError(f"llm.structured_output={mode_of(llm)!r} is not a mode; use one of "
                     f"{', '.join(MODES)}.")
  secrets: list[str] = []
  workdir = os.fspath(workdir)
  log_path = llm.get("log_path") or os.path.join(workdir, LOG_FILE)
  if kind in ("gemini", "openai"):
    backend = _network_backend(kind, llm, secrets)
    detail = f"{kind} (model {backend.model}" + (f" at {llm.get('base_url')})" if llm.get("base_url")
                                                  else ")")
  elif kind.startswith("local:"):
    from rznas_jax.llm.local import LocalBackend  # pylint: disable=g-import-not-at-top
    path = os.path.expanduser(kind[len("local:"):].strip())
    threads = llm.get("local_threads")
    backend = LocalBackend(path, structured_output=mode_of(llm),
                           n_threads=int(threads) if threads else None)
    detail = f"local ({backend.model} in-process, llama-cpp-python)"
  elif kind == "offline":
    if offline_factory is None:
      raise ValueError(f"The offline LLM backend was chosen ({reason}) but no offline_factory was "
                       "given; pass the search's offline agent factory to make_client.")
    backend = offline_factory()
    detail = f"offline ({type(backend).__name__})"
  elif kind.startswith("replay:") and kind[len("replay:"):].strip():
    from rznas_jax.llm.replay import ReplayBackend  # pylint: disable=g-import-not-at-top
    source = os.path.expanduser(kind[len("replay:"):].strip())
    backend = ReplayBackend(source)
    detail = f"replay of {source}"
    if os.path.abspath(source) == os.path.abspath(log_path):
      log_path = os.path.join(workdir, "llm_log.replayed.jsonl")  # Never append to the source.
  else:
    raise LLMConfigError(f"llm.backend={requested!r} is not a known backend; use one of "
                     f"{', '.join(BACKENDS)}.")
  logging.info("LLM backend: %s, because %s; exchanges are logged to %s.", detail, reason, log_path)
  rpm = llm.get("requests_per_minute") or None
  # In-process generation has no network to hang on and is bounded by max_output_tokens; a slow
  # CPU must not have its calls abandoned (and retried behind the model's lock) by the safety net.
  timeout_s = None if kind.startswith("local:") else float(llm.get("timeout_s") or 60.0)
  return LLMClient(backend, max_retries=int(llm.get("max_retries", 5)), timeout_s=timeout_s,
                   max_concurrency=int(llm.get("max_concurrency") or 8),
                   requests_per_minute=int(rpm) if rpm else None, log_path=log_path,
                   secrets=secrets, **({"sleep": sleep} if sleep is not None else {}))
