"""SNIP: connection sensitivity at initialisation."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rznas_jax.proxies import network
from rznas_jax.proxies.base import ApplyFn, Batch, register


@register("snip", dead_edge_exact=True, init="pytorch", data="real",
          source="SamsungLabs/zero-cost-nas foresight/pruners/measures/snip.py")
def snip(apply_fn: ApplyFn, variables: dict, batch: Batch, key: jax.Array) -> jax.Array:
  """SNIP (Lee et al., 2019) as in the zero-cost-nas library: ``sum |W * dL/dW|``.

  [S] multiplies every conv/linear weight by a mask of ones and takes ``|dL/dmask|``; at mask = 1
  that is ``|W * dL/dW|`` elementwise, which is what this computes. L is the mean cross-entropy
  of the real batch, BN in train mode; the score sums over every element of every conv/linear
  weight.

  Args:
    apply_fn: the network, see ``base.ApplyFn``.
    variables: Flax variables.
    batch: real images and labels.
    key: unused.

  Returns:
    A scalar; higher is better.

  Example: ``jax.jit(snip, static_argnums=0)(apply_fn, variables, batch, key)``.
  """
  del key

  def loss(params):
    logits = apply_fn(network.with_params(variables, params), batch.images).logits
    return network.cross_entropy(logits, batch.labels)

  params = variables["params"]
  grads = jax.grad(loss)(params)
  return sum(jnp.sum(jnp.abs(w * g))
             for w, g in zip(network.kernels(params), network.kernels(grads)))
