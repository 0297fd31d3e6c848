"""The scoring harness: many NAS-Bench-201 cells, many proxies, one compiled function per proxy.

Strategies (``strategy=``):

* ``"masked_vmap"``: the masked network, ``jax.vmap``-ed over chunks of ``chunk_size`` cells (the
  last chunk is padded), so every chunk reuses one executable. The fast path on accelerators.
* ``"switch"``: the ``lax.switch`` network (``spaces/nb201_switch.py``) that computes only each
  edge's chosen op, one cell per call of one jitted function. The fast path on a CPU, where the
  masked network pays for all five ops on every edge (``notes/xla-cpu-scoring.md``).
* ``"masked"``: the masked network, one cell per call, no vmap.
* ``"auto"`` (default): ``switch`` on a CPU backend, ``masked_vmap`` elsewhere.

Over several devices (``mesh=``, e.g. `cell_mesh()` of every device, simulated CPU devices
included), each call takes ``chunk_size`` cells per device, sharded over the mesh's ``cells``
axis, through ``jax.shard_map``: ``masked_vmap`` vmaps each device's cells, ``switch`` maps over
them with ``lax.map``, so every switch stays a real branch. Variables, images and keys are replicated; the scores come back sharded over ``cells``
and are unpadded on the host.

Whatever the strategy, the cell is an array argument, never a static one, so the number of cells
never changes the number of compiles. Variables are initialised once per init kind from the seed,
so a cell's score does not depend on which other cells are scored with it.
"""

from __future__ import annotations

import dataclasses
import time
import zlib
from typing import Callable, Iterable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from rznas_jax import data as data_lib
from rznas_jax import proxies as proxy_lib  # registers every proxy
from rznas_jax.proxies.base import Batch
from rznas_jax.spaces import nb201
from rznas_jax.spaces import nb201_net

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

  COSTS = ("params", "flops")  # what `costs` counts, for analytic proxies

  def costs(self, arch: nb201.Arch) -> dict[str, float]:
    kw = dict(channels=self.channels, cells_per_stage=self.cells_per_stage, num_classes=self.num_classes)
    return {"params": float(nb201.count_params(arch, **kw)),
            "flops": float(nb201.count_flops(arch, resolution=self.resolution, **kw))}


def resolve_strategy(strategy: str) -> str:
  if strategy not in STRATEGIES:
    raise ValueError(f"unknown strategy {strategy!r}; valid: {', '.join(STRATEGIES)}.")
  if strategy == "auto":
    return "switch" if jax.default_backend() == "cpu" else "masked_vmap"
  return strategy


def gaussian_init(variables: dict, key: jax.Array) -> dict:
  """Zen-NAS's ``network_weight_gaussian_init``: conv/linear weights N(0,1), biases 0, BN 1/0."""
  rng = np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel())

  def fill(path, leaf):
    name = path[-1].key
    if name == "kernel":
      return jnp.asarray(rng.standard_normal(leaf.shape).astype(np.float32))
    return jnp.ones_like(leaf) if name == "scale" else jnp.zeros_like(leaf)

  return {**variables, "params": jax.tree_util.tree_map_with_path(fill, variables["params"])}


def kaiming_init(variables: dict, key: jax.Array) -> dict:
  """AZ-NAS's ``kaiming_normal_fanin_init``: conv/linear weights N(0, 2/fan_in), biases 0, BN 1/0.

  ``fan_in`` is the product of a kernel's dimensions but the last (HWIO, or (in, out) for a dense
  layer): PyTorch's ``kaiming_normal_(mode='fan_in', nonlinearity='relu')``.
  """
  rng = np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel())

  def fill(path, leaf):
    name = path[-1].key
    if name == "kernel":
      std = np.sqrt(2.0 / np.prod(leaf.shape[:-1]))
      return jnp.asarray((rng.standard_normal(leaf.shape) * std).astype(np.float32))
    return jnp.ones_like(leaf) if name == "scale" else jnp.zeros_like(leaf)

  return {**variables, "params": jax.tree_util.tree_map_with_path(fill, variables["params"])}


