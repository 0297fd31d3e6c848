"""NASWOT: the Hamming kernel of ReLU activation codes."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rznas_jax.proxies.base import ApplyFn, Batch, register


@register("naswot", init="gaussian", data="gaussian",
          source="idstcv/ZenNAS ZeroShotProxy/compute_NASWOT_score.py")
def naswot(apply_fn: ApplyFn, variables: dict, batch: Batch, key: jax.Array) -> jax.Array:
  """NASWOT (Mellor et al., 2021): ``log|det K|``, ``K = sum_r w_r (c c^T + (1-c)(1-c)^T)``.

  ``c`` is the flattened binary code ``x > 0`` of the input x of ReLU r (one row per sample, BN
  in train mode) and ``w_r`` its 0/1 weight (0 for a ReLU of an unused op in a masked network),
  so K counts, for every pair of samples, the units on which their codes agree. Registered, as
  in [Z] and RZ-NAS, with Gaussian init and Gaussian images, which makes it data-free; Mellor et
  al. (and their published NAS-Bench-201 correlations) use real images, which the harness passes
  when the user gives a dataset. With BN after every conv the codes do not depend on the weight
  scale, so the init matters little; the data does.

  Each per-ReLU kernel is an integer matrix computed exactly in the input's float type (up to
  2^24 units per ReLU in float32).

  Args:
    apply_fn: the network, see ``base.ApplyFn``.
    variables: Flax variables.
    batch: images (labels unused); batch 8 in the NASWOT script.
    key: unused.

  Returns:
    A scalar; higher is better.

  Example: ``jax.jit(naswot, static_argnums=0)(apply_fn, variables, batch, key)``.
  """
  del key
  out = apply_fn(variables, batch.images)
  n = batch.images.shape[0]
  kernel = jnp.zeros((n, n), batch.images.dtype)
  for x, weight in out.relu_inputs:
    # With s = 2c - 1 in {-1, +1}: c c^T + (1-c)(1-c)^T = (s s^T + units) / 2, one matmul.
    signs = jnp.where(x.reshape(n, -1) > 0, 1.0, -1.0).astype(kernel.dtype)
    agreement = 0.5 * (signs @ signs.T + signs.shape[1])
    kernel = kernel + jnp.asarray(weight, kernel.dtype) * agreement
  return jnp.linalg.slogdet(kernel)[1]
