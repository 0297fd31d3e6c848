"""A tiny NB201 search for tests and smoke runs: a 4-channel, one-cell-per-stage network, 16x16
CIFAR-like inputs (ImageNet16-120's shape), batch 8, T = 24, N = 8; offline agent.

    python -m launch.search --config=launch/configs/tiny_cpu.py --workdir=/tmp/tiny
"""

from rznas_jax.search import config as config_lib


def get_config(proxy: str | None = None):
  config = config_lib.default_config()
  config.space = "nb201"
  config.proxy = proxy or "synflow"
  config.dataset = "imagenet16-120"
  config.batch_size = 8
  config.nb201.channels = 4
  config.nb201.cells_per_stage = 1
  config.search.iterations = 24
  config.search.population = 8
  config.llm.backend = "offline"
  return config
