"""The scoring harness for the macro spaces: one compiled function per (structure, proxy).

A macro architecture changes the network's shapes, so, unlike a NAS-Bench-201 cell, it cannot be
an array argument: the `Arch` (hashable) is static, and every distinct structure is traced and
compiled once per proxy. `MacroScorer` keeps those executables in a cache keyed on
``(arch, proxy)`` (least recently used first out, ``cache_size`` entries), so a structure that
comes back, within one call or across calls, runs without tracing again. ``trace_counts`` counts
the traces of each ``(structure string, proxy)``.

What a network proxy sees (as Zen-NAS's and ZiCo's search code scores it, idstcv/ZenNAS and
SLDGroup/ZiCo; docs/scoring.md): the network of the space built with **residual links
removed** (``no_reslink=True``), in train mode (batch-statistics BN), initialised as the proxy
asks (``"pytorch"``: PyTorch's default init; ``"gaussian"``: Zen-NAS's N(0, 1) weights, zero
biases), on a real batch (when images are given and the proxy wants real data) or a Gaussian
batch with random labels; float64 proxies run under ``jax.enable_x64(True)``. Initial variables
come from the seed alone, not from which other structures are scored, so a score depends only on
(structure, proxy, seed, batch settings): batches, keys, initialisations and the float64 cast are
the shared scoring core's (`rznas_jax.scorer`), and `MacroScorer` implements its `Scorer`
protocol. Analytic proxies (``params``, ``flops``, ``maedet``) read the space's counters
(``MacroSpace.costs``, the budget convention: shortcuts included) and never build a network; one
that the space cannot serve (MAE-DET outside the maedet convention) is refused by
`proxies.check_for_space` when the scorer is made. Scores stay on the devices until one fetch per
``score`` call.

Invalid input is refused, not scored: `MacroScorer.score` validates every architecture against
its space first and raises `InvalidArchError` (a ValueError) naming the first bad one and every
reason, before any compilation. A search loop validates children before scoring them anyway
(docs/search.md, Reply parsing), so a NaN standing for "invalid" would only hide a bug.

The persistent compilation cache is the caller's switch (``rznas_jax.compilation_cache.enable_compilation_cache``
in the launchers): it is process-wide JAX configuration, which a library object should not set.
"""

from __future__ import annotations

import collections
import concurrent.futures
import threading
import time
from typing import Callable, Iterable, Sequence

import jax
import numpy as np

from rznas_jax import data as data_lib
from rznas_jax import proxies as proxy_lib  # registers every proxy
from rznas_jax import scorer as scorer_lib
from rznas_jax.proxies.base import Batch, ProxySpec
# Re-exported: the normalisations live in the shared core.
from rznas_jax.scorer import NORMALIZATIONS  # pylint: disable=unused-import
from rznas_jax.spaces import macro
from rznas_jax.spaces import macro_net
from rznas_jax.spaces import macro_spaces
from rznas_jax.spaces.base import SpaceError
from rznas_jax.spaces.macro import Arch
from rznas_jax.spaces.macro_spaces import MacroSpace

# Proxies defined only for one counter convention (MAE-DET reads a K1KXK1 sub-layer as one
# bottleneck; under Zen-NAS's convention it is two, and the score would mean something else), as
# their registrations declare them.
CONVENTION_ONLY_PROXIES = {name: proxy_lib.get(name).convention for name in proxy_lib.analytic_names()
                           if proxy_lib.get(name).convention is not None}


class InvalidArchError(ValueError):
  """An architecture that is not a member of the space it is scored in.

  Attributes:
    structure: the offending structure string, as given.
    reasons: one sentence per problem (`MacroSpace.validate` or the grammar's).
  """

  def __init__(self, message: str, structure: str, reasons: Sequence[str]):
    super().__init__(message)
    self.structure = structure
    self.reasons = list(reasons)


