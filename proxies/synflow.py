"""SynFlow, in the library variant and in the (sign-flipped) Zen-NAS variant."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rznas_jax.proxies import network
from rznas_jax.proxies.base import ApplyFn, Batch, register


def _synaptic_flow(apply_fn: ApplyFn, variables: dict, image_shape: tuple[int, ...], *,
                   bn: bool, abs_collections: tuple[str, ...]):
  """Weights made positive, float64, input ones (batch 1): the kernels W and dR/dW, R = sum(out)."""
  variables = network.cast(dict(variables), jnp.float64)
  variables = {name: jax.tree.map(jnp.abs, tree) if name in abs_collections else tree
               for name, tree in variables.items()}
  ones = jnp.ones((1,) + tuple(image_shape[1:]), jnp.float64)

  def total_output(params):
    return jnp.sum(apply_fn(network.with_params(variables, params), ones, bn=bn).logits)

  params = variables["params"]
  grads = jax.grad(total_output)(params)
  return zip(network.kernels(params), network.kernels(grads))


@register("synflow", dead_edge_exact=True, init="pytorch", data="gaussian", dtype="float64",
          source="SamsungLabs/zero-cost-nas foresight/pruners/measures/synflow.py")
def synflow(apply_fn: ApplyFn, variables: dict, batch: Batch, key: jax.Array) -> jax.Array:
  """SynFlow (Tanaka et al., 2020) as in the zero-cost-nas library: ``sum |W * dR/dW|``.

  BN removed (``bn=False``, [S] builds the copy with ``bn=False``), every parameter replaced by
  its absolute value, float64, one input of ones with the batch's image shape, R = sum of the
  logits; the score sums ``|W * dR/dW|`` over every element of every conv/linear weight. Only the
  shape of ``batch.images`` is read, so any data will do.

  Needs ``jax_enable_x64``; without it JAX warns and computes in float32, which overflows on
  deep networks.

  Args:
    apply_fn: the network, see ``base.ApplyFn``.
    variables: Flax variables.
    batch: only ``batch.images.shape`` is used.
    key: unused.

  Returns:
    A float64 scalar; higher is better.

  Example: ``jax.jit(synflow, static_argnums=0)(apply_fn, variables, batch, key)``.
  """
  del key
  pairs = _synaptic_flow(apply_fn, variables, batch.images.shape, bn=False,
                         abs_collections=("params",))
  return sum(jnp.sum(jnp.abs(w * g)) for w, g in pairs)


@register("synflow_zen", dead_edge_exact=True, init="gaussian", data="gaussian", dtype="float64",
          source="idstcv/ZenNAS ZeroShotProxy/compute_syncflow_score.py")
def synflow_zen(apply_fn: ApplyFn, variables: dict, batch: Batch, key: jax.Array) -> jax.Array:
  """SynFlow as Zen-NAS (and RZ-NAS) compute it, NEGATED: ``-sum_l mean_out sum_in |W * dR/dW|``.

  Reproduces [Z] ``do_compute_nas_score``: Gaussian init; ``abs()`` of every ``state_dict``
  tensor, i.e. of ``params`` *and* ``batch_stats``; float64; one input of ones with the batch's
  image shape; BN kept and in train mode, so with batch 1 it normalises with that one image's
  per-channel statistics over H x W (the absolute running statistics are therefore never read);
  R = sum of the logits. Per conv/linear layer the sum of ``|W * dR/dW|`` over input channels and
  the kernel window is averaged over output channels (the layer's sum divided by its last axis),
  and the layers are summed.

  **Sign:** [Z] returns ``-1 * score`` and RZ-NAS inherits it, so maximising this proxy
  *minimises* synaptic flow. We keep the flip to reproduce RZ-NAS (METHOD.md §5.1); ``synflow`` is
  the usual, positive variant.

  Needs ``jax_enable_x64``.

  Args:
    apply_fn: the network, see ``base.ApplyFn``.
    variables: Flax variables, N(0, 1)-initialised.
    batch: only ``batch.images.shape`` is used.
    key: unused.

  Returns:
    A float64 scalar, <= 0; higher is better by the registry's convention.

  Example: ``jax.jit(synflow_zen, static_argnums=0)(apply_fn, variables, batch, key)``.
  """
  del key
  pairs = _synaptic_flow(apply_fn, variables, batch.images.shape, bn=True,
                         abs_collections=("params", "batch_stats"))
  return -sum(jnp.sum(jnp.abs(w * g)) / w.shape[-1] for w, g in pairs)
