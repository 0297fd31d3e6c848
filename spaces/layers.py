"""Layers shared by every search space: PyTorch-semantics BN, PyTorch-default inits, padding.

Proxies were defined on freshly built PyTorch models, so these layers reproduce PyTorch's numbers
rather than Flax's defaults: BN normalises with the biased batch variance and updates its running
variance with the unbiased one (momentum 0.1), and weights start from kaiming-uniform(a=sqrt(5)).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

# PyTorch's default Conv2d/Linear weight init: kaiming_uniform(a=sqrt(5)) = U(+-1/sqrt(fan_in)).
torch_kernel_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def torch_bias_init(fan_in: int):
  """PyTorch's default bias init: U(+-1/sqrt(fan_in))."""
  bound = 1.0 / math.sqrt(fan_in)

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return init


class BatchNorm(nn.Module):
  """BatchNorm2d with PyTorch train-mode semantics, over the last axis (NHWC).

  Attributes:
    eps: PyTorch's eps (1e-5 for NAS-Bench-201, 1e-3 in Zen-NAS MasterNet).
    momentum: PyTorch momentum: ``running = (1 - m) * running + m * batch``.
  """

  eps: float = 1e-5
  momentum: float = 0.1

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool = True, gate: jax.Array | float = 1.0) -> jax.Array:
    """Normalises ``x``; ``gate`` in {0, 1} scales the running-statistics update (0: unchanged)."""
    c = x.shape[-1]
    scale = self.param("scale", nn.initializers.ones, (c,), jnp.float32)
    bias = self.param("bias", nn.initializers.zeros, (c,), jnp.float32)
    ra_mean = self.variable("batch_stats", "mean", lambda: jnp.zeros((c,), jnp.float32))
    ra_var = self.variable("batch_stats", "var", lambda: jnp.ones((c,), jnp.float32))
    axes = tuple(range(x.ndim - 1))
    if train:
      mean = jnp.mean(x, axes)
      var = jnp.mean(jnp.square(x - mean), axes)
      if not self.is_initializing() and self.is_mutable_collection("batch_stats"):
        n = x.size // c
        unbiased = var * (n / max(n - 1, 1))
        m = self.momentum * gate
        ra_mean.value = ra_mean.value + m * (jax.lax.stop_gradient(mean).astype(ra_mean.value.dtype) - ra_mean.value)
        ra_var.value = ra_var.value + m * (jax.lax.stop_gradient(unbiased).astype(ra_var.value.dtype) - ra_var.value)
    else:
      mean, var = ra_mean.value, ra_var.value
    y = (x - mean) * jax.lax.rsqrt(var + self.eps)
    return y * scale.astype(x.dtype) + bias.astype(x.dtype)


def torch_padding(kernel: int) -> tuple[tuple[int, int], tuple[int, int]]:
  """PyTorch's symmetric ``padding=(k-1)//2`` (JAX 'SAME' pads asymmetrically at stride 2)."""
  p = (kernel - 1) // 2
  return ((p, p), (p, p))


def avg_pool_exclude_pad(x: jax.Array, window: int = 3) -> jax.Array:
  """Stride-1 average pool with symmetric padding and ``count_include_pad=False``, NHWC.

  Written as shifted adds: XLA:CPU runs ``reduce_window`` slowly (notes/xla-cpu-scoring.md).
  """
  p = window // 2
  h, w = x.shape[1], x.shape[2]
  xp = jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
  total = sum(xp[:, i:i + h, j:j + w, :] for i in range(window) for j in range(window))
  ones = jnp.pad(jnp.ones((h, w), x.dtype), ((p, p), (p, p)))
  count = sum(ones[i:i + h, j:j + w] for i in range(window) for j in range(window))
  return total / count[None, :, :, None]


def _window(xp: jax.Array, i: int, j: int, stride: int, out_hw: tuple[int, int]) -> jax.Array:
  """``xp[:, i::stride, j::stride, :]`` cut to ``out_hw``."""
  n, _, _, c = xp.shape
  ho, wo = out_hw
  return jax.lax.slice(xp, (0, i, j, 0), (n, i + (ho - 1) * stride + 1, j + (wo - 1) * stride + 1, c),
                       (1, stride, stride, 1))


def _dilate_for_transpose(g: jax.Array, k: int, stride: int, xp_hw: tuple[int, int]) -> jax.Array:
  """``g`` with ``stride - 1`` zeros between its pixels and ``k - 1`` around them (more at the far
  end up to ``xp_hw``): correlating it with the flipped kernel gives the transpose of `_corr`."""
  _, ho, wo, _ = g.shape
  extra_h = xp_hw[0] - ((ho - 1) * stride + k)
  extra_w = xp_hw[1] - ((wo - 1) * stride + k)
  zero = jnp.zeros((), g.dtype)
  return jax.lax.pad(g, zero, ((0, 0, 0), (k - 1, k - 1 + extra_h, stride - 1),
                               (k - 1, k - 1 + extra_w, stride - 1), (0, 0, 0)))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _corr(xp: jax.Array, kernel: jax.Array, stride: int, out_hw: tuple[int, int]) -> jax.Array:
  """``sum_{i,j} xp[:, i::stride, j::stride, :] * kernel[i, j]`` (kernel ``(K, K, C)``), no padding."""
  k = kernel.shape[0]
  xp = jax.lax.optimization_barrier(xp)  # made once, not recomputed (BN, ReLU, pad) per window
  out = None
  for i in range(k):
    for j in range(k):
      term = _window(xp, i, j, stride, out_hw) * kernel[i, j]
      out = term if out is None else out + term
  return out


