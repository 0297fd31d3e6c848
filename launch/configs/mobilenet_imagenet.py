"""RZ-NAS on the MobileNetV2-like ImageNet space at 224x224, N = 256, T = 1500.

    python -m launch.search --config=launch/configs/mobilenet_imagenet.py:600M --workdir=runs/mbv2_600m

The argument picks the FLOPs budget: 450M (default, max 14 layers), 600M (14) or 1000M (16).
"""

from rznas_jax.search import config as config_lib

BUDGETS = {"450M": (450e6, 14), "600M": (600e6, 14), "1000M": (1000e6, 16)}


def get_config(budget: str | None = None):
  budget = budget or "450M"
  if budget not in BUDGETS:
    raise ValueError(f"mobilenet_imagenet budget {budget!r} is unknown; valid: {', '.join(BUDGETS)}.")
  config = config_lib.default_config()
  config.space = "mobilenet_imagenet"
  config.proxy = "zico"
  config.macro.budget_flops, config.macro.max_layers = BUDGETS[budget]
  config.search.population = 256
  return config
