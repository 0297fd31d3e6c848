"""RZ-NAS on the DARTS cell space (NAS-Bench-301's seven ops), T = 500, N = 50.

    python -m launch.search --config=launch/configs/darts_cifar10.py --workdir=runs/darts

The fitness ranks every genotype against the archive on NASWOT and the parameter count and sums
log(rank/n) (`rznas_jax.fitness`): the best cheap aggregate against the NAS-Bench-301 surrogate
accuracy of NASLib's 725 genotypes (`benchmarks/darts_nb301.py`; SynFlow, GraSP and the gradient
proxies add nothing or lower it there, and cost a backward pass each).
The scored network is NASLib's NAS-Bench-301 proxy network (C = 32, 8 cells) on a Gaussian batch
of 16 (``--config.data`` takes CIFAR-10 images). ``--config=launch/configs/darts_cifar10.py:synflow``
(or any proxy or ``rank:a+b`` aggregate) picks another fitness; AZ-NAS's proxies do not apply
(the DARTS network is not a chain of blocks). The summary names the found genotype; train it with
``launch/configs/train_darts_cifar10.py``.
"""

from rznas_jax.search import config as config_lib

DEFAULT_FITNESS = "rank:naswot+params"


def get_config(proxy: str | None = None):
  config = config_lib.default_config()
  config.space = "darts"
  config.proxy = proxy or DEFAULT_FITNESS
  config.batch_size = 16
  config.search.iterations = 500
  config.search.population = 50
  return config
