"""Training settings as an `ml_collections.ConfigDict`, and the check that names a bad value.

``launch/configs/train_*.py`` start from `default_config` (the NAS-Bench-201 recipe) and change
what their run needs; the command line overrides any key (``--config.epochs=10``).
"""

from __future__ import annotations

import ml_collections

from rznas_jax import spaces
from rznas_jax.errors import UserError

DATASETS = ("cifar10", "cifar100", "imagenet16-120", "imagefolder", "synthetic")
SPACES = ("auto", *spaces.names())
COMPUTE_DTYPES = ("float32", "bfloat16")


class ConfigError(UserError):
  """A config value that cannot be used; the message names it and what would be valid."""


def default_config() -> ml_collections.ConfigDict:
  """Every key a training run reads, set to the NAS-Bench-201 recipe (xautodl ``LESS.config``).

  NB201 trains each cell for 200 epochs with SGD (Nesterov momentum 0.9), lr 0.1 with cosine
  decay to 0 and no warm-up, weight decay 5e-4 on every parameter, batch 256, no label
  smoothing, random crop (padding 4) and horizontal flip.
  """
  c = ml_collections.ConfigDict()
  c.seed = 0
  # A genotype (|op~0|+...), a macro structure (SuperConvK3BNRELU(3,8,1,1)...), or the path of a
  # search run's summary.json (or of its folder): best_arch and space are read from it.
  c.arch = ""
  c.space = "auto"  # 'auto': nb201 for a genotype, zen_cifar for a macro structure
  c.dataset = "cifar10"
  c.data = ""  # a CIFAR / ImageNet16 / image-folder directory, or an .npz file; unused by synthetic
  c.holdout = 0  # >0: that many training images (seeded draw) become the test split
  c.num_classes = ml_collections.FieldReference(None, field_type=int)  # synthetic; else from data
  c.image_size = ml_collections.FieldReference(None, field_type=int)  # imagefolder / synthetic
  c.synthetic_images = 512  # synthetic: training images (a quarter as many test images)

  c.nb201 = ml_collections.ConfigDict()
  c.nb201.channels = 16
  c.nb201.cells_per_stage = 5

  c.macro = ml_collections.ConfigDict()
  c.macro.no_reslink = False  # training builds the Zen-NAS shortcuts
  c.macro.use_se = False

  c.epochs = 200
  c.batch_size = 256  # global: split over every device of every host
  c.label_smoothing = 0.0
  c.compute_dtype = "float32"  # 'bfloat16': activations and weights in bf16, float32 master copy

  c.optim = ml_collections.ConfigDict()
  c.optim.learning_rate = 0.1  # peak, for this batch_size (scale it yourself with the batch)
  c.optim.end_learning_rate = 0.0
  c.optim.warmup_epochs = 0.0  # linear warm-up from 0, then cosine decay
  c.optim.momentum = 0.9
  c.optim.nesterov = True
  c.optim.weight_decay = 5e-4  # coupled L2 (PyTorch SGD's weight_decay)
  c.optim.decay_norm_and_bias = True  # False: no weight decay on BN scales/biases and biases

  c.augment = ml_collections.ConfigDict()
  c.augment.crop_padding = 4  # random crop after zero padding; 0 disables
  c.augment.flip = True
  c.augment.cutout = 0  # side of the square Cutout removes after normalisation (DARTS: 16); 0 off

  c.checkpoint_every_steps = 500
  c.keep_checkpoints = 2
  c.log_every_steps = 50  # progress-bar refresh (one host sync)
  c.eval_every_epochs = 1  # test-set evaluation; the last epoch is always evaluated
  c.compilation_cache = ""
  spaces.add_config_sections(c)  # a space registered later brings its own section
  return c


def _positive(config: ml_collections.ConfigDict, name: str, low: float = 1) -> None:
  value = config
  for part in name.split("."):
    value = value[part]
  if value is None or value < low:
    raise ConfigError(f"config.{name} is {value}; it must be at least {low}.")


def check_config(config: ml_collections.ConfigDict) -> None:
  """Raises `ConfigError` for the first unusable value.

  Raises:
    ConfigError: naming the key, its value and what would be valid.
  """
  if not str(config.arch).strip():
    raise ConfigError("config.arch is empty; give a genotype such as "
                      "'|nor_conv_3x3~0|+|nor_conv_3x3~0|skip_connect~1|+|skip_connect~0|"
                      "nor_conv_3x3~1|skip_connect~2|', a macro structure, or a search's summary.json.")
  if config.space not in SPACES:
    raise ConfigError(f"config.space {config.space!r} is unknown; valid: {', '.join(SPACES)}.")
  if config.dataset not in DATASETS:
    raise ConfigError(f"config.dataset {config.dataset!r} is unknown; valid: {', '.join(DATASETS)}.")
  if config.dataset != "synthetic" and not config.data:
    raise ConfigError(f"config.data is empty; dataset {config.dataset} needs the path of its "
                      "directory (or of an .npz file with images and labels).")
  if config.compute_dtype not in COMPUTE_DTYPES:
    raise ConfigError(f"config.compute_dtype {config.compute_dtype!r} is unknown; valid: "
                      f"{', '.join(COMPUTE_DTYPES)}.")
  for name in ("epochs", "batch_size", "checkpoint_every_steps", "keep_checkpoints",
               "log_every_steps", "eval_every_epochs", "nb201.channels", "nb201.cells_per_stage",
               "synthetic_images"):
    _positive(config, name)
  for name in ("holdout", "augment.crop_padding", "augment.cutout", "optim.warmup_epochs", "optim.momentum",
               "optim.weight_decay", "optim.end_learning_rate"):
    _positive(config, name, 0)
  if not config.optim.learning_rate > 0:
    raise ConfigError(f"config.optim.learning_rate is {config.optim.learning_rate}; it must be "
                      "positive.")
  if config.optim.warmup_epochs >= config.epochs:
    raise ConfigError(f"config.optim.warmup_epochs {config.optim.warmup_epochs} must be fewer than "
                      f"config.epochs ({config.epochs}).")
  if not 0 <= config.label_smoothing < 1:
    raise ConfigError(f"config.label_smoothing is {config.label_smoothing}; it must be in [0, 1).")
  for name in ("num_classes", "image_size"):
    value = config[name]
    if value is not None and value < (2 if name == "num_classes" else 8):
      raise ConfigError(f"config.{name} is {value}; it must be at least "
                        f"{2 if name == 'num_classes' else 8}.")
