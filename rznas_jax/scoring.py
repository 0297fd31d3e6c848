"""The scoring harness: many NAS-Bench-201 cells, many proxies, one compiled function per proxy.

Strategies (``strategy=``):

* ``"masked_vmap"``: the masked network, ``jax.vmap``-ed over chunks of ``chunk_size`` cells (the
  last chunk is padded), so every chunk reuses one executable. The fast path on accelerators.
* ``"switch"``: the ``lax.switch`` network (``spaces/nb201_switch.py``) that computes only each
  edge's chosen op, one cell per call of one jitted function. The fast path on a CPU, where the
  masked network pays for all five ops on every edge (docs/scoring.md, XLA:CPU).
* ``"masked"``: the masked network, one cell per call, no vmap.
* ``"auto"`` (default): ``switch`` on a CPU backend, ``masked_vmap`` elsewhere.

Over several devices (``devices=``, e.g. ``jax.local_devices()`` on each host of a pod, or
``mesh=``, a `cell_mesh`; simulated CPU devices included), each call takes ``chunk_size`` cells
per device, sharded over the mesh's ``cells`` axis, through ``jax.shard_map``: ``masked_vmap``
vmaps each device's cells, ``switch`` maps over them with ``lax.map``, so every switch stays a
real branch. Variables, images and keys are replicated; the scores stay sharded over ``cells`` on
the devices until one fetch per ``score`` call, and are unpadded on the host. ``last_devices``
says which device scored each cell.

Whatever the strategy, the cell is an array argument, never a static one, so the number of cells
never changes the number of compiles. Variables are initialised once per init kind from the seed,
so a cell's score does not depend on which other cells are scored with it. Batches, keys,
initialisations and the float64 cast are the shared scoring core's (`rznas_jax.scorer`);
`NB201Scorer` implements its `Scorer` protocol.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from rznas_jax import data as data_lib
from rznas_jax import proxies as proxy_lib  # registers every proxy
from rznas_jax import scorer as scorer_lib
from rznas_jax.proxies.base import Batch
# Re-exported: the initialisations live in the shared core.
from rznas_jax.scorer import gaussian_init, kaiming_init  # pylint: disable=unused-import
from rznas_jax.spaces import nb201
from rznas_jax.spaces import nb201_net
from rznas_jax.spaces.nb201_space import NB201Space

STRATEGIES = ("auto", "switch", "masked_vmap", "masked")
CELL_AXIS = "cells"


def cell_mesh(devices: Sequence[jax.Device] | None = None) -> jax.sharding.Mesh:
  """A 1-D mesh named `CELL_AXIS` over ``devices`` (default: every device of every process)."""
  devices = list(devices) if devices is not None else jax.devices()
  return jax.make_mesh((len(devices),), (CELL_AXIS,), axis_types=(jax.sharding.AxisType.Explicit,),
                       devices=devices)


@dataclasses.dataclass(frozen=True)
class NB201Setting:
  """The network the cells are scored in (NAS-Bench-201 defaults: C=16, N=5)."""

  dataset: str = "cifar10"
  channels: int = 16
  cells_per_stage: int = 5

  def __post_init__(self):
    if self.dataset not in nb201.DATASET_SHAPES:
      raise ValueError(f"unknown dataset {self.dataset!r}; valid: {', '.join(nb201.DATASET_SHAPES)}.")

  @property
  def resolution(self) -> int:
    return nb201.DATASET_SHAPES[self.dataset][0]

  @property
  def num_classes(self) -> int:
    return nb201.DATASET_SHAPES[self.dataset][1]

  def model(self, arch: nb201.Arch | None = None) -> nb201_net.NB201Network:
    return nb201_net.NB201Network(arch, self.channels, self.cells_per_stage, self.num_classes)

  COSTS = NB201Space.COST_KEYS  # what `costs` counts, for analytic proxies

  def costs(self, arch: nb201.Arch) -> dict[str, float]:
    """The space's exact counters (`NB201Space.costs`) for this network."""
    return NB201Space(self.dataset, self.channels, self.cells_per_stage).costs(arch)


def resolve_strategy(strategy: str) -> str:
  if strategy not in STRATEGIES:
    raise ValueError(f"unknown strategy {strategy!r}; valid: {', '.join(STRATEGIES)}.")
  if strategy == "auto":
    return "switch" if jax.default_backend() == "cpu" else "masked_vmap"
  return strategy


