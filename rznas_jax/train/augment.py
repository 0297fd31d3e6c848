"""The standard CIFAR augmentation on the device: random crop after zero padding, horizontal flip.

It matches torchvision's ``RandomCrop(size, padding=p)`` + ``RandomHorizontalFlip()`` applied
before ``ToTensor``/``Normalize`` (the pipeline of xautodl and Zen-NAS): padded pixels are black,
i.e. ``-mean/std`` after normalisation. Offsets and flips are drawn from one key per step, so a
batch's augmentation does not depend on how the batch is split over devices.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp


def draw_augmentation(key: jax.Array, batch: int, padding: int) -> tuple[jax.Array, jax.Array]:
  """Per-image crop offsets ``(batch, 2)`` in ``[0, 2 * padding]`` and flip flags ``(batch,)``."""
  crop_key, flip_key = jax.random.split(key)
  offsets = jax.random.randint(crop_key, (batch, 2), 0, 2 * padding + 1)
  flips = jax.random.bernoulli(flip_key, 0.5, (batch,))
  return offsets, flips


def crop_and_flip(images: jax.Array, offsets: jax.Array, flips: jax.Array, padding: int) -> jax.Array:
  """Zero-pads ``images`` (B, H, W, C) by ``padding``, crops H x W at ``offsets``, flips where set."""
  b, h, w, c = images.shape
  if padding:
    padded = jnp.pad(images, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    crop = lambda im, o: jax.lax.dynamic_slice(im, (o[0], o[1], 0), (h, w, c))
    images = jax.vmap(crop)(padded, offsets)
  return jnp.where(flips[:, None, None, None], images[:, :, ::-1, :], images)


def normalize(images: jax.Array, mean: Sequence[float], std: Sequence[float]) -> jax.Array:
  """uint8 (or 0..255) images -> float32 ``(x / 255 - mean) / std``."""
  x = images.astype(jnp.float32) / 255.0
  return (x - jnp.asarray(mean, jnp.float32)) / jnp.asarray(std, jnp.float32)


def augment(images: jax.Array, key: jax.Array, *, padding: int, flip: bool) -> jax.Array:
  """Random crop (if ``padding``) and random horizontal flip (if ``flip``) of a uint8 batch."""
  offsets, flips = draw_augmentation(key, images.shape[0], padding)
  if not flip:
    flips = jnp.zeros_like(flips)
  return crop_and_flip(images, offsets, flips, padding)


def cutout(images: jax.Array, key: jax.Array, length: int) -> jax.Array:
  """Cutout (DeVries & Taylor, 2017, as quark0/darts ``utils.Cutout``): per image, a
  ``length`` x ``length`` square centred on a uniform pixel, clipped at the borders, set to 0."""
  b, h, w, _ = images.shape
  cy_key, cx_key = jax.random.split(key)
  cy = jax.random.randint(cy_key, (b, 1, 1), 0, h)
  cx = jax.random.randint(cx_key, (b, 1, 1), 0, w)
  ys, xs = jnp.arange(h)[None, :, None], jnp.arange(w)[None, None, :]
  inside = ((ys >= cy - length // 2) & (ys < cy + length - length // 2) &
            (xs >= cx - length // 2) & (xs < cx + length - length // 2))
  return jnp.where(inside[..., None], jnp.zeros((), images.dtype), images)
