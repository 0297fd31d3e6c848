"""The Zen-NAS CIFAR recipe (idstcv/ZenNAS ``scripts/``) for macro structures: 1440 epochs, SGD
Nesterov 0.9, lr 0.1 per 256 images with 5 warm-up epochs then cosine decay to 0, weight decay 5e-4,
label smoothing 0.1, random crop (padding 4) and flip, the Zen-NAS shortcuts built.

    python -m launch.train --config=launch/configs/train_zen_cifar.py --workdir=runs/train_zen \
        --config.arch=runs/zen_cifar/summary.json --config.data=/data/cifar-100-python
    python -m launch.train --config=launch/configs/train_zen_cifar.py:cifar10 --workdir=runs/zen_c10 \
        --config.arch='SuperConvK3BNRELU(3,8,1,1)SuperResK3K3(8,16,1,8,1)...' --config.data=/data/cifar-10-batches-py

The argument picks the dataset: cifar100 (default, the classes of the Zen-NAS CIFAR search) or
cifar10. Not reproduced: random erasing, mixup, AutoAugment and BN momentum 0.01 of the Zen-NAS
scripts. Change the batch and the learning rate together (lr = 0.1 * batch / 256).
"""

from rznas_jax.train import config as config_lib

DATASETS = ("cifar100", "cifar10")


def get_config(dataset: str | None = None):
  dataset = dataset or "cifar100"
  if dataset not in DATASETS:
    raise ValueError(f"train_zen_cifar dataset {dataset!r} is unknown; valid: {', '.join(DATASETS)}.")
  config = config_lib.default_config()
  config.space = "zen_cifar"
  config.dataset = dataset
  config.epochs = 1440
  config.batch_size = 256
  config.optim.learning_rate = 0.1  # 0.1 per 256 images
  config.optim.warmup_epochs = 5.0
  config.optim.weight_decay = 5e-4
  config.label_smoothing = 0.1
  config.macro.no_reslink = False
  return config
