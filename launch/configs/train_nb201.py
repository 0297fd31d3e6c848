"""The NAS-Bench-201 training recipe (xautodl): 200 epochs, SGD Nesterov 0.9, lr 0.1 with cosine
decay to 0, weight decay 5e-4, batch 256, random crop (padding 4) and flip; C = 16, N = 5.

    python -m launch.train --config=launch/configs/train_nb201.py --workdir=runs/train_c10 \
        --config.arch='|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|' \
        --config.data=/data/cifar-10-batches-py
    python -m launch.train --config=launch/configs/train_nb201.py:imagenet16-120 \
        --config.arch=runs/nb201/summary.json --config.data=/data/ImageNet16 --workdir=runs/train_in16

The argument picks the dataset: cifar10 (default), cifar100 or imagenet16-120. NB201's own
"cifar10-valid" protocol (train on half, test on the other half) is --config.holdout=25000.
"""

from rznas_jax.train import config as config_lib

DATASETS = ("cifar10", "cifar100", "imagenet16-120")


def get_config(dataset: str | None = None):
  dataset = dataset or "cifar10"
  if dataset not in DATASETS:
    raise ValueError(f"train_nb201 dataset {dataset!r} is unknown; valid: {', '.join(DATASETS)}.")
  config = config_lib.default_config()  # the NB201 recipe is the default
  config.space = "nb201"
  config.dataset = dataset
  return config
