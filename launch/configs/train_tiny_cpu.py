"""A small network trained for a few epochs on a CPU (tests, smoke runs): by default an NB201
cell with C = 8, N = 1; any genotype, macro structure or summary.json via --config.arch.

    python -m launch.train --config=launch/configs/train_tiny_cpu.py --workdir=/tmp/tiny_train \
        --config.data=../shared/data/images/YoongiKim_CIFAR-10-images_test.DERIVED.npz
    python -m launch.train --config=launch/configs/train_tiny_cpu.py:synthetic --workdir=/tmp/tiny_syn

Default: CIFAR-10 images from --config.data (a CIFAR folder or an .npz), 200 of them held out for
testing (with the 1,000-image .npz: an 800/200 split). ``:synthetic`` trains on generated 16x16
images instead and needs no data.
"""

from rznas_jax.train import config as config_lib

GOOD_CELL = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"


def get_config(data: str | None = None):
  if data not in (None, "synthetic"):
    raise ValueError(f"train_tiny_cpu argument {data!r} is unknown; valid: synthetic (or none).")
  config = config_lib.default_config()
  config.arch = GOOD_CELL
  config.nb201.channels = 8
  config.nb201.cells_per_stage = 1
  config.epochs = 6
  config.batch_size = 64
  config.optim.learning_rate = 0.1
  config.optim.warmup_epochs = 1.0
  config.checkpoint_every_steps = 50
  config.log_every_steps = 4
  if data == "synthetic":
    config.dataset = "synthetic"
    config.image_size = 16
    config.synthetic_images = 512
  else:
    config.dataset = "cifar10"
    config.holdout = 200
  return config
