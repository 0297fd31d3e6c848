"""GradNorm, in the two variants that go by that name."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rznas_jax.proxies import network
from rznas_jax.proxies.base import ApplyFn, Batch, register


def _loss_grads(apply_fn: ApplyFn, variables: dict, batch: Batch):
  def loss(params):
    logits = apply_fn(network.with_params(variables, params), batch.images).logits
    return network.cross_entropy(logits, batch.labels)
  return jax.grad(loss)(variables["params"])


@register("grad_norm", dead_edge_exact=True, init="pytorch", data="real",
          source="SamsungLabs/zero-cost-nas foresight/pruners/measures/grad_norm.py")
def grad_norm(apply_fn: ApplyFn, variables: dict, batch: Batch, key: jax.Array) -> jax.Array:
  """GradNorm as in the zero-cost-nas library: ``sum_l ||dL/dW_l||_2``.

  L is the mean cross-entropy of the real batch with BN in train mode; the sum runs over the conv
  and linear weights only (one Frobenius norm per layer, then summed), as [S] sums the per-layer
  ``weight.grad.norm()`` array.

  Args:
    apply_fn: the network, see ``base.ApplyFn``.
    variables: Flax variables (``params``, ``batch_stats``).
    batch: real images and their labels.
    key: unused; every proxy takes one.

  Returns:
    A scalar; higher is better.

  Example: ``jax.jit(grad_norm, static_argnums=0)(apply_fn, variables, batch, key)``.
  """
  del key
  grads = _loss_grads(apply_fn, variables, batch)
  return sum(jnp.sqrt(jnp.sum(jnp.square(g))) for g in network.kernels(grads))


@register("grad_norm_zen", dead_edge_exact=True, init="gaussian", data="gaussian",
          source="idstcv/ZenNAS ZeroShotProxy/compute_gradnorm_score.py")
def grad_norm_zen(apply_fn: ApplyFn, variables: dict, batch: Batch, key: jax.Array) -> jax.Array:
  """GradNorm as Zen-NAS (and RZ-NAS) compute it: ``sqrt(sum_p ||dL/dp||_2^2)``.

  The global L2 norm of the gradient over *all* parameters, BN scale/bias and the classifier
  bias included, of the mean one-hot cross-entropy; Gaussian init, Gaussian images and random
  labels (METHOD.md §5.1). This differs from ``grad_norm`` ([S]: per-layer norms of conv/linear
  weights, summed).

  Args:
    apply_fn: the network, see ``base.ApplyFn``.
    variables: Flax variables, N(0, 1)-initialised.
    batch: Gaussian images and random labels.
    key: unused; the harness draws the images and labels.

  Returns:
    A scalar; higher is better.

  Example: ``jax.jit(grad_norm_zen, static_argnums=0)(apply_fn, variables, batch, key)``.
  """
  del key
  grads = _loss_grads(apply_fn, variables, batch)
  return jnp.sqrt(sum(jnp.sum(jnp.square(g)) for g in jax.tree.leaves(grads)))