def call_group(group, apply_fn, variables: dict, batch: Batch, key: jax.Array) -> tuple:
  """Every proxy of ``group`` (specs) on one network; a joint function runs once for all its proxies.

  Each proxy gets ``fold_in(key, crc32(name))``; a joint function ``fold_in(key, crc32(its name))``.
  """
  joint_values: dict = {}
  out = []
  for spec in group:
    if spec.joint is None:
      out.append(spec.fn(apply_fn, variables, batch, scorer_lib.proxy_key(key, spec.name)))
      continue
    if spec.joint not in joint_values:
      joint_values[spec.joint] = spec.joint(apply_fn, variables, batch,
                                            scorer_lib.proxy_key(key, spec.joint.__name__))
    out.append(joint_values[spec.joint][spec.name])
  return tuple(out)


class NB201Scorer:
  """Scores NAS-Bench-201 cells with registered proxies through one compiled function each.

  A `scorer.Scorer`.

  Example:
    >>> scorer = NB201Scorer(["synflow", "naswot"], NB201Setting(channels=4, cells_per_stage=1))
    >>> scores = scorer.score(nb201.random_archs(10, seed=0))   # {"synflow": array(10), ...}

  Args:
    proxies: registry names.
    setting: the network.
    images: real images for proxies that want them (None: Gaussian images, random labels).
    batch_size: images per proxy batch.
    seed: seeds the init, the batch and the proxy keys.
    strategy: see the module docstring.
    chunk_size: cells per vmapped call (``masked_vmap``), or per device and call over a mesh.
    fuse: compile the proxies that share init, batch and dtype into one function, so that XLA
      computes their common work (forward pass, loss gradient) once. Scores are unchanged.
    mesh: score ``chunk_size`` cells per device per call, sharded over this mesh's ``cells``
      axis (`cell_mesh`); None: as ``devices`` says.
    prune: on the switch form, score `nb201.prune_dead_edges` of each cell for proxies whose
      score cannot see dead edges (same score, less work).
    devices: the devices to score on: several make a `cell_mesh` of exactly these (e.g.
      ``jax.local_devices()``, so each host of a pod scores on every chip it has), one is used
      alone; None: the mesh if given, else the default device.

  Attributes:
    proxies, specs, devices, compile_seconds, last_devices: as `scorer.Scorer` says.
    trace_counts: ``{proxy: traces}``; 1 per proxy whatever the number of cells.
    last_output_sharding: the sharding of the last call's scores.

  Raises:
    ProxySpaceError: a proxy that cannot run in NB201 (`proxies.check_for_space`).
    UnknownProxyError: an unknown proxy name.
    ValueError: a bad strategy, chunk size, mesh or device list.
    DataError: real images that do not fit the setting (size, labels, count).
  """

  def __init__(self, proxies: Sequence[str], setting: NB201Setting = NB201Setting(), *,
               images: data_lib.ImageSet | None = None, batch_size: int = 64, seed: int = 0,
               strategy: str = "auto", chunk_size: int = 8, fuse: bool = True,
               mesh: jax.sharding.Mesh | None = None, prune: bool = True,
               devices: Sequence[jax.Device] | None = None):
    self.proxies = tuple(proxies)
    self.specs = [proxy_lib.get(p) for p in self.proxies]
    proxy_lib.check_for_space(self.proxies, NB201Setting.COSTS, "nb201")
    self.prune = prune
    self.strategy = resolve_strategy(strategy)
    if mesh is not None and devices is not None:
      raise ValueError("give the scorer devices or a mesh, not both (a mesh names its devices).")
    if mesh is not None and (mesh.axis_names != (CELL_AXIS,)):
      raise ValueError(f"the mesh must have the one axis {CELL_AXIS!r}, not {mesh.axis_names}; "
                       "make it with scoring.cell_mesh().")
    if devices is not None:
      devices = list(devices)
      if not devices:
        raise ValueError("the device list is empty; give at least one device, or None for the "
                         "default device.")
      if len(devices) > 1:
        mesh = cell_mesh(devices)
    if mesh is not None and self.strategy == "masked":
      raise ValueError("strategy 'masked' scores one cell per call; on several devices use switch "
                       "or masked_vmap.")
    self.mesh = mesh
    self.devices = (list(mesh.devices.flat) if mesh is not None
                    else devices if devices is not None else [scorer_lib.default_device()])
    self._device = devices[0] if devices is not None and mesh is None else None  # committed
    self.setting = setting
    if chunk_size < 1:
      raise ValueError(f"chunk_size must be at least 1, got {chunk_size}.")
    self.chunk_size = chunk_size
    self.fuse = fuse
    self.seed = seed
    self.trace_counts: dict[str, int] = {}
    self.compile_seconds: dict[str, float] = {}
    self._inputs = scorer_lib.ProxyInputs(
        batch_size=batch_size, resolution=setting.resolution, num_classes=setting.num_classes,
        seed=seed, images=images, normalization=setting.dataset, network=setting.dataset,
        size_remedy="another dataset")
    self._inputs.gaussian()
    self._batches = self._inputs.batches  # {"gaussian", and "real" with images}
    self._proxy_key = self._inputs.proxy_key
    self._variables: dict[str, dict] = {}
    self._fns: dict[str, Callable] = {}
    self.last_output_sharding = None
    self.last_devices: list[str] = []

  # --- compiled functions, one per group of proxies -----------------------------------------------
  def _apply_factory(self):
    model = self.setting.model(None)
    if self.strategy == "switch":
      from rznas_jax.spaces import nb201_switch  # pylint: disable=g-import-not-at-top
      return lambda one_hot: nb201_switch.make_apply_fn(self.setting, jnp.argmax(one_hot, -1))
    return lambda one_hot: nb201_net.make_apply_fn(model, one_hot)

  def _compiled(self, group):
    """One jitted function computing every proxy of ``group`` (a tuple of specs) for one cell."""
    names = tuple(spec.name for spec in group)
    if names in self._fns:
      return self._fns[names]
    make_apply = self._apply_factory()

    def one(variables, images, labels, key, one_hot):
      for n in names:
        self.trace_counts[n] = self.trace_counts.get(n, 0) + 1
      return call_group(group, make_apply(one_hot), variables, Batch(images, labels), key)

    if self.mesh is not None:
      fn = self._sharded(one)
    elif self.strategy == "masked_vmap":
      fn = jax.jit(jax.vmap(one, in_axes=(None, None, None, None, 0)))
    else:
      fn = jax.jit(one)
    self._fns[names] = fn
    return fn

  def _sharded(self, one):
    """``one`` over a (devices * chunk_size, 6, 5) batch of cells sharded over the mesh."""
    cells = jax.sharding.NamedSharding(self.mesh, jax.P(CELL_AXIS))

    def local(variables, images, labels, key, one_hots):  # this device's cells
      if self.strategy == "masked_vmap":
        return jax.vmap(one, in_axes=(None, None, None, None, 0))(variables, images, labels, key,
                                                                  one_hots)
      return jax.lax.map(lambda c: one(variables, images, labels, key, c), one_hots)  # real branches

    mapped = jax.shard_map(local, mesh=self.mesh, in_specs=(jax.P(),) * 4 + (jax.P(CELL_AXIS),),
                           out_specs=jax.P(CELL_AXIS), check_vma=False)
    return jax.jit(mapped, out_shardings=cells)

  @property
  def cells_per_call(self) -> int:
    """Cells one call of a compiled function scores."""
    if self.mesh is not None:
      return self.chunk_size * self.mesh.size
    return self.chunk_size if self.strategy == "masked_vmap" else 1

  def _row_devices(self) -> list[str]:
    """The `scorer.device_name` of the device that scores each row of one call's cells."""
    step = self.cells_per_call
    if self.mesh is None:
      return [scorer_lib.device_name(self.devices[0])] * step
    sharding = jax.sharding.NamedSharding(self.mesh, jax.P(CELL_AXIS))
    rows = [""] * step
    for device, index in sharding.devices_indices_map((step, nb201.NUM_EDGES, len(nb201.OPS))).items():
      for row in range(step)[index[0]]:
        rows[row] = scorer_lib.device_name(device)
    return rows

  def _groups(self):
    """Network proxies grouped by what they share (init, batch, dtype) when ``fuse`` is on.

    A group is traced into one XLA program, whose common subexpressions (the forward pass, the
    same loss gradient for grad_norm and snip, ...) XLA computes once.
    """
    groups: dict[tuple, list] = {}
    for spec in self.specs:
      if spec.kind == proxy_lib.ANALYTIC:
        continue
      data = "real" if spec.data == "real" else "gaussian"
      # On the switch form a pruned cell costs less, so proxies that allow pruning are not fused
      # with those that do not.
      prunable = self.prune and self.strategy == "switch" and spec.dead_edge_exact
      key = (spec.init, data, spec.dtype, prunable) if self.fuse else (spec.name,)
      groups.setdefault(key, []).append(spec)
    return [tuple(g) for g in groups.values()]

  def variables(self, init: str) -> dict:
    """The masked network's variables for ``init`` (`proxies.base.INITS`), made on first use."""
    if not self._variables:
      image_shape = (self.setting.resolution, self.setting.resolution, 3)
      base = nb201_net.init_variables(self.setting.model(None), self._inputs.init_key, image_shape)
      self._variables = {kind: self._inputs.initialise(base, kind) for kind in proxy_lib.base.INITS}
    return self._variables[init]

  # --- public ------------------------------------------------------------------------------------
  def score(self, archs: Sequence[nb201.Arch],
            progress: Callable[[int, str], None] | None = None) -> dict[str, np.ndarray]:
    """Scores ``archs`` with every proxy; returns {proxy: float64 array in the order of archs}.

    The scores stay on the devices until one fetch at the end of the call.

    Args:
      archs: the cells.
      progress: called as ``progress(count, label)``: ``count`` (cell, proxy) scores of ``label``
        (a proxy, or fused proxies "a+b") just finished; ``count`` 0 when ``label`` starts.
        Analytic proxies come first, then the network groups, not the order of the proxies.
        With it, each call of a compiled function is waited for before it is counted.
    """
    archs = list(archs)
    pending = scorer_lib.PendingScores(len(archs))
    for spec in self.specs:
      if spec.kind == proxy_lib.ANALYTIC:
        pending.add(spec.name, slice(None), scorer_lib.score_analytic(spec, self.setting.costs, archs))
        if progress:
          progress(len(archs), spec.name)
    groups = self._groups()
    for group in groups:
      with scorer_lib.precision(group[0]):
        self._score_group(group, archs, pending, progress)
    rows = self._row_devices() if groups else ["host"]
    self.last_devices = [rows[i % len(rows)] for i in range(len(archs))]
    return pending.fetch(self.proxies)

  def _place(self, tree):
    """``tree`` on the one device the scorer was given (uncommitted without one)."""
    return tree if self._device is None else jax.device_put(tree, self._device)

  def _score_group(self, group, archs, pending: scorer_lib.PendingScores, progress):
    fn = self._compiled(group)
    label = "+".join(spec.name for spec in group)
    if progress:
      progress(0, label)  # names the group while it compiles and scores its first chunk
    variables, batch = self._inputs.cast(group[0], self.variables(group[0].init),
                                         self._inputs.batch(group[0]))
    if self.prune and self.strategy == "switch" and all(spec.dead_edge_exact for spec in group):
      archs = [nb201.prune_dead_edges(a) for a in archs]  # same scores, less work
    one_hots = np.stack([a.one_hot() for a in archs]) if archs else np.zeros((0, 6, 5), np.float32)
    step = self.cells_per_call
    if self.mesh is not None:
      replicated = jax.sharding.NamedSharding(self.mesh, jax.P())
      variables, batch, key = jax.device_put((variables, batch, self._inputs.proxy_key), replicated)
      cells = jax.sharding.NamedSharding(self.mesh, jax.P(CELL_AXIS))
    else:
      variables, batch, key = self._place((variables, batch, self._inputs.proxy_key))
    for start in range(0, len(archs), step):
      chunk = one_hots[start:start + step]
      n = len(chunk)
      if step > 1 or self.mesh is not None:
        if n < step:  # pad to the compiled size with copies of the last cell
          chunk = np.concatenate([chunk, np.repeat(chunk[-1:], step - n, 0)])
        arg = jax.device_put(chunk, cells) if self.mesh is not None else self._place(jnp.asarray(chunk))
      else:
        arg = self._place(jnp.asarray(chunk[0]))
      first = label not in self.compile_seconds
      t0 = time.perf_counter()
      values = fn(variables, batch.images, batch.labels, key, arg)
      if first or progress:  # the first call is timed; a progress bar counts finished work
        jax.block_until_ready(values)
      self.last_output_sharding = getattr(values[0], "sharding", None)
      if first:
        self.compile_seconds[label] = time.perf_counter() - t0
      for spec, value in zip(group, values):
        pending.add(spec.name, slice(start, start + n), value)
      if progress:
        progress(n * len(group), label)
