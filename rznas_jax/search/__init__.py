"""The RZ-NAS search: prompts, reply parsing, reflection, the pure search state and the driver.

  >>> from rznas_jax import search
  >>> config = search.default_config()
  >>> summary = search.run(config, "runs/nb201")

The names below are imported on first use, so that ``rznas_jax.search.state`` (NumPy only) and
the reports that read run folders do not pull in JAX and Flax.
"""

import importlib

_EXPORTS = {
    "OfflineAgent": "agent",
    "ConfigError": "config", "check_config": "config", "default_config": "config",
    "SearchAborted": "driver", "load_state": "driver", "run": "driver",
    "PromptOptions": "prompts", "mutation_request": "prompts", "reflection_request": "prompts",
    "ParsedReply": "replies", "parse_mutation_reply": "replies",
    "Member": "state", "Proposal": "state", "SearchState": "state", "Trial": "state",
    "Reflection": "state", "apply_step": "state", "init_state": "state", "plan_step": "state",
}
_SUBMODULES = ("agent", "config", "driver", "keys", "prompts", "replies", "run_folder", "state")

__all__ = sorted(_EXPORTS)


def __getattr__(name):
  if name in _EXPORTS:
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
  if name in _SUBMODULES:
    return importlib.import_module(f"{__name__}.{name}")
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
