"""RZ-NAS on the Zen-NAS ResNet-like CIFAR space (params <= 1M, 18 layers), N = 256, T = 1500.

    python -m launch.search --config=launch/configs/zen_cifar.py --workdir=runs/zen_cifar
    python -m launch.search --config=launch/configs/zen_cifar.py:2M --workdir=runs/zen_cifar_2m

The argument picks the budget: 1M (default, max 18 layers) or 2M (max 20 layers).
"""

from rznas_jax.search import config as config_lib

BUDGETS = {"1M": (1e6, 18), "2M": (2e6, 20)}


def get_config(budget: str | None = None):
  budget = budget or "1M"
  if budget not in BUDGETS:
    raise ValueError(f"zen_cifar budget {budget!r} is unknown; valid: {', '.join(BUDGETS)}.")
  config = config_lib.default_config()
  config.space = "zen_cifar"
  config.proxy = "zen"
  config.macro.budget_params, config.macro.max_layers = BUDGETS[budget]
  config.search.population = 256
  return config
