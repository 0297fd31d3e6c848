"""Zen-score: expressivity under a small input perturbation, plus BN scaling."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rznas_jax.proxies import network
from rznas_jax.proxies.base import ApplyFn, Batch, register

MIXUP_GAMMA = 1e-2


@register("zen", init="gaussian", data="gaussian",
          source="idstcv/ZenNAS ZeroShotProxy/compute_zen_score.py")
def zen(apply_fn: ApplyFn, variables: dict, batch: Batch, key: jax.Array) -> jax.Array:
  """Zen-score (Lin et al., 2021) exactly as [Z] computes it (METHOD.md §5.1).

  With x the (Gaussian) batch, ``eps = jax.random.normal(key, x.shape, x.dtype)``, gamma = 1e-2
  and f the pre-pooling features (``ModelOutput.features``):
  ``Delta = mean_b sum_{h,w,c} |f(x) - f(x + gamma * eps)|`` and
  ``score = log(Delta) + sum_BN log(sqrt(mean_c running_var))``.
  Both forwards are in train mode and the second starts from the running statistics the first
  returned, so on a fresh model ``running_var = 0.81 + 0.09 v1 + 0.1 v2`` (v1, v2 the unbiased
  batch variances of the two passes), which is what [Z] reads, not the pure batch variance of
  the paper's eq. 5. Running variances are the ``batch_stats`` leaves named ``var``; a BN layer
  that neither pass touched still holds ones and adds log(1) = 0.

  Args:
    apply_fn: the network, see ``base.ApplyFn``.
    variables: Flax variables, N(0, 1)-initialised, fresh running statistics (mean 0, var 1).
    batch: Gaussian images (labels unused).
    key: draws eps.

  Returns:
    A scalar; higher is better.

  Example: ``jax.jit(zen, static_argnums=0)(apply_fn, variables, batch, key)``.
  """
  x = batch.images
  eps = jax.random.normal(key, x.shape, x.dtype)
  clean = apply_fn(variables, x)
  mixed = apply_fn({**variables, "batch_stats": clean.batch_stats}, x + MIXUP_GAMMA * eps)
  diff = jnp.abs(clean.features - mixed.features).reshape(x.shape[0], -1)
  delta = jnp.mean(jnp.sum(diff, axis=1))
  bn_scaling = sum(jnp.log(jnp.sqrt(jnp.mean(v)))
                   for v in network.leaves_named(mixed.batch_stats, ("var",)))
  return jnp.log(delta) + bn_scaling
