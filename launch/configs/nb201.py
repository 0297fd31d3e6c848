"""The default run: RZ-NAS on NAS-Bench-201 with an AZ-NAS-class fitness, the paper's T = 1500, N = 100.

The fitness ranks every cell against the archive of every evaluated cell on five proxies and sums
log(rank/n) (`rznas_jax.fitness`): AZ-NAS's four (expressivity, progressivity, trainability on a
batch of 64 N(0, 1) images, and FLOPs) plus SynFlow. Chosen on 500 random cells (seed 1), where
it reached Spearman rho 0.93 / 0.92 / 0.91 against the NB201 test accuracy (CIFAR-10 / CIFAR-100
/ ImageNet16-120), against 0.90 / 0.89 / 0.88 for ``az_nas`` and 0.76 / 0.75 / 0.75 for synflow;
SynFlow adds almost nothing to the cost, so the search stays within 10 minutes on a 2-core CPU
(README). Offline (no key set) the LLM is the built-in offline agent; with GEMINI_API_KEY set,
Gemini. The found cell's NB201 test accuracies and ranks come from the packaged NATS-Bench table.

    python -m launch.search --config=launch/configs/nb201.py --workdir=runs/nb201

``--config=launch/configs/nb201.py:synflow`` (or any proxy, ``az_nas``, or a ``rank:a+b``
aggregate) picks another fitness; ``launch/configs/nb201_best.py`` runs the highest-fidelity
aggregate, whatever its cost.
"""

from rznas_jax.search import config as config_lib

DEFAULT_FITNESS = "rank:az_expressivity+az_progressivity+az_trainability+flops+synflow"


def get_config(proxy: str | None = None):
  config = config_lib.default_config()
  config.space = "nb201"
  config.proxy = proxy or DEFAULT_FITNESS
  config.search.iterations = 1500
  config.search.population = 100
  return config
