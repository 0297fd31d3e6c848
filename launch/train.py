"""Trains an architecture found by a search: ``rznas_jax.train.run(config, workdir)``.

    python -m launch.train --config=launch/configs/train_nb201.py --workdir=runs/train_c10 \
        --config.arch='|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|' \
        --config.data=/data/cifar-10-batches-py
    python -m launch.train --config=launch/configs/train_zen_cifar.py --workdir=runs/train_zen \
        --config.arch=runs/zen_cifar/summary.json --config.data=/data/cifar-100-python
    python -m launch.train --config=launch/configs/train_tiny_cpu.py --workdir=/tmp/tiny_train \
        --config.data=../shared/data/images/YoongiKim_CIFAR-10-images_test.DERIVED.npz

``--config.arch`` takes a genotype, a macro structure, or a search run's summary.json (or its
folder). Rerunning the same command on the same --workdir resumes from its last checkpoint.
"""

from absl import flags
from launch import cli

_CONFIG = cli.config_flag("launch/configs/train_nb201.py", "Training")
_WORKDIR = flags.DEFINE_string("workdir", "runs/train", "Run folder: created, or resumed if it "
                               "holds a checkpoint.")
_PROGRESS = flags.DEFINE_bool("progress", True, "Show a progress bar per epoch.")
_DISTRIBUTED = flags.DEFINE_bool("distributed", False, "Call jax.distributed.initialize() first "
                                 "(multi-host runs; the data is split over the processes).")


def main(argv):
  del argv
  import jax  # pylint: disable=g-import-not-at-top
  from rznas_jax import train  # pylint: disable=g-import-not-at-top
  if _DISTRIBUTED.value and not jax.distributed.is_initialized():
    jax.distributed.initialize()
  with cli.user_input_errors():
    summary = train.run(_CONFIG.value, _WORKDIR.value, progress=_PROGRESS.value)
  print(f"{summary['arch']} ({summary['space']}): test accuracy {summary['test_accuracy']:.2%} on "
        f"{summary['test_images']} {summary['dataset']} test images after {summary['epochs']} "
        f"epochs; results in {_WORKDIR.value}/final")


if __name__ == "__main__":
  cli.run(main)
