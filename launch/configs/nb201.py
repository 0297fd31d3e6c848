"""The default run: RZ-NAS on NAS-Bench-201 with the AZ-NAS fitness, the paper's T = 1500, N = 100.

The fitness is ``az_nas``: AZ-NAS's four proxies (expressivity, progressivity, trainability on a
batch of 64 N(0, 1) images, and FLOPs), rank-aggregated over the archive of every evaluated cell
(`rznas_jax.fitness`). On 200 random cells it correlates with the NB201 test accuracy at Spearman
rho 0.92 / 0.91 / 0.90 (CIFAR-10 / CIFAR-100 / ImageNet16-120), against 0.76 for synflow; it is the
best fitness whose search stays within 10 minutes on a 2-core CPU (README). Offline (no key set)
the LLM is the built-in offline agent; with GEMINI_API_KEY set, Gemini. The found cell's NB201
test accuracies and ranks come from the packaged NATS-Bench table.

    python -m launch.search --config=launch/configs/nb201.py --workdir=runs/nb201

``--config=launch/configs/nb201.py:synflow`` (or any proxy or ``rank:a+b`` aggregate) picks another
fitness; ``launch/configs/nb201_best.py`` runs the highest-fidelity aggregate.
"""

from rznas_jax.search import config as config_lib

DEFAULT_FITNESS = "az_nas"


def get_config(proxy: str | None = None):
  config = config_lib.default_config()
  config.space = "nb201"
  config.proxy = proxy or DEFAULT_FITNESS
  config.search.iterations = 1500
  config.search.population = 100
  return config