def _corr_transpose(g: jax.Array, kernel: jax.Array, stride: int, xp_hw: tuple[int, int]) -> jax.Array:
  """The transpose of `_corr` in ``xp``: ``g`` dilated and correlated with the flipped kernel."""
  k = kernel.shape[0]
  return _corr(_dilate_for_transpose(g, k, stride, xp_hw), kernel[::-1, ::-1], 1, xp_hw)


def _corr_fwd(xp, kernel, stride, out_hw):
  return _corr(xp, kernel, stride, out_hw), (xp, kernel)


def _corr_bwd(stride, out_hw, res, g):
  xp, kernel = res
  return _corr_transpose(g, kernel, stride, xp.shape[1:3]), _kernel_grad(xp, g, stride, kernel.shape[0])


_corr.defvjp(_corr_fwd, _corr_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _kernel_grad(xp: jax.Array, g: jax.Array, stride: int, k: int) -> jax.Array:
  """``d kernel[i, j] = sum_{n,h,w} xp[:, i::stride, j::stride, :] * g``, shape ``(K, K, C)``."""
  n, ho, wo, c = g.shape
  span = ((ho - 1) * stride + 1, (wo - 1) * stride + 1)

  def one(offset):  # one (i, j) per loop step: XLA:CPU would keep all K*K windows otherwise
    zero = jnp.zeros((), offset.dtype)  # one index type, also under jax.enable_x64
    window = jax.lax.dynamic_slice(xp, (zero, offset[0], offset[1], zero), (n, *span, c))
    return jnp.sum(window[:, ::stride, ::stride, :] * g, axis=(0, 1, 2))

  offsets = jnp.array([(i, j) for i in range(k) for j in range(k)], jnp.int32)
  return jax.lax.map(one, offsets).reshape(k, k, c)


def _kernel_grad_fwd(xp, g, stride, k):
  return _kernel_grad(xp, g, stride, k), (xp, g)


def _kernel_grad_bwd(stride, k, res, ct):
  del k  # the shape of ct
  xp, g = res
  return _corr_transpose(g, ct, stride, xp.shape[1:3]), _corr(xp, ct, stride, g.shape[1:3])


_kernel_grad.defvjp(_kernel_grad_fwd, _kernel_grad_bwd)


def depthwise_conv_shifted(x: jax.Array, kernel: jax.Array, stride: int = 1) -> jax.Array:
  """A depthwise conv (NHWC, kernel ``(K, K, 1, C)``, PyTorch padding) as K*K shifted products.

  ``sum_{i,j} pad(x)[:, i::stride, j::stride, :] * kernel[i, j, 0]``: the same sum as
  ``lax.conv_general_dilated(..., feature_group_count=C)``, in another order of additions. XLA:CPU
  runs grouped convolutions and their gradients as naive loops; this form is elementwise work it
  fuses: a depthwise conv's gradient ran 14-24x faster on a 2-core CPU (64x56x56x96, K=3..7).

  Its derivatives are written in the same two shifted forms (the input gradient a shifted
  correlation of the dilated cotangent with the flipped kernel, the kernel gradient K*K window
  reductions), each with its own custom VJP: autodiff would save K*K window-sized residuals per
  conv, at every order (GraSP differentiates twice); these save only their inputs.
  """
  k = kernel.shape[0]
  p = (k - 1) // 2
  _, h, w, _ = x.shape
  xp = jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
  out_hw = ((h + 2 * p - k) // stride + 1, (w + 2 * p - k) // stride + 1)
  return _corr(xp, kernel[:, :, 0, :], stride, out_hw)


class DepthwiseConv(nn.Module):
  """``nn.Conv(C, (K, K), stride, feature_group_count=C)`` with the same parameters (``kernel``
  ``(K, K, 1, C)``, optional ``bias``) and init, computed by `depthwise_conv_shifted`."""

  kernel_size: int
  stride: int = 1
  use_bias: bool = False
  bias_init: Any = nn.initializers.zeros

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    c = x.shape[-1]
    kernel = self.param("kernel", torch_kernel_init, (self.kernel_size, self.kernel_size, 1, c))
    dtype = jnp.result_type(x, kernel)
    y = depthwise_conv_shifted(x.astype(dtype), kernel.astype(dtype), self.stride)
    if self.use_bias:
      y = y + self.param("bias", self.bias_init, (c,)).astype(dtype)
    return y
