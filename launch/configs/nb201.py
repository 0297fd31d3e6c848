"""The default run: RZ-NAS on NAS-Bench-201 with SynFlow, the paper's T = 1500 and N = 100.

Offline (no key set) it uses the built-in offline agent; with GEMINI_API_KEY set, Gemini.

    python -m launch.search --config=launch/configs/nb201.py --workdir=runs/nb201 \
        --config.benchmark=../shared/data/nb201/v-tao_nats-bench-landscape/nats_bench.csv

``--config=launch/configs/nb201.py:zico`` picks another proxy.
"""

from rznas_jax.search import config as config_lib


def get_config(proxy: str | None = None):
  config = config_lib.default_config()
  config.space = "nb201"
  config.proxy = proxy or "synflow"
  config.search.iterations = 1500
  config.search.population = 100
  return config
