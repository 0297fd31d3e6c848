"""The RZ-NAS search: prompts, reply parsing, reflection, the pure search state and the driver.

  >>> from rznas_jax import search
  >>> config = search.default_config()
  >>> summary = search.run(config, "runs/nb201")
"""

from rznas_jax.search.agent import OfflineAgent
from rznas_jax.search.config import ConfigError, check_config, default_config
from rznas_jax.search.driver import SearchAborted, load_state, run
from rznas_jax.search.prompts import PromptOptions, Reflection, mutation_request, reflection_request
from rznas_jax.search.replies import ParsedReply, parse_mutation_reply
from rznas_jax.search.spaces import MacroSearchSpace, NB201SearchSpace, SearchSpace, make_space
from rznas_jax.search.state import Member, Proposal, SearchState, Trial, apply_step, init_state, plan_step
