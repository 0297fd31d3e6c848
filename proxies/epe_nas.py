"""EPE-NAS: per-class correlation of the input Jacobians."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rznas_jax.proxies import network
from rznas_jax.proxies.base import ApplyFn, Batch, register

_K = 1e-5


@register("epe_nas", dead_edge_exact=True, init="pytorch", data="real",
          source="automl/NASLib naslib/predictors/pruners/measures/epe_nas.py (VascoLopes/EPE-NAS)")
def epe_nas(apply_fn: ApplyFn, variables: dict, batch: Batch, key: jax.Array) -> jax.Array:
  """EPE-NAS (Lopes et al., 2021) as NASLib computes it.

  ``J`` is jacov's Jacobian: the gradient of ``sum(logits)`` of the batch (BN in train mode) with
  respect to the images, one flattened row per sample. For each class c present in the labels,
  ``s_c = sum log(|corrcoef(J_c)| + 1e-5)`` over the rows ``J_c`` of its samples. With at most 100
  classes (``logits.shape[-1]``) the score is ``sum_c |s_c|``; with more, each ``s_c`` is divided
  by the class's sample count and the score is ``sum_{c, c'} |s_c - s_c'| / n_classes_present``,
  where, as in the reference, a class with a single sample is left out of that branch.

  Args:
    apply_fn: the network, see ``base.ApplyFn``.
    variables: Flax variables.
    batch: real images and labels.
    key: unused.

  Returns:
    A scalar; higher is better. NaN where a row of J is constant (as in the reference).

  Example: ``jax.jit(epe_nas, static_argnums=0)(apply_fn, variables, batch, key)``.
  """
  del key
  images = batch.images
  logits, vjp = jax.vjp(lambda x: apply_fn(variables, x).logits, images)
  jac = vjp(jnp.ones_like(logits))[0].reshape(images.shape[0], -1)
  return epe_score(jac, batch.labels, logits.shape[-1])


def epe_score(jac: jax.Array, labels: jax.Array, n_classes: int) -> jax.Array:
  """EPE-NAS's score of Jacobian rows ``jac`` (B, D) and integer ``labels`` (B,); see `epe_nas`."""
  corr = network.corrcoef_rows(jac)
  member = jax.nn.one_hot(labels, n_classes, dtype=corr.dtype)  # (B, classes)
  counts = jnp.sum(member, axis=0)
  per_class = jnp.einsum("bc,bd,dc->c", member, jnp.log(jnp.abs(corr) + _K), member)
  if n_classes <= 100:
    return jnp.sum(jnp.abs(per_class))
  kept = counts > 1  # a one-sample class has a 0-d corrcoef, which the reference skips here
  per_class = per_class / jnp.maximum(counts, 1.0)
  both = kept[:, None] & kept[None, :]
  pairs = jnp.where(both, jnp.abs(per_class[:, None] - per_class[None, :]), 0.0)
  return jnp.sum(pairs) / jnp.sum(kept)