def check_archs(space: MacroSpace, archs: Iterable[Arch | str], what: str = "architecture") -> list[Arch]:
  """Parses and validates every item; returns the `Arch` values in order.

  Args:
    space: the space they must belong to (budgets, layer limit, resolution).
    archs: `Arch` values or structure strings.
    what: how the message names an item (e.g. ``"--archs structure"``).

  Raises:
    InvalidArchError: for the first item that does not parse or is not in ``space``, with one
      sentence per reason; the item's position is given when there is more than one item.
  """
  items = list(archs)
  out = []
  for i, item in enumerate(items):
    text = item.structure if isinstance(item, Arch) else str(item)
    where = f"{what} {i + 1} of {len(items)}" if len(items) > 1 else what
    shown = text if len(text) <= 400 else text[:400] + "..."
    try:
      arch = item if isinstance(item, Arch) else space.parse(text)
    except macro.StructureError as e:
      raise InvalidArchError(f"{where} {shown!r} is malformed: {' '.join(e.reasons)}", text,
                             e.reasons) from None
    reasons = space.validate(arch)
    if reasons:
      raise InvalidArchError(f"{where} {shown!r} is not in the {space.name} space: "
                             f"{' '.join(reasons)}", text, reasons)
    out.append(arch)
  return out


def random_archs(space: MacroSpace, num_archs: int, seed: int, *, num_replaces: int = 1,
                 max_tries_per_arch: int = 200) -> list[Arch]:
  """``num_archs`` distinct valid architectures from a random walk of the space's mutation.

  Starting at the initial structure, each step mutates the last valid architecture
  (`MacroSpace.mutate`, Zen-NAS's random operator); a valid child that was not seen before is
  kept and becomes the walk's position, any other child is dropped. The initial structure itself
  is not among the results. The same ``(space, num_archs, seed)`` gives the same list, and a
  shorter list is a prefix of a longer one.

  Args:
    space: the space (its budgets decide validity).
    num_archs: how many to return, at least 1.
    seed: seeds the walk (``np.random.default_rng(seed)``).
    num_replaces: blocks mutated per step (Zen-NAS: 1, or 2 once the population exceeds 10).
    max_tries_per_arch: mutations allowed per wanted architecture before giving up.

  Returns:
    The architectures, in the order found.

  Raises:
    ValueError: for ``num_archs < 1``, or when the walk finds too few valid distinct children
      (e.g. a budget so tight that no mutation of the initial structure meets it).
  """
  if num_archs < 1:
    raise ValueError(f"the number of random architectures must be at least 1, got {num_archs}.")
  rng = np.random.default_rng(seed)
  current = space.initial_arch
  seen = {current}
  found: list[Arch] = []
  tries = 0
  while len(found) < num_archs:
    if tries >= max_tries_per_arch * num_archs:
      note = ("" if space.is_valid(space.initial_arch) else
              f" The initial structure itself is not valid: {' '.join(space.validate(space.initial_arch))}")
      raise SpaceError(f"found only {len(found)} of {num_archs} distinct valid {space.name} "
                       f"architectures in {tries} random mutations; loosen the budget or the "
                       f"layer limit, or ask for fewer.{note}")
    tries += 1
    child = space.mutate(current, rng, num_replaces)
    if child in seen or not space.is_valid(child):
      continue
    seen.add(child)
    found.append(child)
    current = child
  return found


def default_normalization(space: MacroSpace) -> str:
  """The normalisation of real images for ``space``: its own (`MacroSpace.normalization`)."""
  return space.normalization


def real_batch(images: data_lib.ImageSet, batch_size: int, seed: int, resolution: int,
               normalization: str) -> tuple[np.ndarray, np.ndarray]:
  """`scorer.real_batch`: ``batch_size`` images drawn with ``seed``, normalised."""
  return scorer_lib.real_batch(images, batch_size, seed, resolution, normalization)


