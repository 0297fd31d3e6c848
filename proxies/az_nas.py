"""AZ-NAS's training-free proxies (Lee & Ham, CVPR 2024): expressivity, progressivity, trainability.

All three come from one forward pass and one set of local VJPs (`az_nas_components`); the fourth
AZ-NAS proxy, complexity, is the analytic ``flops``. The rank aggregation of the four is the
fitness ``az_nas`` (`rznas_jax.fitness`).

Reference: cvlab-yonsei/AZ-NAS, ``NB201/ZeroShotProxy/compute_az_nas_score.py`` and the feature
list of ``NB201/custom/tss_model.py`` (``extract_cell_features``): the stem output, then every
cell's and reduction block's output, with BN in train mode, kaiming-normal (fan_in, ReLU) weights
and a batch of N(0, 1) images (the ``_real`` variants take the real batch instead).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rznas_jax.proxies.base import ApplyFn, Batch, register

_EPS_LOG = 1e-8  # inside the entropy's log, as in the reference
_EPS_SIGMA = 1e-6  # in 1 / sigma, as in the reference


def channel_entropy(feature: jax.Array) -> jax.Array:
  """Entropy of the normalised eigenvalues of a feature map's channel covariance.

  ``X = feature.reshape(B*H*W, C)``, centred; ``S = X^T X / (B*H*W)``; ``p = eig(S) / sum eig(S)``;
  returns ``-sum p log(p + 1e-8)``. NaN when the map is constant (``S = 0``).
  """
  x = feature.reshape(-1, feature.shape[-1])
  x = x - jnp.mean(x, axis=0, keepdims=True)
  sigma = jnp.dot(x.T, x, precision=jax.lax.Precision.HIGHEST) / x.shape[0]
  eig = jnp.linalg.eigvalsh(sigma)
  p = eig / jnp.sum(eig)
  return -jnp.sum(p * jnp.log(p + _EPS_LOG))


def pixel_unshuffle(x: jax.Array, factor: int) -> jax.Array:
  """(B, H, W, C) -> (B, H/f, W/f, C*f*f): PyTorch ``PixelUnshuffle`` in NHWC (channel c*f*f + i*f + j)."""
  b, h, w, c = x.shape
  x = x.reshape(b, h // factor, factor, w // factor, factor, c)
  return jnp.transpose(x, (0, 1, 3, 5, 2, 4)).reshape(b, h // factor, w // factor, c * factor * factor)


def block_trainability(g_in: jax.Array, g_out: jax.Array) -> jax.Array:
  """``-s - 1/(s + 1e-6) + 2`` for ``s`` the largest singular value of ``g_in^T g_out / (B*H*W)``.

  ``g_out`` is the Rademacher cotangent of a block's output and ``g_in`` its VJP at the block's
  input; where the block halves the resolution, ``g_in`` is pixel-unshuffled to the output's
  size first. A block that passes the cotangent through unchanged (an identity) gives -inf.
  """
  if g_in.shape == g_out.shape:
    identity = jnp.all(g_in == g_out)
  else:
    identity = jnp.asarray(False)
    g_in = pixel_unshuffle(g_in, g_in.shape[1] // g_out.shape[1])
  rows = g_out.shape[0] * g_out.shape[1] * g_out.shape[2]
  m = jnp.dot(g_in.reshape(rows, -1).T, g_out.reshape(rows, -1),
              precision=jax.lax.Precision.HIGHEST) / rows
  s = jnp.linalg.svd(m, compute_uv=False)[0]
  t = -s - 1.0 / (s + _EPS_SIGMA) + 2.0
  return jnp.where(identity, -jnp.inf, t)


def _nan_to_lowest(x: jax.Array) -> jax.Array:
  return jnp.where(jnp.isnan(x), -jnp.inf, x)  # the reference's `if not np.isnan(...) else -inf`


def az_nas_components(apply_fn: ApplyFn, variables: dict, batch: Batch,
                      key: jax.Array) -> dict[str, jax.Array]:
  """AZ-NAS's expressivity, progressivity and trainability from one forward and one backward pass.

  With ``H_l`` the `channel_entropy` of block output ``f_l`` (``ModelOutput.blocks``):

  * expressivity = ``sum_l H_l``;
  * progressivity = ``min_l (H_l - H_{l-1})``;
  * trainability = ``mean_l`` `block_trainability` of block ``l``'s local VJP, the cotangent at
    its input for a Rademacher cotangent at its output. The VJPs are local: every block reads a
    ``stop_gradient`` of the previous output plus a zero cut (``variables['block_cuts']``, see
    ``proxies.base``), so one backward pass gives every block's VJP at once.

  A NaN result becomes -inf, as in the reference.

  Args:
    apply_fn: the network; it must report ``blocks`` and honour ``block_cuts``.
    variables: Flax variables (kaiming-normal fan_in init in AZ-NAS).
    batch: the images (labels are not read).
    key: draws the Rademacher cotangents.

  Returns:
    ``{"az_expressivity", "az_progressivity", "az_trainability"}``: scalars, higher is better.

  Raises:
    ValueError: if the network reports fewer than two blocks.
  """
  images = batch.images
  shapes = jax.eval_shape(lambda v: apply_fn(v, images).blocks, variables)
  if len(shapes) < 2:
    raise ValueError("AZ-NAS reads the output of every block of the network (ModelOutput.blocks); "
                     f"this network reports {len(shapes)}, and at least 2 are needed.")
  cuts = tuple(jnp.zeros(s.shape, s.dtype) for s in shapes[:-1])

  def blocks_of(cuts):
    return apply_fn({**variables, "block_cuts": cuts}, images).blocks

  blocks, vjp = jax.vjp(blocks_of, cuts)
  keys = jax.random.split(key, len(blocks) - 1)
  g_outs = [jax.random.rademacher(k, b.shape, b.dtype) for k, b in zip(keys, blocks[1:])]
  (g_ins,) = vjp((jnp.zeros_like(blocks[0]), *g_outs))
  entropies = jnp.stack([channel_entropy(jax.lax.stop_gradient(f)) for f in blocks])
  trainability = jnp.mean(jnp.stack([block_trainability(gi, go) for gi, go in zip(g_ins, g_outs)]))
  return {"az_expressivity": _nan_to_lowest(jnp.sum(entropies)),
          "az_progressivity": _nan_to_lowest(jnp.min(entropies[1:] - entropies[:-1])),
          "az_trainability": _nan_to_lowest(trainability)}


def az_nas_components_real(apply_fn: ApplyFn, variables: dict, batch: Batch,
                           key: jax.Array) -> dict[str, jax.Array]:
  """`az_nas_components` under the ``_real`` names: the registered variants fed real images."""
  return {f"{k}_real": v for k, v in az_nas_components(apply_fn, variables, batch, key).items()}


_SOURCE = "cvlab-yonsei/AZ-NAS NB201/ZeroShotProxy/compute_az_nas_score.py"


def _register(name: str, doc: str) -> tuple:
  """``name`` on N(0, 1) images, as AZ-NAS scores NB201, and ``name_real`` on the real batch.

  AZ-NAS feeds Gaussian images (its notebook's ``real_input_metrics`` leaves az_nas out), and so
  does ``name``. On 500 random NB201 cells, the aggregate ``az_nas`` reached Spearman rho 0.82 on
  CIFAR-10 with a batch of real CIFAR-10 images against 0.92 with Gaussian ones (200 cells), so
  the ``_real`` variants are there to compare, not as the default.
  """

  def gaussian(apply_fn: ApplyFn, variables: dict, batch: Batch, key: jax.Array) -> jax.Array:
    return az_nas_components(apply_fn, variables, batch, key)[name]

  def real(apply_fn: ApplyFn, variables: dict, batch: Batch, key: jax.Array) -> jax.Array:
    return az_nas_components_real(apply_fn, variables, batch, key)[f"{name}_real"]

  gaussian.__name__, real.__name__ = name, f"{name}_real"
  gaussian.__doc__ = f"AZ-NAS {doc}, on N(0, 1) images; see `az_nas_components`."
  real.__doc__ = f"AZ-NAS {doc}, on the real batch; see `az_nas_components`."
  kw = dict(init="kaiming", source=_SOURCE, dead_edge_exact=True)
  return (register(name, data="gaussian", joint=az_nas_components, **kw)(gaussian),
          register(f"{name}_real", data="real", joint=az_nas_components_real, **kw)(real))


az_expressivity, az_expressivity_real = _register(
    "az_expressivity", "expressivity, sum_l H_l over the block outputs")
az_progressivity, az_progressivity_real = _register(
    "az_progressivity", "progressivity, min_l (H_l - H_{l-1})")
az_trainability, az_trainability_real = _register(
    "az_trainability", "trainability, the mean over blocks of -s - 1/s + 2")
