"""One scoring core: the `Scorer` protocol and what every space's scorer shares.

A scorer turns architectures into proxy scores. `scoring.NB201Scorer` (cells as array arguments,
vmapped or sharded over a cell mesh) and `macro_scoring.MacroScorer` (one compile per structure)
differ in how they run a network; everything else lives here, once:

* `ProxyInputs`: the batches (Gaussian, or real images drawn and normalised by `real_batch`), the
  PRNG keys (one per purpose, one per proxy), the initialisations and the float64 cast, all from
  one seed, so a score depends only on (architecture, proxy, seed, batch settings).
* `score_analytic`: analytic proxies (`proxies.register_analytic`) on the space's counters.
* `PendingScores`: scores stay on their devices until one `jax.device_get` per ``score`` call.
* `device_name`: how ``last_devices`` names the device that scored an architecture.

Proxies that cannot run in a space are refused by `proxies.check_for_space`, which both scorers
call in their constructors (and a config check calls with the space's cost keys).
"""

from __future__ import annotations

import contextlib
import zlib
from typing import Any, Callable, Iterator, Mapping, Protocol, Sequence, runtime_checkable

import jax
import jax.numpy as jnp
import numpy as np

from rznas_jax import data as data_lib
from rznas_jax.proxies import network
from rznas_jax.proxies.base import Batch, ProxySpec

Progress = Callable[[int, str], None]

# Per-channel mean/std (0..1 scale) for real images: the CIFAR and ImageNet16-120 ones of
# ``data.py`` and the torchvision ImageNet ones that Zen-NAS/ZiCo's ImageNet loaders use.
NORMALIZATIONS = {
    **{name: (data_lib.MEAN[name], data_lib.STD[name]) for name in data_lib.MEAN},
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}


@runtime_checkable
class Scorer(Protocol):
  """What the search driver and the launchers use of a space's scorer.

  Example:
    >>> scorer: Scorer = scoring.NB201Scorer(["synflow", "params"], devices=jax.local_devices())
    >>> scores = scorer.score(archs)        # {"synflow": float64 (n,), "params": float64 (n,)}
    >>> scorer.last_devices[0]              # "cpu:0": where archs[0]'s network proxies ran

  Attributes:
    proxies: the registry names scored, in the order given.
    specs: their registry entries, in the same order.
    compile_seconds: ``{label: seconds}`` spent compiling, ``label`` a proxy or proxies compiled
      together (``"a+b"``).
    devices: the devices the scorer runs networks on.
    last_devices: for each architecture of the last ``score`` call, the `device_name` of the
      device that ran its network proxies (``"host"`` when only analytic proxies were scored).
  """

  proxies: tuple[str, ...]
  specs: list[ProxySpec]
  compile_seconds: dict[str, float]
  devices: list[jax.Device]
  last_devices: list[str]

  def score(self, archs: Sequence[Any], progress: Progress | None = None) -> dict[str, np.ndarray]:
    """``{proxy: float64 array in the order of archs}`` for every proxy of the scorer.

    ``progress(count, label)``, when given, is called with ``count`` 0 when ``label`` starts and
    with the number of (architecture, proxy) scores of ``label`` that just finished.
    """


def device_name(device: jax.Device) -> str:
  """``"platform:id"``, e.g. ``"cpu:3"``: unique across the processes of a multi-host run."""
  return f"{device.platform}:{device.id}"


def default_device() -> jax.Device:
  """The device an uncommitted computation of this process runs on."""
  chosen = jax.config.jax_default_device  # a Device, a platform name or None
  return chosen if isinstance(chosen, jax.Device) else jax.local_devices(backend=chosen)[0]


def proxy_key(key: jax.Array, name: str) -> jax.Array:
  """The key of proxy (or joint function) ``name``: ``fold_in(key, crc32(name))``."""
  return jax.random.fold_in(key, zlib.crc32(name.encode()))


@contextlib.contextmanager
def precision(spec: ProxySpec) -> Iterator[None]:
  """Float64 for a float64 proxy (per thread), the default otherwise; trace and call inside."""
  with jax.enable_x64(spec.dtype == "float64"):
    yield