MACRO_COSTS = ("params", "flops", "layers", "arch", "resolution", "convention")  # MacroSpace.costs
REPORTS_BLOCKS = False  # macro networks leave ModelOutput.blocks empty, which joint proxies read


class MacroScorer:
  """Scores macro architectures with registered proxies; one compile per (structure, proxy).

  A `scorer.Scorer`.

  Example:
    >>> space = macro_spaces.zen_cifar()
    >>> scorer = MacroScorer(["zen", "params"], space, batch_size=8, resolution=16)
    >>> scores = scorer.score(random_archs(scorer.space, 5, seed=0))   # {"zen": array(5), ...}

  Args:
    proxies: registry names.
    space: a `MacroSpace` or its name (``zen_cifar``, ``mobilenet_imagenet``, ``maedet_coco``).
    images: real images for proxies that want them (None: Gaussian images, random labels).
    batch_size: images per proxy batch.
    seed: seeds the init, the batch and the proxy keys.
    resolution: overrides the space's input size; the space is re-made with it, so budgets and
      the stride limit are checked at this size too.
    num_classes: overrides the space's classifier width (counted in params and FLOPs).
    scan: run identical sub-layers as one ``nn.scan`` (``macro_net``). Off by default: on a
      2-core CPU (zen_cifar, 32 px, batch 64, ``benchmarks/macro_proxies.py``) it compiled no
      faster than the unrolled network for 1 to 32 sub-layers (11.5 s against 11.4 s at 32) and
      ran grad_norm about 10x slower (its backward convolutions run inside a loop body).
    normalization: normalisation of real images (a key of `NORMALIZATIONS`); None picks
      `default_normalization`.
    cache_size: compiled (structure, proxy) functions kept.
    compiler_options: XLA options for every compile, e.g. ``{"xla_backend_optimization_level": 0}``
      (about half the compile time on a CPU, for tests; scores agree to float rounding).
    devices: spread distinct architectures over these devices (architecture i on device
      i mod D, one thread per device, so that their compiles and runs overlap); a compile is then
      per (structure, proxy, device). One device: everything runs there. None: the default device.

  Attributes:
    space: the space as scored (after the overrides).
    proxies, specs, devices, last_devices: as `scorer.Scorer` says.
    strategy: ``"scan"`` or ``"unrolled"``, for run records.
    trace_counts: ``{(structure, proxy): traces}``; 1 per distinct pair unless evicted.
    compile_seconds: ``{proxy: seconds}`` spent tracing and compiling, summed over structures.
    compile_seconds_by_arch: ``{(structure, proxy): seconds}`` of the last compile of each pair.

  Raises:
    ProxySpaceError: a proxy the space cannot serve (`proxies.check_for_space`: MAE-DET outside
      the maedet convention, AZ-NAS's block-reading proxies); a ValueError.
    ValueError: a bad batch size, cache size, resolution or class count.
    UnknownProxyError: an unknown proxy name.
    DataError: real images that do not fit the space (size, labels, count).
  """

  def __init__(self, proxies: Sequence[str], space: MacroSpace | str, *,
               images: data_lib.ImageSet | None = None, batch_size: int = 64, seed: int = 0,
               resolution: int | None = None, num_classes: int | None = None, scan: bool = False,
               normalization: str | None = None, cache_size: int = 256,
               compiler_options: dict | None = None, devices: Sequence[jax.Device] | None = None):
    if isinstance(space, str):
      space = macro_spaces.get_space(space)
    overrides = {k: v for k, v in (("resolution", resolution), ("num_classes", num_classes))
                 if v is not None}
    for name, value in overrides.items():
      if value < 1:
        raise ValueError(f"{name} must be at least 1, got {value}.")
    self.space = space.configure(**overrides) if overrides else space
    self.proxies = tuple(proxies)
    self.specs = [proxy_lib.get(p) for p in self.proxies]
    proxy_lib.check_for_space(self.proxies, MACRO_COSTS, self.space.name,
                              convention=self.space.convention, reports_blocks=REPORTS_BLOCKS)
    if batch_size < 1:
      raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
    if cache_size < 1:
      raise ValueError(f"cache_size must be at least 1, got {cache_size}.")
    self.batch_size = batch_size
    self.seed = seed
    self.scan = scan
    self.strategy = "scan" if scan else "unrolled"
    self.cache_size = cache_size
    self.compiler_options = dict(compiler_options) if compiler_options else None
    self.trace_counts: dict[tuple[str, str], int] = {}
    self.compile_seconds: dict[str, float] = {}
    self.compile_seconds_by_arch: dict[tuple[str, str], float] = {}
    self._fns: collections.OrderedDict[tuple, Callable] = collections.OrderedDict()
    self._lock = threading.Lock()  # the caches are shared by the per-device threads
    self._placed = bool(devices)  # given devices: inputs are put on them; else uncommitted
    self.devices = list(devices) if devices else [scorer_lib.default_device()]
    self.last_devices: list[str] = []
    self.normalization = normalization or default_normalization(self.space)
    classes = self.space.num_classes
    self._inputs = scorer_lib.ProxyInputs(
        batch_size=batch_size, resolution=self.space.resolution, num_classes=classes, seed=seed,
        images=images, normalization=self.normalization, network=f"the {self.space.name} network",
        labels_hint="; give images of that many classes or set num_classes")

  # --- building blocks (public for benchmarks) ---------------------------------------------------
  def model(self, arch: Arch) -> macro_net.MacroNetwork:
    """The network proxies score: ``arch`` without residual links."""
    return self.space.model(arch, no_reslink=True, scan=self.scan)

  def inputs(self, arch: Arch, proxy: str) -> tuple[dict, Batch, jax.Array]:
    """``(variables, batch, key)`` for ``proxy`` on ``arch``: a pure function of the seed.

    Float64 proxies get float64 variables and images; call (and compile) them under
    ``jax.enable_x64(True)`` (`scorer.precision`).
    """
    spec = proxy_lib.get(proxy)
    image_shape = (self.space.resolution, self.space.resolution, 3)
    base = macro_net.init_variables(self.model(arch), self._inputs.init_key, image_shape)
    variables, batch = self._inputs.cast(spec, self._inputs.initialise(base, spec.init),
                                         self._inputs.batch(spec))
    return variables, batch, self._inputs.key(spec)

  def compiled(self, arch: Arch, proxy: str, variables: dict, batch: Batch, key: jax.Array,
               device: jax.Device | None = None) -> Callable:
    """The compiled ``(variables, images, labels, key) -> score`` of ``proxy`` on ``arch``.

    Taken from the cache, or traced and compiled ahead of time for the shapes of the given
    inputs (timed into ``compile_seconds``). Float64 proxies must be compiled and called under
    ``jax.enable_x64(True)``.
    """
    cache_key = (arch, proxy, None if device is None else device.id)
    with self._lock:
      fn = self._fns.get(cache_key)
      if fn is not None:
        self._fns.move_to_end(cache_key)
        return fn
    spec = proxy_lib.get(proxy)
    apply_fn = macro_net.make_apply_fn(self.model(arch))
    count_key = (arch.structure, proxy)

    def one(variables, images, labels, key):
      with self._lock:
        self.trace_counts[count_key] = self.trace_counts.get(count_key, 0) + 1
      return spec.fn(apply_fn, variables, Batch(images, labels), key)

    start = time.perf_counter()
    lowered = jax.jit(one).lower(variables, batch.images, batch.labels, key)
    fn = lowered.compile(self.compiler_options)
    seconds = time.perf_counter() - start
    with self._lock:
      self.compile_seconds[proxy] = self.compile_seconds.get(proxy, 0.0) + seconds
      self.compile_seconds_by_arch[count_key] = seconds
      self._fns[cache_key] = fn
      while len(self._fns) > self.cache_size:
        self._fns.popitem(last=False)
    return fn

  def clear_cache(self) -> None:
    """Drops every compiled function (their memory goes with them)."""
    self._fns.clear()

  # --- public ------------------------------------------------------------------------------------
  def check(self, archs: Iterable[Arch | str]) -> list[Arch]:
    """`check_archs` against this scorer's space."""
    return check_archs(self.space, archs)

  def score(self, archs: Sequence[Arch | str],
            progress: Callable[[int, str], None] | None = None) -> dict[str, np.ndarray]:
    """Scores ``archs`` with every proxy; returns {proxy: float64 array in the order of archs}.

    Every proxy finishes every architecture before the next proxy starts (in the order given).
    A structure listed twice is scored once per call and compiled once per scorer. The scores
    stay on the devices until one fetch at the end of the call.

    Args:
      archs: `Arch` values or structure strings, all in the space.
      progress: called as ``progress(count, proxy)``: ``count`` (architecture, proxy) scores of
        ``proxy`` just finished; ``count`` 0 when ``proxy`` starts.

    Raises:
      InvalidArchError: before any scoring, for the first architecture not in the space.
    """
    archs = self.check(archs)
    distinct = list(dict.fromkeys(archs))
    rows = {a: [] for a in distinct}
    for i, a in enumerate(archs):
      rows[a].append(i)
    pending = scorer_lib.PendingScores(len(archs))
    for spec in self.specs:
      if spec.kind == proxy_lib.ANALYTIC:
        pending.add(spec.name, slice(None), scorer_lib.score_analytic(spec, self.space.costs, archs))
        if progress:
          progress(len(archs), spec.name)
        continue
      if progress:
        progress(0, spec.name)
      with scorer_lib.precision(spec):
        done = self._score_one_proxy(spec, distinct)
      for arch, value in done.items():
        pending.add(spec.name, np.asarray(rows[arch]), value)
      if progress:
        jax.block_until_ready(pending.values(spec.name))
        progress(len(archs), spec.name)
    if any(spec.kind == proxy_lib.NETWORK for spec in self.specs):
      where = {a: scorer_lib.device_name(self.devices[i % len(self.devices)])
               for i, a in enumerate(distinct)}
      self.last_devices = [where[a] for a in archs]
    else:
      self.last_devices = ["host"] * len(archs)
    return pending.fetch(self.proxies)

  def _score_one_proxy(self, spec: ProxySpec, distinct: list[Arch]) -> dict[Arch, jax.Array]:
    """``{arch: score on its device}``; architecture i on device i mod D."""
    if len(self.devices) > 1:
      return self._score_on_devices(spec, distinct)
    device = self.devices[0] if self._placed else None
    return {a: self._score_arch(spec, a, device) for a in distinct}

  def _score_arch(self, spec: ProxySpec, arch: Arch, device: jax.Device | None) -> jax.Array:
    variables, batch, key = self.inputs(arch, spec.name)
    if device is not None:
      variables, batch, key = jax.device_put((variables, batch, key), device)
    fn = self.compiled(arch, spec.name, variables, batch, key, device)
    return fn(variables, batch.images, batch.labels, key)

  def _score_on_devices(self, spec: ProxySpec, archs: list[Arch]) -> dict[Arch, jax.Array]:
    """Architecture i on device i mod D, one thread per device: compiles and runs side by side."""
    shares = [(d, archs[i::len(self.devices)]) for i, d in enumerate(self.devices)]

    def work(device, share):
      with scorer_lib.precision(spec):  # the x64 switch is per thread
        return {a: self._score_arch(spec, a, device) for a in share}

    done: dict[Arch, jax.Array] = {}
    with concurrent.futures.ThreadPoolExecutor(len(self.devices)) as pool:
      for result in pool.map(lambda item: work(*item), shares):
        done.update(result)
    return done
