"""Training data in memory: CIFAR-10/100, ImageNet16-120, image folders, .npz files, synthetic.

Every reader returns uint8 NHWC images and int32 labels; augmentation and normalisation happen on
the device (``augment.py``). A missing or malformed dataset raises `DataError` with one sentence
that says what was expected. Formats:

* CIFAR-10/100: the python-pickle folders ``cifar-10-batches-py`` (``data_batch_1..5``,
  ``test_batch``) and ``cifar-100-python`` (``train``, ``test``; fine labels).
* ImageNet16-120: NAS-Bench-201's downsampled ImageNet (``train_data_batch_1..10``, ``val_data``;
  16x16, labels 1..1000), keeping classes 1..120 as 0..119, as xautodl's ``ImageNet16`` does.
* Image folder: ``train/<class>/*`` and ``val/<class>/*`` (or ``test/``), ImageNet-style, decoded
  once with Pillow to ``image_size`` (shorter side resized, centre crop) and held in memory, so
  it suits downsampled or small datasets.
* ``.npz`` with ``images`` (N, H, W, 3) and ``labels`` (``rznas_jax.data.load_images``); it has
  no test split, so ``holdout`` carves one out.
"""

from __future__ import annotations

import dataclasses
import os
import pickle

import numpy as np

from rznas_jax import data as data_lib
from rznas_jax.data import DataError
from rznas_jax.data import ImageSet

NUM_CLASSES = {"cifar10": 10, "cifar100": 100, "imagenet16-120": 120}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff")


@dataclasses.dataclass(frozen=True)
class Dataset:
  """A training and a test split with what the network and the normalisation need.

  Attributes:
    name: the dataset kind (``cifar10``, ..., ``synthetic``).
    train: training images (uint8 NHWC) and labels.
    test: test images and labels.
    num_classes: classifier width.
    mean: per-channel mean on the 0..1 scale.
    std: per-channel standard deviation on the 0..1 scale.
  """

  name: str
  train: ImageSet
  test: ImageSet
  num_classes: int
  mean: tuple[float, float, float]
  std: tuple[float, float, float]

  @property
  def image_shape(self) -> tuple[int, int, int]:
    return tuple(self.train.images.shape[1:])


def _unpickle(path: str) -> dict:
  try:
    with open(path, "rb") as f:
      return pickle.load(f, encoding="latin1")
  except Exception as e:  # a truncated or foreign file
    raise DataError(f"cannot read the pickle file {path!r}: {e}.") from None


def _pickles(path: str, names: list[str], side: int, label_keys: tuple[str, ...]) -> ImageSet:
  images, labels = [], []
  for name in names:
    full = os.path.join(path, name)
    entry = _unpickle(full)
    key = next((k for k in label_keys if isinstance(entry, dict) and k in entry), None)
    if key is None or "data" not in entry:
      raise DataError(f"{full!r} lacks 'data' or '{label_keys[0]}'; it is not a {side}x{side} "
                      "python-pickle image batch.")
    data = np.asarray(entry["data"], np.uint8)
    if data.ndim != 2 or data.shape[1] != 3 * side * side:
      raise DataError(f"{full!r} holds data of shape {data.shape}; expected (N, {3 * side * side}) "
                      f"for {side}x{side} RGB images.")
    images.append(data.reshape(-1, 3, side, side).transpose(0, 2, 3, 1))
    labels.append(np.asarray(entry[key], np.int64).reshape(-1))
  return ImageSet(np.concatenate(images), np.concatenate(labels))


def read_cifar(path: str, dataset: str) -> tuple[ImageSet, ImageSet]:
  """CIFAR-10 or CIFAR-100 training and test splits from the python-pickle folder ``path``."""
  files = set(os.listdir(path))
  if dataset == "cifar10":
    train = sorted(n for n in files if n.startswith("data_batch_"))
    test = ["test_batch"]
    folder = "cifar-10-batches-py (data_batch_1..5, test_batch)"
  else:
    train, test = ["train"], ["test"]
    folder = "cifar-100-python (train, test)"
  missing = [n for n in test + (train or ["data_batch_1"]) if n not in files]
  if missing:
    raise DataError(f"{path!r} lacks {', '.join(missing)}; point config.data at the extracted "
                    f"{folder} folder.")
  keys = ("labels",) if dataset == "cifar10" else ("fine_labels",)
  return _pickles(path, train, 32, keys), _pickles(path, test, 32, keys)