def call_group(group, apply_fn, variables: dict, batch: Batch, key: jax.Array) -> tuple:
  """Every proxy of ``group`` (specs) on one network; a joint function runs once for all its proxies.

  Each proxy gets ``fold_in(key, crc32(name))``; a joint function ``fold_in(key, crc32(its name))``.
  """
  joint_values: dict = {}
  out = []
  for spec in group:
    if spec.joint is None:
      out.append(spec.fn(apply_fn, variables, batch, jax.random.fold_in(key, zlib.crc32(spec.name.encode()))))
      continue
    if spec.joint not in joint_values:
      salt = zlib.crc32(spec.joint.__name__.encode())
      joint_values[spec.joint] = spec.joint(apply_fn, variables, batch, jax.random.fold_in(key, salt))
    out.append(joint_values[spec.joint][spec.name])
  return tuple(out)


class NB201Scorer:
  """Scores NAS-Bench-201 cells with registered proxies through one compiled function each.

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
    chunk_size: cells per vmapped call (``masked_vmap`` only).
    fuse: compile the proxies that share init, batch and dtype into one function, so that XLA
      computes their common work (forward pass, loss gradient) once. Scores are unchanged.
    mesh: score ``chunk_size`` cells per device per call, sharded over this mesh's ``cells``
      axis (`cell_mesh`); None: one device.
    prune: on the switch form, score `nb201.prune_dead_edges` of each cell for proxies whose
      score cannot see dead edges (same score, less work).
  """

  def __init__(self, proxies: Sequence[str], setting: NB201Setting = NB201Setting(), *,
               images: data_lib.ImageSet | None = None, batch_size: int = 64, seed: int = 0,
               strategy: str = "auto", chunk_size: int = 8, fuse: bool = True,
               mesh: jax.sharding.Mesh | None = None, prune: bool = True):
    self.specs = [proxy_lib.get(p) for p in proxies]
    for spec in self.specs:
      proxy_lib.base.check_costs(spec, NB201Setting.COSTS, "nb201")
    self.prune = prune
    if mesh is not None and (mesh.axis_names != (CELL_AXIS,)):
      raise ValueError(f"the mesh must have the one axis {CELL_AXIS!r}, not {mesh.axis_names}; "
                       "make it with scoring.cell_mesh().")
    if mesh is not None and resolve_strategy(strategy) == "masked":
      raise ValueError("strategy 'masked' scores one cell per call; with a mesh use switch or "
                       "masked_vmap.")
    self.mesh = mesh
    self.setting = setting
    self.strategy = resolve_strategy(strategy)
    if chunk_size < 1:
      raise ValueError(f"chunk_size must be at least 1, got {chunk_size}.")
    self.chunk_size = chunk_size
    self.fuse = fuse
    self.seed = seed
    self.trace_counts: dict[str, int] = {}
    self.compile_seconds: dict[str, float] = {}
    root = jax.random.key(seed)
    self._init_key, self._gauss_key, self._proxy_key = jax.random.split(root, 3)
    self._kaiming_key = jax.random.fold_in(self._init_key, 1)  # a fourth purpose, old keys kept
    gx, gy = data_lib.gaussian_batch(batch_size, setting.resolution, setting.num_classes, seed)
    self._batches = {"gaussian": Batch(jnp.asarray(gx), jnp.asarray(gy))}
    if images is not None:
      rx, ry = data_lib.real_batch(images, batch_size, seed, setting.dataset, setting.resolution)
      if ry.max() >= setting.num_classes:
        raise data_lib.DataError(
            f"the data has label {int(ry.max())}, but {setting.dataset} has {setting.num_classes} classes.")
      self._batches["real"] = Batch(jnp.asarray(rx), jnp.asarray(ry))
    else:
      self._batches["real"] = self._batches["gaussian"]
    self._variables: dict[str, dict] = {}
    self._fns: dict[str, Callable] = {}
    self.last_output_sharding = None

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

  def _groups(self):
    """Network proxies grouped by what they share (init, batch, dtype) when ``fuse`` is on.

    A group is traced into one XLA program, whose common subexpressions (the forward pass, the
    same loss gradient for grad_norm and snip, ...) XLA computes once.
    """
    groups: dict[tuple, list] = {}
    for spec in self.specs:
      if spec.data == "none":
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
      base = nb201_net.init_variables(self.setting.model(None), self._init_key, image_shape)
      self._variables = {"pytorch": base, "gaussian": gaussian_init(base, self._gauss_key),
                         "kaiming": kaiming_init(base, self._kaiming_key)}
    return self._variables[init]

  def _inputs(self, spec):
    variables = self.variables(spec.init)
    batch = self._batches["real" if spec.data == "real" else "gaussian"]
    if spec.dtype == "float64":
      variables = jax.tree.map(lambda a: a.astype(jnp.float64), variables)
      batch = Batch(batch.images.astype(jnp.float64), batch.labels)
    return variables, batch

  # --- public ------------------------------------------------------------------------------------
  def score(self, archs: Sequence[nb201.Arch],
            progress: Callable[[int, str], None] | None = None) -> dict[str, np.ndarray]:
    """Scores ``archs`` with every proxy; returns {proxy: float64 array in the order of archs}.

    Args:
      archs: the cells.
      progress: called as ``progress(count, label)``: ``count`` (cell, proxy) scores of ``label``
        (a proxy, or fused proxies "a+b") just finished; ``count`` 0 when ``label`` starts.
        Analytic proxies come first, then the network groups, not the order of the proxies.
    """
    archs = list(archs)
    out = {}
    for spec in self.specs:
      if spec.data == "none":
        out[spec.name] = np.array([spec.fn(self.setting.costs(a)) for a in archs], np.float64)
        if progress:
          progress(len(archs), spec.name)
    for group in self._groups():
      with jax.enable_x64(group[0].dtype == "float64"):
        out.update(self._score_group(group, archs, progress))
    return {spec.name: out[spec.name] for spec in self.specs}

  def _score_group(self, group, archs, progress):
    fn = self._compiled(group)
    label = "+".join(spec.name for spec in group)
    if progress:
      progress(0, label)  # names the group while it compiles and scores its first chunk
    variables, batch = self._inputs(group[0])
    if self.prune and self.strategy == "switch" and all(spec.dead_edge_exact for spec in group):
      archs = [nb201.prune_dead_edges(a) for a in archs]  # same scores, less work
    one_hots = np.stack([a.one_hot() for a in archs]) if archs else np.zeros((0, 6, 5), np.float32)
    scores = np.zeros((len(group), len(archs)), np.float64)
    step = self.cells_per_call
    if self.mesh is not None:
      replicated = jax.sharding.NamedSharding(self.mesh, jax.P())
      variables, batch, key = jax.device_put((variables, batch, self._proxy_key), replicated)
      cells = jax.sharding.NamedSharding(self.mesh, jax.P(CELL_AXIS))
    else:
      key = self._proxy_key
    for start in range(0, len(archs), step):
      chunk = one_hots[start:start + step]
      n = len(chunk)
      if step > 1 or self.mesh is not None:
        if n < step:  # pad to the compiled size with copies of the last cell
          chunk = np.concatenate([chunk, np.repeat(chunk[-1:], step - n, 0)])
        arg = jax.device_put(chunk, cells) if self.mesh is not None else jnp.asarray(chunk)
      else:
        arg = jnp.asarray(chunk[0])
      first = label not in self.compile_seconds
      t0 = time.perf_counter()
      values = jax.block_until_ready(fn(variables, batch.images, batch.labels, key, arg))
      self.last_output_sharding = getattr(values[0], "sharding", None)
      if first:
        self.compile_seconds[label] = time.perf_counter() - t0
      for i, value in enumerate(values):
        scores[i, start:start + n] = np.reshape(np.asarray(value), -1)[:n]
      if progress:
        progress(n * len(group), label)
    return {spec.name: scores[i] for i, spec in enumerate(group)}
