"""Jacobian covariance (NASWOT v1)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rznas_jax.proxies import network
from rznas_jax.proxies.base import ApplyFn, Batch, register

_K = 1e-5


@register("jacov", dead_edge_exact=True, init="pytorch", data="real",
          source="SamsungLabs/zero-cost-nas foresight/pruners/measures/jacob_cov.py")
def jacov(apply_fn: ApplyFn, variables: dict, batch: Batch, key: jax.Array) -> jax.Array:
  """Jacobian covariance (Mellor et al., 2020, v1) as in the zero-cost-nas library.

  ``J`` = the gradient of ``sum(logits)`` of the whole batch (BN in train mode, so samples are
  coupled through the batch statistics, as in [S]'s single ``backward(ones_like(y))``) with
  respect to the input images, one flattened row per sample; ``C = corrcoef(J)``; with ``v`` the
  eigenvalues of C and k = 1e-5, the score is ``-sum(log(v + k) + 1 / (v + k))``. [S] uses
  ``np.linalg.eig``; C is symmetric, so ``eigvalsh`` gives the same (real) eigenvalues.

  Args:
    apply_fn: the network, see ``base.ApplyFn``.
    variables: Flax variables.
    batch: real images (labels unused).
    key: unused.

  Returns:
    A scalar; higher is better. NaN where a row of J is constant (as in [S]).

  Example: ``jax.jit(jacov, static_argnums=0)(apply_fn, variables, batch, key)``.
  """
  del key
  images = batch.images
  jac = jax.grad(lambda x: jnp.sum(apply_fn(variables, x).logits))(images)
  corr = network.corrcoef_rows(jac.reshape(images.shape[0], -1))
  v = jnp.linalg.eigvalsh(corr)
  return -jnp.sum(jnp.log(v + _K) + 1.0 / (v + _K))
