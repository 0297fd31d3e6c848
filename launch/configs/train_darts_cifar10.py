"""The DARTS CIFAR-10 training recipe (quark0/darts ``cnn/train.py``): 600 epochs, SGD momentum 0.9
(not Nesterov), lr 0.025 with cosine decay to 0, weight decay 3e-4, batch 96, random crop
(padding 4), flip and Cutout 16; the evaluation network with C = 36 and 20 cells, an auxiliary
head weighted 0.4 and drop path 0.2.

    python -m launch.train --config=launch/configs/train_darts_cifar10.py --workdir=runs/train_darts \
        --config.arch=runs/darts/summary.json --config.data=/data/cifar-10-batches-py

Not reproduced: DARTS ramps the drop-path probability linearly from 0 to 0.2 over the epochs
(here it is 0.2 throughout) and clips the gradient norm at 5.
"""

from rznas_jax.train import config as config_lib


def get_config():
  config = config_lib.default_config()
  config.space = "darts"
  config.dataset = "cifar10"
  config.epochs = 600
  config.batch_size = 96
  config.optim.learning_rate = 0.025
  config.optim.nesterov = False
  config.optim.weight_decay = 3e-4
  config.augment.cutout = 16
  config.darts.channels = 36
  config.darts.layers = 20
  config.darts.auxiliary_weight = 0.4
  config.darts.drop_path = 0.2
  return config