def read_imagenet16(path: str, num_classes: int = 120) -> tuple[ImageSet, ImageSet]:
  """NB201's ImageNet16 (16x16) folder, keeping labels 1..``num_classes`` as 0..num_classes-1."""
  train = [f"train_data_batch_{i}" for i in range(1, 11)]
  missing = [n for n in train + ["val_data"] if not os.path.isfile(os.path.join(path, n))]
  if missing:
    raise DataError(f"{path!r} lacks {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}; "
                    "point config.data at NB201's ImageNet16 folder (train_data_batch_1..10, "
                    "val_data).")

  def keep(split: ImageSet) -> ImageSet:
    mask = (split.labels >= 1) & (split.labels <= num_classes)
    return ImageSet(split.images[mask], split.labels[mask] - 1)

  return keep(_pickles(path, train, 16, ("labels",))), keep(_pickles(path, ["val_data"], 16, ("labels",)))


def _decode(path: str, size: int) -> np.ndarray:
  from PIL import Image  # pylint: disable=g-import-not-at-top  (only image folders need Pillow)
  try:
    with Image.open(path) as im:
      im = im.convert("RGB")
      w, h = im.size
      scale = size / min(w, h)
      im = im.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BILINEAR)
      w, h = im.size
      left, top = (w - size) // 2, (h - size) // 2
      return np.asarray(im.crop((left, top, left + size, top + size)), np.uint8)
  except OSError as e:
    raise DataError(f"cannot decode the image {path!r}: {e}.") from None


def _read_folder(root: str, classes: list[str], size: int) -> ImageSet:
  images, labels = [], []
  for label, name in enumerate(classes):
    folder = os.path.join(root, name)
    files = sorted(f for f in os.listdir(folder) if f.lower().endswith(IMAGE_SUFFIXES)) \
        if os.path.isdir(folder) else []
    for f in files:
      images.append(_decode(os.path.join(folder, f), size))
      labels.append(label)
  if not images:
    raise DataError(f"{root!r} holds no images in its class folders ({', '.join(classes[:3])} ...).")
  return ImageSet(np.stack(images), np.asarray(labels, np.int64))


def read_image_folder(path: str, size: int) -> tuple[ImageSet, ImageSet, list[str]]:
  """``train/<class>/*`` and ``val/<class>/*`` (or ``test/``) images, ``size`` x ``size``.

  Returns:
    The training split, the test split and the class names (sorted; label = index).
  """
  train_root = os.path.join(path, "train")
  test_root = next((os.path.join(path, d) for d in ("val", "test")
                    if os.path.isdir(os.path.join(path, d))), None)
  if not os.path.isdir(train_root) or test_root is None:
    raise DataError(f"{path!r} must hold train/<class>/ and val/<class>/ (or test/<class>/) "
                    "image folders.")
  classes = sorted(d for d in os.listdir(train_root) if os.path.isdir(os.path.join(train_root, d)))
  if len(classes) < 2:
    raise DataError(f"{train_root!r} holds {len(classes)} class folder(s); it needs at least 2.")
  return _read_folder(train_root, classes, size), _read_folder(test_root, classes, size), classes


