"""RZ-NAS on the MAE-DET detection backbone space (resolution 480, FLOPs <= 188e8, 91 layers)
with the analytic MAE-DET score, N = 256, T = 1500.

    python -m launch.search --config=launch/configs/maedet_coco.py --workdir=runs/maedet
"""

from rznas_jax.search import config as config_lib


def get_config(proxy: str | None = None):
  config = config_lib.default_config()
  config.space = "maedet_coco"
  config.proxy = proxy or "maedet"
  config.search.population = 256
  return config
