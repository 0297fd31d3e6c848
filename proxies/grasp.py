"""GraSP: gradient signal preservation at initialisation."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rznas_jax.proxies import network
from rznas_jax.proxies.base import ApplyFn, Batch, register


@register("grasp", dead_edge_exact=True, init="pytorch", data="real",
          source="SamsungLabs/zero-cost-nas foresight/pruners/measures/grasp.py")
def grasp(apply_fn: ApplyFn, variables: dict, batch: Batch, key: jax.Array) -> jax.Array:
  """GraSP (Wang et al., 2020) as in the zero-cost-nas library: ``sum -W * (H g)``.

  With W the conv/linear weights, L the mean cross-entropy of the real batch at temperature
  T = 1 (BN in train mode), ``g = dL/dW`` held constant and ``H g = d/dW (g . dL/dW)``, the
  Hessian block of the weights applied to g, computed reverse-over-reverse like [S]'s second
  ``autograd.grad(create_graph=True)`` pass. [S] adds the minus sign ("accuracy seems to be
  negatively correlated with this metric") and sums the per-weight ``-W * Hg``; so do we
  (RZ-NAS paper eq. 2, ``S = -(H dL/dθ) ⊙ θ``).

  Args:
    apply_fn: the network, see ``base.ApplyFn``.
    variables: Flax variables.
    batch: real images and labels.
    key: unused.

  Returns:
    A scalar; higher is better.

  Example: ``jax.jit(grasp, static_argnums=0)(apply_fn, variables, batch, key)``.
  """
  del key

  def loss(params):
    logits = apply_fn(network.with_params(variables, params), batch.images).logits
    return network.cross_entropy(logits, batch.labels)

  params = variables["params"]
  grad_fn = jax.grad(loss)
  g = [jax.lax.stop_gradient(x) for x in network.kernels(grad_fn(params))]

  def g_dot_grad(params):
    return sum(jnp.vdot(gk, dk) for gk, dk in zip(g, network.kernels(grad_fn(params))))

  hg = network.kernels(jax.grad(g_dot_grad)(params))
  return sum(-jnp.sum(w * h) for w, h in zip(network.kernels(params), hg))