def synthetic(num_classes: int, size: int, num_train: int, seed: int) -> tuple[ImageSet, ImageSet]:
  """A learnable random dataset: one random template per class plus noise (tests, benchmarks)."""
  rng = np.random.default_rng(seed)
  templates = rng.uniform(0, 255, (num_classes, size, size, 3))

  def draw(n):
    labels = rng.integers(0, num_classes, n)
    noise = rng.normal(0, 48, (n, size, size, 3))
    return ImageSet(np.clip(templates[labels] + noise, 0, 255).astype(np.uint8), labels)

  return draw(num_train), draw(max(1, num_train // 4))


def split_holdout(images: ImageSet, holdout: int, seed: int) -> tuple[ImageSet, ImageSet]:
  """A seeded draw of ``holdout`` images as the test split; the rest is the training split."""
  if not 0 < holdout < len(images.labels):
    raise DataError(f"holdout {holdout} must be between 1 and {len(images.labels) - 1} "
                    f"(the data has {len(images.labels)} images).")
  order = np.random.default_rng(seed).permutation(len(images.labels))
  test, train = order[:holdout], order[holdout:]
  return (ImageSet(images.images[train], images.labels[train]),
          ImageSet(images.images[test], images.labels[test]))


def _checked(split: ImageSet, num_classes: int, source: str, what: str) -> ImageSet:
  labels = np.asarray(split.labels)
  if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
    raise DataError(f"the {what} labels of {source} span {labels.min()}..{labels.max()}; "
                    f"expected 0..{num_classes - 1}.")
  return ImageSet(np.ascontiguousarray(split.images, np.uint8), labels.astype(np.int32))


def load_dataset(name: str, path: str = "", *, holdout: int = 0, seed: int = 0,
                 num_classes: int | None = None, image_size: int | None = None,
                 synthetic_images: int = 512) -> Dataset:
  """Reads dataset ``name`` from ``path`` (see the module docstring for the formats).

  Args:
    name: ``cifar10``, ``cifar100``, ``imagenet16-120``, ``imagefolder`` or ``synthetic``.
    path: the dataset folder, or an ``.npz`` file (any name but ``imagefolder``).
    holdout: >0 moves that many training images (a draw seeded by ``seed``) into the test split;
      required for an ``.npz``, which has no test split.
    seed: seeds the holdout draw and the synthetic data.
    num_classes: classes of ``synthetic`` (default 10); otherwise fixed by the data.
    image_size: side of ``imagefolder`` (default 64) and ``synthetic`` (default 32) images.
    synthetic_images: training images of ``synthetic``.

  Returns:
    The `Dataset`; its mean and std are the published CIFAR/ImageNet16 values, the ImageNet
    values for image folders and those of the training images otherwise.

  Raises:
    DataError: a missing path, an unreadable or malformed file, labels out of range, or a
      dataset without a test split and no holdout.

  Example:
    >>> load_dataset("synthetic", image_size=16).image_shape
    (16, 16, 3)
  """
  if name == "synthetic":
    classes = num_classes or 10
    train, test = synthetic(classes, image_size or 32, synthetic_images, seed)
    source = "the synthetic data"
  else:
    if not os.path.exists(path):
      raise DataError(f"data path {path!r} does not exist; give the {name} folder"
                      f"{'' if name == 'imagefolder' else ' or an .npz file'}.")
    source = repr(path)
    classes = None
    if os.path.isfile(path):
      if name == "imagefolder":
        raise DataError(f"{path!r} is a file; imagefolder needs a folder with train/ and val/.")
      train, test = data_lib.load_images(path), None
    elif name in ("cifar10", "cifar100"):
      train, test = read_cifar(path, name)
    elif name == "imagenet16-120":
      train, test = read_imagenet16(path)
    else:
      train, test, names = read_image_folder(path, image_size or 64)
      classes = len(names)
    classes = classes or NUM_CLASSES[name]
  if holdout:
    train, test = split_holdout(train, holdout, seed)
  elif test is None:
    raise DataError(f"{source} has no test split; set config.holdout to the number of images "
                    "to hold out for testing (e.g. 200 of 1000).")
  train = _checked(train, classes, source, "training")
  test = _checked(test, classes, source, "test")
  if train.images.shape[1:] != test.images.shape[1:]:
    raise DataError(f"the training images of {source} are {train.images.shape[1:]} but the test "
                    f"images are {test.images.shape[1:]}.")
  if name in data_lib.MEAN:
    mean, std = data_lib.MEAN[name], data_lib.STD[name]
  elif name == "imagefolder":
    mean, std = IMAGENET_MEAN, IMAGENET_STD
  else:
    pixels = train.images.reshape(-1, 3).astype(np.float64) / 255.0
    mean, std = tuple(pixels.mean(0)), tuple(np.maximum(pixels.std(0), 1e-3))
  return Dataset(name, train, test, classes, tuple(map(float, mean)), tuple(map(float, std)))


def epoch_order(num_images: int, seed: int, epoch: int) -> np.ndarray:
  """The training images' order in ``epoch``: a permutation that depends only on (seed, epoch).

  A resumed run therefore sees the same batches as an uninterrupted one.
  """
  return np.random.default_rng([seed, epoch]).permutation(num_images)
