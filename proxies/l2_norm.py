"""NASLib's weight baselines: the L2 norm of the weights, and ``plain`` (weight times gradient)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rznas_jax.proxies import network
from rznas_jax.proxies.base import ApplyFn, Batch, register
from rznas_jax.proxies.grad_norm import _loss_grads


@register("l2_norm", dead_edge_exact=True, init="pytorch", data="real",
          source="automl/NASLib naslib/predictors/pruners/measures/l2_norm.py")
def l2_norm(apply_fn: ApplyFn, variables: dict, batch: Batch, key: jax.Array) -> jax.Array:
  """L2 norm as in NASLib: ``sum_l ||W_l||_2`` over the conv and linear weights of the network.

  One Frobenius norm per layer, summed. A switched or masked network also holds the weights of
  the ops a cell does not use; the network contract gives those a zero loss gradient, so a layer
  counts when its weight gets a nonzero gradient of the mean cross-entropy of the batch (BN in
  train mode). That also leaves out a conv whose output never reaches the logits (a dead
  NAS-Bench-201 edge), which NASLib's module does count; a DARTS cell has no such edge.

  Args:
    apply_fn: the network, see ``base.ApplyFn``.
    variables: Flax variables.
    batch: real images and labels (they only decide which layers the network uses).
    key: unused.

  Returns:
    A scalar; higher is better.

  Example: ``jax.jit(l2_norm, static_argnums=0)(apply_fn, variables, batch, key)``.
  """
  del key
  grads = _loss_grads(apply_fn, variables, batch)
  pairs = zip(network.kernels(variables["params"]), network.kernels(grads))
  return sum(jnp.where(jnp.any(g != 0), jnp.sqrt(jnp.sum(jnp.square(w))), 0.0) for w, g in pairs)


@register("plain", dead_edge_exact=True, init="pytorch", data="real",
          source="automl/NASLib naslib/predictors/pruners/measures/plain.py")
def plain(apply_fn: ApplyFn, variables: dict, batch: Batch, key: jax.Array) -> jax.Array:
  """``plain`` as in NASLib: ``sum W * dL/dW`` (SNIP without the absolute value).

  L is the mean cross-entropy of the real batch, BN in train mode; the sum runs over every element
  of every conv and linear weight. NASLib reports it as a baseline: on its NAS-Bench-201 cells it
  is negatively correlated with accuracy.

  Args:
    apply_fn: the network, see ``base.ApplyFn``.
    variables: Flax variables.
    batch: real images and labels.
    key: unused.

  Returns:
    A scalar.

  Example: ``jax.jit(plain, static_argnums=0)(apply_fn, variables, batch, key)``.
  """
  del key
  grads = _loss_grads(apply_fn, variables, batch)
  pairs = zip(network.kernels(variables["params"]), network.kernels(grads))
  return sum(jnp.sum(w * g) for w, g in pairs)
