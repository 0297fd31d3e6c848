"""TE-NAS: the condition number of the neural tangent kernel."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rznas_jax.proxies import network
from rznas_jax.proxies.base import ApplyFn, Batch, register

# PyTorch parameters whose name contains "weight": conv/linear weights and BN weights (scale).
_WEIGHT_LEAVES = ("kernel", "scale")


@register("te_nas", init="gaussian", data="gaussian",
          source="idstcv/ZenNAS ZeroShotProxy/compute_te_nas_score.py::compute_NTK_score")
def te_nas(apply_fn: ApplyFn, variables: dict, batch: Batch, key: jax.Array) -> jax.Array:
  """TE-NAS's NTK term (Chen et al., 2021) as [Z] computes it: ``-(lambda_max / lambda_min)``.

  One forward of the whole batch in train mode (so BN couples the samples, as in [Z], which
  back-propagates ``logit[i]`` through the batch graph); row i of G is the gradient of
  ``sum(logits_i)`` with respect to every parameter whose PyTorch name contains "weight" (conv
  and linear kernels and BN scales, not biases); ``NTK = G G^T`` and the score is minus its
  condition number ``lambda_max / lambda_min``, NaN mapped as ``np.nan_to_num`` does. Only the
  NTK part: the linear-region count of TE-NAS is not used by the search (METHOD.md §5.1).

  Args:
    apply_fn: the network, see ``base.ApplyFn``.
    variables: Flax variables, N(0, 1)-initialised.
    batch: Gaussian images (labels unused).
    key: unused.

  Returns:
    A scalar; higher is better.

  Example: ``jax.jit(te_nas, static_argnums=0)(apply_fn, variables, batch, key)``.
  """
  del key
  n = batch.images.shape[0]

  def per_sample_outputs(params):
    return jnp.sum(apply_fn(network.with_params(variables, params), batch.images).logits, axis=1)

  params = variables["params"]
  outputs, pullback = jax.vjp(per_sample_outputs, params)
  (jacobian,) = jax.vmap(pullback)(jnp.eye(n, dtype=outputs.dtype))
  rows = jnp.concatenate([leaf.reshape(n, -1)
                          for leaf in network.leaves_named(jacobian, _WEIGHT_LEAVES)], axis=1)
  ntk = jnp.matmul(rows, rows.T, precision=jax.lax.Precision.HIGHEST)  # not TF32 on GPUs
  eigenvalues = jnp.linalg.eigvalsh(ntk)
  return -jnp.nan_to_num(eigenvalues[-1] / eigenvalues[0])
