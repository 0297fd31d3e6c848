"""The search's settings as an `ml_collections.ConfigDict`, with the paper's values as defaults.

``launch/configs/*.py`` start from `default_config` and change what their run needs; the
command line overrides any key (``--config.search.iterations=300``). `check_config` turns a bad
value into one sentence that names it and what would be valid.
"""

from __future__ import annotations

import ml_collections

from rznas_jax import fitness as fitness_lib
from rznas_jax import proxies as proxy_lib
from rznas_jax.errors import UserError
from rznas_jax import spaces as spaces_lib
from rznas_jax.llm import structured as structured_lib
from rznas_jax.search import state as state_lib

MUTATIONS = ("llm", "random")
SELECTIONS = ("uniform", "best")


class ConfigError(UserError):
  """A config value that cannot be used; the message names it and what would be valid."""


def default_config() -> ml_collections.ConfigDict:
  """Every key a search reads, with the RZ-NAS paper's settings (§4, App. A.4.3) where it has them
  (docs/search.md lists them)."""
  from rznas_jax.llm import config as llm_config  # pylint: disable=g-import-not-at-top
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.space = "nb201"
  c.proxy = "synflow"  # the fitness: a proxy, az_nas, or rank:a+b[+...] (`rznas_jax.fitness`)
  # Images for proxies that want real data: 'gaussian', a CIFAR directory or an .npz file.
  c.data = "gaussian"
  c.dataset = "cifar10"  # nb201: the network's classes and input size; also the normalisation
  c.batch_size = 64
  c.benchmark = ""  # nats_bench.csv: the found cell's NB201 test accuracies go into summary.json
  c.compilation_cache = ""  # a directory for JAX's persistent compilation cache

  c.nb201 = ml_collections.ConfigDict()
  c.nb201.channels = 16
  c.nb201.cells_per_stage = 5
  c.nb201.strategy = "auto"

  c.macro = ml_collections.ConfigDict()
  c.macro.budget_flops = ml_collections.FieldReference(None, field_type=float)
  c.macro.budget_params = ml_collections.FieldReference(None, field_type=float)
  c.macro.max_layers = ml_collections.FieldReference(None, field_type=int)
  c.macro.resolution = ml_collections.FieldReference(None, field_type=int)
  c.macro.num_classes = ml_collections.FieldReference(None, field_type=int)

  c.search = ml_collections.ConfigDict()
  c.search.iterations = 1500  # T: mutation attempts
  c.search.population = 100  # N (the paper: 100 on NB201, 256 elsewhere)
  c.search.proposals_per_step = 1  # K: children asked for at once (1 = the paper's loop)
  c.search.mutation = "llm"  # 'llm' (RZ-NAS) or 'random' (the original zero-cost EA)
  c.search.selection = "uniform"
  c.search.temperatures = state_lib.TEMPERATURES
  c.search.max_llm_failures = 10  # consecutive failed LLM calls that stop the run

  c.prompt = ml_collections.ConfigDict()
  c.prompt.code = True
  c.prompt.text = True
  c.prompt.example = True
  c.prompt.system_reflection = True
  c.prompt.reflection = True
  c.prompt.memory = 1
  c.prompt.max_output_tokens = 1024

  c.llm = llm_config.default_config()

  # Multi-process runs (TPU pods, several hosts): launch/search.py starts jax.distributed when
  # `enabled` or when JAX_COORDINATOR_ADDRESS is set; empty values are auto-detected by JAX.
  c.distributed = ml_collections.ConfigDict()
  c.distributed.enabled = False
  c.distributed.coordinator_address = ""
  c.distributed.num_processes = 0
  c.distributed.process_id = -1
  spaces_lib.add_config_sections(c)  # a space registered later brings its own section
  return c


def check_config(config: ml_collections.ConfigDict) -> None:
  """Raises `ConfigError` for the first unusable value."""
  space = make_space(config)
  try:
    fitness = fitness_of(config)
  except fitness_lib.FitnessError as e:
    raise ConfigError(f"config.proxy: {e}") from None
  try:
    space.check_proxies(fitness.components)
  except ValueError as e:
    raise ConfigError(f"config.proxy: {e}") from None
  s = config.search
  for name, value, low in (("search.iterations", s.iterations, 0), ("search.population", s.population, 1),
                           ("search.proposals_per_step", s.proposals_per_step, 1),
                           ("batch_size", config.batch_size, 1), ("prompt.memory", config.prompt.memory, 0),
                           ("search.max_llm_failures", s.max_llm_failures, 1)):
    if value < low:
      raise ConfigError(f"config.{name} is {value}; it must be at least {low}.")
  if s.mutation not in MUTATIONS:
    raise ConfigError(f"config.search.mutation {s.mutation!r} is unknown; valid: {', '.join(MUTATIONS)}.")
  if s.selection not in SELECTIONS:
    raise ConfigError(f"config.search.selection {s.selection!r} is unknown; valid: {', '.join(SELECTIONS)}.")
  if not s.temperatures or any(not 0 <= t <= 2 for t in s.temperatures):
    raise ConfigError(f"config.search.temperatures {tuple(s.temperatures)} must be a non-empty list "
                      "of values in [0, 2].")
  structured = structured_lib.mode_of(config.get("llm") or {})
  if structured not in structured_lib.MODES:
    raise ConfigError(f"config.llm.structured_output {structured!r} is unknown; valid: "
                      f"{', '.join(structured_lib.MODES)}.")
  if space.size is not None and s.population > space.size:
    raise ConfigError(f"config.search.population {s.population} exceeds the {space.size:,} "
                      f"architectures of the {space.name} space.")


def fitness_of(config: ml_collections.ConfigDict) -> fitness_lib.Fitness:
  """The fitness ``config.proxy`` names: one proxy, or an aggregate of several.

  Raises:
    FitnessError: a name that is no proxy and no valid aggregate.
  """
  return fitness_lib.parse(config.proxy, proxy_lib.names())


def make_space(config: ml_collections.ConfigDict) -> spaces_lib.Space:
  """The space ``config.space`` with the settings of its config section (``config.nb201`` or
  ``config.macro``) and ``config.dataset`` where the space has that setting.

  Raises:
    ConfigError: an unknown space or a bad setting, in one sentence.
  """
  try:
    return spaces_lib.from_config(config.space, config, dataset=config.dataset)
  except spaces_lib.SpaceError as e:
    raise ConfigError(f"config.space {config.space!r}: {e}") from None


def scoring_options(config: ml_collections.ConfigDict, space: spaces_lib.Space) -> dict:
  """The scoring options (`Space.SCORING_OPTIONS`) that the space's config section sets."""
  return spaces_lib.options(space, config, "SCORING_OPTIONS")


# Keys that may change when a run is resumed: the length of the run and how the LLM is reached.
RESUMABLE_KEYS = ("search.iterations", "llm", "compilation_cache", "benchmark",
                  "search.max_llm_failures", "distributed")


def result_relevant(config_json: dict) -> dict:
  """The flattened config without `RESUMABLE_KEYS`: what must match to resume a run."""
  flat = {}

  def walk(prefix, node):
    for k, v in node.items():
      key = f"{prefix}{k}"
      if any(key == r or key.startswith(r + ".") for r in RESUMABLE_KEYS):
        continue
      if isinstance(v, dict):
        walk(key + ".", v)
      else:
        flat[key] = list(v) if isinstance(v, tuple) else v
  walk("", config_json)
  return flat
