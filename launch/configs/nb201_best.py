"""The highest-fidelity NB201 fitness we have, whatever its cost: seven proxies rank-aggregated.

``rank:zico+az_expressivity+az_trainability+params+az_progressivity+jacov+synflow``, chosen by a
greedy forward search (``benchmarks/aggregate_fitness.py``) on 500 random cells (seed 1), where it
reached Spearman rho 0.94 / 0.94 / 0.92 (CIFAR-10 / CIFAR-100 / ImageNet16-120). ZiCo and jacov
read real images: the config takes ``--config.data`` (a CIFAR-10 python-pickle directory or an
``.npz``), by default the 1,000 CIFAR-10 test images of ``../shared/data`` when that folder sits
beside the repository. About 3x the default search's scoring time (README).

    python -m launch.search --config=launch/configs/nb201_best.py --workdir=runs/nb201_best \
        --config.data=/path/to/cifar-10-batches-py
"""

import os

from launch.configs import nb201

BEST_FITNESS = "rank:zico+az_expressivity+az_trainability+params+az_progressivity+jacov+synflow"
SHARED_IMAGES = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "data", "images",
                             "YoongiKim_CIFAR-10-images_test.DERIVED.npz")


def get_config(proxy: str | None = None):
  config = nb201.get_config(proxy or BEST_FITNESS)
  if os.path.exists(SHARED_IMAGES):
    config.data = os.path.normpath(SHARED_IMAGES)
  return config
