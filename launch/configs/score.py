"""The defaults of ``launch.score`` (`rznas_jax.score_job.default_config`); flags override them."""

from rznas_jax import score_job


def get_config():
  return score_job.default_config()
