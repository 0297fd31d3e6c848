"""Fisher: channel saliency from activations times their gradients."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rznas_jax.proxies import network
from rznas_jax.proxies.base import ApplyFn, Batch, register


@register("fisher", init="pytorch", data="real",
          source="SamsungLabs/zero-cost-nas foresight/pruners/measures/fisher.py")
def fisher(apply_fn: ApplyFn, variables: dict, batch: Batch, key: jax.Array) -> jax.Array:
  """Fisher (Theis et al., 2018; Turner et al., 2020) as in the zero-cost-nas library.

  For every conv/linear output a (pre-BN, ``ModelOutput.activations``) and its gradient
  ``dL/da`` (read through ``variables['perturbations']``), per channel c:
  ``0.5 * mean_b (sum_hw a * dL/da)^2``; the score sums over channels and layers. L is the mean
  cross-entropy of the real batch with BN in train mode. Each activation leaf is (B, ..., C): all
  axes between the first and the last are summed (none for a linear layer, as in [S]).

  One difference from the number [S]'s ``find_measures`` prints: it broadcasts each channel's
  value onto that channel's weights (``reshape_elements``) before summing, so each layer's
  channel sum is counted ``fan_in = C_in * k_h * k_w`` times. ``ModelOutput.activations`` does
  not say which kernel produced which activation, so this proxy returns the unweighted channel
  sum (the Fisher saliency of Theis et al. and of METHOD.md §5.2).

  Args:
    apply_fn: the network, see ``base.ApplyFn``.
    variables: Flax variables (without ``perturbations``; this adds zeros).
    batch: real images and labels.
    key: unused.

  Returns:
    A scalar; higher is better.

  Example: ``jax.jit(fisher, static_argnums=0)(apply_fn, variables, batch, key)``.
  """
  del key
  shapes = jax.eval_shape(lambda: apply_fn(variables, batch.images).activations)
  zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)

  def loss(perturbations):
    out = apply_fn({**variables, "perturbations": perturbations}, batch.images)
    return network.cross_entropy(out.logits, batch.labels), out.activations

  grads, acts = jax.grad(loss, has_aux=True)(zeros)

  def layer_fisher(a, g):
    per_channel = jnp.sum(a * g, axis=tuple(range(1, a.ndim - 1)))
    return 0.5 * jnp.sum(jnp.mean(jnp.square(per_channel), axis=0))

  return sum(jax.tree.leaves(jax.tree.map(layer_fisher, acts, grads)))