def real_batch(images: data_lib.ImageSet, batch_size: int, seed: int, resolution: int,
               normalization: str, *, remedy: str = "set the resolution to theirs"
               ) -> tuple[np.ndarray, np.ndarray]:
  """``batch_size`` images drawn with ``seed`` and normalised, as `data.real_batch` draws them.

  Args:
    images: uint8 images (N, H, W, 3) and their labels.
    batch_size: images to draw (without replacement, then sorted by index).
    seed: seeds the draw (``np.random.default_rng(seed)``).
    resolution: the network's input size, which the images must have.
    normalization: a key of `NORMALIZATIONS`.
    remedy: what a size error suggests besides images of the right size.

  Returns:
    float32 images ``(x / 255 - mean) / std`` and their labels.

  Raises:
    DataError: images of another size than ``resolution``, or fewer than ``batch_size``.
    ValueError: an unknown ``normalization``.
  """
  if normalization not in NORMALIZATIONS:
    raise ValueError(f"unknown normalisation {normalization!r}; valid: {', '.join(NORMALIZATIONS)}.")
  h, w = images.images.shape[1:3]
  if (h, w) != (resolution, resolution):
    raise data_lib.DataError(f"the images are {h}x{w}, but the network takes {resolution}x{resolution}; "
                             f"use images of that size or {remedy}.")
  if batch_size > len(images.images):
    raise data_lib.DataError(f"batch size {batch_size} exceeds the {len(images.images)} images available.")
  rng = np.random.default_rng(seed)
  idx = np.sort(rng.choice(len(images.images), batch_size, replace=False))
  mean, std = (np.asarray(v, np.float32) for v in NORMALIZATIONS[normalization])
  x = (images.images[idx].astype(np.float32) / 255.0 - mean) / std
  return x, images.labels[idx]


def _fill_kernels(variables: dict, key: jax.Array, std: Callable[[tuple[int, ...]], float]) -> dict:
  """``variables`` with kernels N(0, std(shape)^2) from NumPy seeded by ``key``, biases 0, BN 1/0."""
  rng = np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel())

  def fill(path, leaf):
    name = path[-1].key
    if name == "kernel":
      scale = std(leaf.shape)
      draw = rng.standard_normal(leaf.shape)
      return jnp.asarray((draw if scale is None else draw * scale).astype(np.float32))
    return jnp.ones_like(leaf) if name == "scale" else jnp.zeros_like(leaf)

  return {**variables, "params": jax.tree_util.tree_map_with_path(fill, variables["params"])}


def gaussian_init(variables: dict, key: jax.Array) -> dict:
  """Zen-NAS's ``network_weight_gaussian_init``: conv/linear weights N(0,1), biases 0, BN 1/0."""
  return _fill_kernels(variables, key, lambda shape: None)


def kaiming_init(variables: dict, key: jax.Array) -> dict:
  """AZ-NAS's ``kaiming_normal_fanin_init``: conv/linear weights N(0, 2/fan_in), biases 0, BN 1/0.

  ``fan_in`` is the product of a kernel's dimensions but the last (HWIO, or (in, out) for a dense
  layer): PyTorch's ``kaiming_normal_(mode='fan_in', nonlinearity='relu')``.
  """
  return _fill_kernels(variables, key, lambda shape: np.sqrt(2.0 / np.prod(shape[:-1])))


