"""Training what the search finds: optax SGD, data parallel over a mesh, orbax checkpoints.

    from rznas_jax import train
    config = train.default_config()
    config.arch = "|nor_conv_3x3~0|+|nor_conv_3x3~0|skip_connect~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
    config.data = "/data/cifar-10-batches-py"
    summary = train.run(config, "runs/train")   # resumes when runs/train holds a checkpoint
"""

from rznas_jax.train.architecture import build_network
from rznas_jax.train.architecture import resolve_arch
from rznas_jax.train.config import ConfigError
from rznas_jax.train.config import check_config
from rznas_jax.train.config import default_config
from rznas_jax.train.data import Dataset
from rznas_jax.train.data import load_dataset
from rznas_jax.train.driver import run
from rznas_jax.train.loop import StepSpec
from rznas_jax.train.loop import TrainState

__all__ = ["build_network", "resolve_arch", "ConfigError", "check_config", "default_config",
           "Dataset", "load_dataset", "run", "StepSpec", "TrainState"]
