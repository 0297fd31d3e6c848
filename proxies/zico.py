"""ZiCo: inverse coefficient of variation of the gradients."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rznas_jax.proxies import network
from rznas_jax.proxies.base import ApplyFn, Batch, register

NUM_MINIBATCHES = 2


def zico_score(apply_fn: ApplyFn, variables: dict, batch: Batch, key: jax.Array, *,
               accumulate_grads: bool = False) -> jax.Array:
  """ZiCo (Li et al., 2023): ``sum_l log(sum_w mean_b|g_bw| / std_b(g_bw))``.

  [ZC] feeds the first ``maxbatch = 2`` batches of the train loader one at a time (BN in train
  mode, each batch normalised by its own statistics, ``nn.CrossEntropyLoss`` mean) and records
  the gradient of every Conv2d/Linear weight after each. Our harness gives one batch, so it is
  split into 2 equal halves, each forwarded separately. Per layer l and weight element w, over
  the 2 recorded gradients: ``std`` is the population std (ddof 0) and ``mean|g|`` the mean
  absolute value; elements with std = 0 are left out of the inner sum, and a layer whose inner
  sum is 0 (e.g. an unused op of a masked network, whose gradients are all zero) is skipped.

  [ZC]'s ``getzico`` never calls ``zero_grad`` between its batches, so the released code records
  g1 and g1 + g2 rather than g1 and g2. The ZiCo paper's formula (and the RZ-NAS paper's eq. 6)
  use the per-batch gradients, which is the default here; ``accumulate_grads=True`` reproduces
  the code.

  Args:
    apply_fn: the network, see ``base.ApplyFn``.
    variables: Flax variables (PyTorch default init).
    batch: real images and labels; the batch size must be even.
    key: unused.
    accumulate_grads: record the running sum of the gradients, as the released code does.

  Returns:
    A scalar; higher is better.

  Raises:
    ValueError: if the batch size is odd.
  """
  del key
  n = batch.images.shape[0]
  if n % NUM_MINIBATCHES:
    raise ValueError(f"zico splits the batch into {NUM_MINIBATCHES} equal minibatches; "
                     f"the batch size must be even, got {n}.")
  half = n // NUM_MINIBATCHES

  def loss(params, images, labels):
    logits = apply_fn(network.with_params(variables, params), images).logits
    return network.cross_entropy(logits, labels)

  per_batch = []
  for i in range(NUM_MINIBATCHES):
    part = slice(i * half, (i + 1) * half)
    grads = jax.grad(loss)(variables["params"], batch.images[part], batch.labels[part])
    per_batch.append(network.kernels(grads))
  if accumulate_grads:
    running = [per_batch[0]]
    for grads in per_batch[1:]:
      running.append([a + b for a, b in zip(running[-1], grads)])
    per_batch = running

  score = jnp.zeros((), batch.images.dtype)
  for layer in zip(*per_batch):
    g = jnp.stack(layer)
    std = jnp.std(g, axis=0)
    mean_abs = jnp.mean(jnp.abs(g), axis=0)
    nonzero = std != 0
    total = jnp.sum(jnp.where(nonzero, mean_abs / jnp.where(nonzero, std, 1.0), 0.0))
    score = score + jnp.where(total != 0, jnp.log(jnp.where(total != 0, total, 1.0)), 0.0)
  return score


@register("zico", init="pytorch", data="real",
          source="SLDGroup/ZiCo ZeroShotProxy/compute_zico.py")
def zico(apply_fn: ApplyFn, variables: dict, batch: Batch, key: jax.Array) -> jax.Array:
  """ZiCo with per-minibatch gradients on 2 halves of the batch; see ``zico_score``.

  Example: ``jax.jit(zico, static_argnums=0)(apply_fn, variables, batch, key)``.
  """
  return zico_score(apply_fn, variables, batch, key)
