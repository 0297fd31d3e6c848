"""Fisher: channel saliency from activations times their gradients."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from rznas_jax.proxies import network
from rznas_jax.proxies.base import ApplyFn, Batch, register


@register("fisher", dead_edge_exact=True, init="pytorch", data="real",
          source="SamsungLabs/zero-cost-nas foresight/pruners/measures/fisher.py")
def fisher(apply_fn: ApplyFn, variables: dict, batch: Batch, key: jax.Array) -> jax.Array:
  """Fisher (Theis et al., 2018; Turner et al., 2020) as in the zero-cost-nas library.

  For every conv/linear output a (pre-BN, ``ModelOutput.activations``) and its gradient
  ``dL/da`` (read through ``variables['perturbations']``), per channel c:
  ``0.5 * mean_b (sum_hw a * dL/da)^2``; the score sums over channels and layers. L is the mean
  cross-entropy of the real batch with BN in train mode. Each activation leaf is (B, ..., C): all
  axes between the first and the last are summed (none for a linear layer, as in [S]).

  As in [S]'s ``find_measures``, each channel's value is broadcast onto that channel's weights
  (``reshape_elements``) before the sum, so each layer's channel sum is weighted by its
  ``fan_in = C_in * k_h * k_w`` (``in_features`` for a linear layer; ``k_h * k_w`` for a depthwise
  conv). The kernel of an activation is found in ``variables['params']`` by the activation's module
  path (the top-level activation is the classifier's), unless the network gives the fan-ins
  (``ModelOutput.fan_ins``); `fisher_unweighted` is the plain channel sum
  (the Fisher saliency of Theis et al.).

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
  return _fisher(apply_fn, variables, batch, weighted=True)


@register("fisher_unweighted", dead_edge_exact=True, init="pytorch", data="real",
          source="Theis et al. 2018: per-channel Fisher saliency, summed without fan-in weights")
def fisher_unweighted(apply_fn: ApplyFn, variables: dict, batch: Batch, key: jax.Array) -> jax.Array:
  """`fisher` without [S]'s fan-in weights: the plain sum of the channels' saliencies."""
  del key
  return _fisher(apply_fn, variables, batch, weighted=False)


def kernel_fan_in(params: dict, activation_path: tuple) -> int:
  """``C_in * k_h * k_w`` of the conv or linear layer that produced the activation at
  ``activation_path`` (a path of ``ModelOutput.activations``, ending in the sown name)."""
  module = [k.key for k in activation_path if isinstance(k, jax.tree_util.DictKey)][:-1] or ["classifier"]
  node = params
  try:
    for name in module:
      node = node[name]
    kernel = node["conv"]["kernel"] if "conv" in node else node["kernel"]
  except (KeyError, TypeError):
    raise ValueError(f"no kernel for the activation at {'/'.join(module)} in the params.") from None
  if kernel.ndim not in (2, 4):
    raise ValueError(f"the kernel at {'/'.join(module)} has shape {kernel.shape}; expected a conv "
                     "(k, k, C_in, C_out) or linear (C_in, C_out) kernel.")
  return math.prod(kernel.shape[:-1])


def _fisher(apply_fn, variables, batch, weighted):
  shapes = jax.eval_shape(lambda: apply_fn(variables, batch.images).activations)
  zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)

  def loss(perturbations):
    out = apply_fn({**variables, "perturbations": perturbations}, batch.images)
    return network.cross_entropy(out.logits, batch.labels), (out.activations, out.fan_ins)

  grads, (acts, fan_ins) = jax.grad(loss, has_aux=True)(zeros)

  def layer_fisher(path, a, g, fan_in=None):
    per_channel = jnp.sum(a * g, axis=tuple(range(1, a.ndim - 1)))
    value = 0.5 * jnp.sum(jnp.mean(jnp.square(per_channel), axis=0))
    if not weighted:
      return value
    if fan_in is not None:  # the network says it (ModelOutput.fan_ins)
      return value * fan_in.astype(value.dtype)
    return value * kernel_fan_in(variables["params"], path)

  if fan_ins is not None:
    return sum(jax.tree.leaves(jax.tree_util.tree_map_with_path(layer_fisher, acts, grads, fan_ins)))
  return sum(jax.tree.leaves(jax.tree_util.tree_map_with_path(layer_fisher, acts, grads)))
