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