class ProxyInputs:
  """What a proxy sees besides the network, all from one seed: batches, keys, initialisations.

  The root key ``key(seed)`` splits into three purposes, ``init_key`` (PyTorch-default weights),
  ``gauss_key`` (Zen-NAS's N(0, 1) weights) and ``proxy_key`` (each proxy's own randomness,
  `proxy_key` of its name); AZ-NAS's kaiming weights use ``fold_in(init_key, 1)``. The Gaussian
  batch is `data.gaussian_batch` of the seed; the real one `real_batch` of the seed.

  Args:
    batch_size: images per batch.
    resolution: image size.
    num_classes: label range of the Gaussian batch, and the limit real labels must respect.
    seed: the seed of everything above.
    images: real images (None: proxies that want real data get the Gaussian batch).
    normalization: a key of `NORMALIZATIONS`, for real images.
    network: how a label error names the network (e.g. ``"cifar10"``, ``"the zen_cifar network"``).
    labels_hint: what a label error suggests (e.g. ``"; set num_classes"``).
    size_remedy: what an image-size error suggests (`real_batch`'s ``remedy``).

  Raises:
    DataError: real images that do not fit (size, count, a label out of range).
  """

  def __init__(self, *, batch_size: int, resolution: int, num_classes: int, seed: int,
               images: data_lib.ImageSet | None = None, normalization: str | None = None,
               network: str = "the network", labels_hint: str = "",
               size_remedy: str = "set the resolution to theirs"):
    self.batch_size, self.resolution, self.num_classes, self.seed = (batch_size, resolution,
                                                                     num_classes, seed)
    root = jax.random.key(seed)
    self.init_key, self.gauss_key, self.proxy_key = jax.random.split(root, 3)
    self.kaiming_key = jax.random.fold_in(self.init_key, 1)  # a fourth purpose, old keys kept
    self.batches: dict[str, Batch] = {}  # "real" when images are given; "gaussian" on first use
    if images is not None:
      x, y = real_batch(images, batch_size, seed, resolution, normalization, remedy=size_remedy)
      bad = y.max() if y.max() >= num_classes else y.min()
      if bad < 0 or bad >= num_classes:
        raise data_lib.DataError(f"the data has label {int(bad)}, but {network} has {num_classes} "
                                 f"classes (0..{num_classes - 1}){labels_hint}.")
      self.batches["real"] = Batch(jnp.asarray(x), jnp.asarray(y))

  def batch(self, spec: ProxySpec) -> Batch:
    """The real batch for a proxy that wants real data and has it, else the Gaussian batch."""
    if spec.data == "real" and "real" in self.batches:
      return self.batches["real"]
    return self.gaussian()

  def gaussian(self) -> Batch:
    """N(0, 1) images and random labels (`data.gaussian_batch` of the seed), made once."""
    if "gaussian" not in self.batches:
      x, y = data_lib.gaussian_batch(self.batch_size, self.resolution, self.num_classes, self.seed)
      self.batches["gaussian"] = Batch(jnp.asarray(x), jnp.asarray(y))
    return self.batches["gaussian"]

  def initialise(self, base: dict, init: str) -> dict:
    """``base`` (PyTorch-default variables made with ``init_key``) as ``init`` asks."""
    if init == "gaussian":
      return gaussian_init(base, self.gauss_key)
    if init == "kaiming":
      return kaiming_init(base, self.kaiming_key)
    return base

  def key(self, spec: ProxySpec) -> jax.Array:
    """The key ``spec`` gets outside a joint function: `proxy_key` of its name."""
    return proxy_key(self.proxy_key, spec.name)

  @staticmethod
  def cast(spec: ProxySpec, variables: dict, batch: Batch) -> tuple[dict, Batch]:
    """Float64 variables and images for a float64 proxy (call inside `precision`)."""
    if spec.dtype != "float64":
      return variables, batch
    return network.cast(variables, jnp.float64), Batch(batch.images.astype(jnp.float64), batch.labels)


def score_analytic(spec: ProxySpec, costs: Callable[[Any], Mapping[str, Any]],
                   archs: Sequence[Any]) -> np.ndarray:
  """An analytic proxy of every arch: ``spec.fn(costs(arch))``, float64, on the host."""
  return np.array([spec.fn(costs(a)) for a in archs], np.float64)


class PendingScores:
  """Scores computed on devices, kept there until `fetch` brings them all over at once.

  Each part is ``(proxy, rows, values)``: ``values`` (a device or host array, any shape) holds,
  flattened, the scores of the architectures at ``rows`` (a slice or index array of the result)
  in order, then anything (padding, dropped); or one score, which every row of ``rows`` gets.
  """

  def __init__(self, num_archs: int):
    self.num_archs = num_archs
    self._parts: list[tuple[str, slice | np.ndarray, Any]] = []

  def add(self, proxy: str, rows: slice | np.ndarray, values: Any) -> None:
    self._parts.append((proxy, rows, values))

  def values(self, proxy: str | None = None) -> list[Any]:
    """The values of every part (or of ``proxy``'s), e.g. to wait for them."""
    return [values for name, _, values in self._parts if proxy in (None, name)]

  def fetch(self, proxies: Sequence[str]) -> dict[str, np.ndarray]:
    """One `jax.device_get` of every part; ``{proxy: float64 (num_archs,)}`` for ``proxies``."""
    host = jax.device_get(self.values())
    out = {name: np.zeros(self.num_archs, np.float64) for name in proxies}
    for (proxy, rows, _), values in zip(self._parts, host):
      flat = np.reshape(np.asarray(values), -1)
      count = len(range(self.num_archs)[rows]) if isinstance(rows, slice) else len(rows)
      out[proxy][rows] = flat[0] if flat.size == 1 else flat[:count]
    self._parts = []
    return out
