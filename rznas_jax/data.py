"""Input batches for proxies: real images from CIFAR files or an .npz, or Gaussian noise.

Real images are returned NHWC float32, normalised with the CIFAR mean and std that NAS-Bench-201
and the zero-cost libraries use.
"""

from __future__ import annotations

import os
import pickle
from typing import NamedTuple

import numpy as np

from rznas_jax.errors import UserError

# Per-channel mean/std (0..1 scale) used by xautodl and SamsungLabs/zero-cost-nas.
MEAN = {
    "cifar10": (0.4914, 0.4822, 0.4465),
    "cifar100": (0.5071, 0.4865, 0.4409),
    "imagenet16-120": (0.4811, 0.4575, 0.4078),
}
STD = {
    "cifar10": (0.2470, 0.2435, 0.2616),
    "cifar100": (0.2673, 0.2564, 0.2762),
    "imagenet16-120": (0.2454, 0.2382, 0.2587),
}


class DataError(UserError):
  """A data file or directory that cannot be used, with a sentence saying why."""


class ImageSet(NamedTuple):
  """uint8 images (N, H, W, 3) and int labels (N,)."""

  images: np.ndarray
  labels: np.ndarray


def _check(images: np.ndarray, labels: np.ndarray, source: str) -> ImageSet:
  images = np.asarray(images)
  labels = np.asarray(labels).astype(np.int64).reshape(-1)
  if images.ndim != 4 or images.shape[-1] != 3:
    raise DataError(
        f"images in {source} have shape {images.shape}; expected (N, H, W, 3) RGB images.")
  if len(labels) != len(images):
    raise DataError(f"{source} has {len(images)} images but {len(labels)} labels.")
  return ImageSet(images, labels)


def _load_cifar_dir(path: str) -> ImageSet:
  """CIFAR-10/100 in the python-pickle format (``data_batch_1`` or ``train``), training split."""
  names = sorted(n for n in os.listdir(path) if n.startswith("data_batch"))
  if not names and os.path.isfile(os.path.join(path, "train")):
    names = ["train"]
  if not names:
    raise DataError(
        f"{path!r} holds no CIFAR python-pickle files (data_batch_1..5 for CIFAR-10, train for "
        "CIFAR-100); point --data at the extracted cifar-10-batches-py or cifar-100-python folder.")
  images, labels = [], []
  for name in names:
    try:
      with open(os.path.join(path, name), "rb") as f:
        entry = pickle.load(f, encoding="latin1")
    except Exception as e:  # corrupt or foreign file
      raise DataError(f"cannot read CIFAR file {os.path.join(path, name)!r}: {e}.") from None
    data = np.asarray(entry["data"], np.uint8)
    images.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    labels.append(np.asarray(entry.get("labels", entry.get("fine_labels"))))
  return _check(np.concatenate(images), np.concatenate(labels), path)


def _load_npz(path: str) -> ImageSet:
  try:
    with np.load(path) as f:
      if "images" not in f or "labels" not in f:
        raise DataError(f"{path!r} must hold arrays 'images' (N, H, W, 3) and 'labels' (N,); "
                        f"it has {', '.join(f.files) or 'none'}.")
      return _check(f["images"], f["labels"], path)
  except DataError:
    raise
  except Exception as e:
    raise DataError(f"cannot read {path!r} as an .npz file: {e}.") from None


def load_images(path: str) -> ImageSet:
  """Loads real images from a CIFAR python-pickle directory or an ``.npz`` file.

  Raises:
    DataError: for a missing path, an unreadable file or images that are not (N, H, W, 3).
  """
  if not os.path.exists(path):
    raise DataError(f"data path {path!r} does not exist; give a CIFAR python-pickle directory "
                    "or an .npz file with 'images' and 'labels'.")
  if os.path.isdir(path):
    return _load_cifar_dir(path)
  return _load_npz(path)


def real_batch(images: ImageSet, batch_size: int, seed: int, dataset: str, resolution: int):
  """A normalised float32 batch (B, R, R, 3) and its labels, drawn with a fixed seed."""
  if images.images.shape[1:3] != (resolution, resolution):
    raise DataError(
        f"the images are {images.images.shape[1]}x{images.images.shape[2]}, but the network for "
        f"{dataset} takes {resolution}x{resolution}; use images of that size or another --dataset.")
  if batch_size > len(images.images):
    raise DataError(f"batch size {batch_size} exceeds the {len(images.images)} images available.")
  rng = np.random.default_rng(seed)
  idx = np.sort(rng.choice(len(images.images), batch_size, replace=False))
  x = images.images[idx].astype(np.float32) / 255.0
  x = (x - np.asarray(MEAN[dataset], np.float32)) / np.asarray(STD[dataset], np.float32)
  return x, images.labels[idx]


def gaussian_batch(batch_size: int, resolution: int, num_classes: int, seed: int):
  """N(0, 1) images and uniform random labels, as the data-free proxies use."""
  rng = np.random.default_rng(seed)
  x = rng.standard_normal((batch_size, resolution, resolution, 3)).astype(np.float32)
  return x, rng.integers(0, num_classes, batch_size)
