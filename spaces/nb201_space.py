"""NAS-Bench-201 as a `Space`: six edges, five operations, 15,625 cells (Dong & Yang, ICLR 2020).

Settings: ``dataset`` (the network's classes and input size: cifar10, cifar100,
imagenet16-120), ``channels`` and ``cells_per_stage`` (NAS-Bench-201: 16 and 5). Scoring options:
``strategy`` (how the cells are compiled, `rznas_jax.scoring.STRATEGIES`) and ``chunk_size``
(cells per vmapped call). The ground truth is the NATS-Bench table packaged with rznas_jax.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np

from rznas_jax.spaces import nb201
from rznas_jax.spaces import reply_format
from rznas_jax.spaces.base import Operation, ReplyFormat, SpaceError, source_of

_TEXT = {
    "none": "outputs zeros: the edge is cut and passes no information.",
    "skip_connect": "the identity: passes the input unchanged (no parameters).",
    "nor_conv_1x1": "ReLU, 1×1 convolution (C→C, no bias), batch norm.",
    "nor_conv_3x3": "ReLU, 3×3 convolution (C→C, padding 1, no bias), batch norm.",
    "avg_pool_3x3": "3×3 average pooling, stride 1, padding 1, padded pixels not counted.",
}


@dataclasses.dataclass(frozen=True)
class NB201Space(ReplyFormat):
  """The NAS-Bench-201 cell space.

  Attributes:
    dataset: the benchmark dataset the network is built for (classes and input size).
    channels, cells_per_stage: the network (NAS-Bench-201: 16 and 5).
  """
  dataset: str = "cifar10"
  channels: int = 16
  cells_per_stage: int = 5

  name = "nb201"
  size = nb201.NUM_ARCHS
  SETTINGS = ("dataset", "channels", "cells_per_stage")
  SCORING_OPTIONS = ("strategy", "chunk_size")
  NETWORK_OPTIONS = ()
  CONFIG_SECTION = "nb201"
  COST_KEYS = ("params", "flops")

  def __post_init__(self):
    if self.dataset not in nb201.DATASET_SHAPES:
      raise SpaceError(f"dataset {self.dataset!r} is not an NB201 dataset; valid: "
                       f"{', '.join(nb201.DATASET_SHAPES)}.")
    for name in ("channels", "cells_per_stage"):
      if int(getattr(self, name)) < 1:
        raise SpaceError(f"{name} is {getattr(self, name)}; it must be at least 1.")

  def configure(self, **settings: Any) -> "NB201Space":
    return dataclasses.replace(self, **{k: v for k, v in settings.items() if v is not None})

  # --- genotypes ---------------------------------------------------------------------------------

  def parse(self, genotype: str) -> nb201.Arch:
    return nb201.parse_genotype(genotype)

  def canonical(self, arch: nb201.Arch) -> str:
    return arch.genotype

  def check(self, genotype: str) -> tuple[str | None, list[str]]:
    try:
      return nb201.parse_genotype(genotype).genotype, []
    except nb201.GenotypeError as e:
      return None, [str(e)]

  def archs(self, spec: str, seed: int) -> list[nb201.Arch]:
    """``all``, ``random:N`` (N distinct cells drawn with ``seed``) or
    comma-separated genotypes."""
    text = spec.strip()
    if text == "all":
      return nb201.all_archs()
    if text.startswith("random:"):
      count = text[len("random:"):].strip()
      if not count.isdigit() or not 1 <= int(count) <= self.size:
        raise SpaceError(f"{spec!r} needs a count between 1 and {self.size} after 'random:', "
                         "e.g. random:100 (or 'all').")
      return nb201.random_archs(int(count), seed)
    if "|" in text:
      genotypes = [g for g in text.split(",") if g.strip()]
      if genotypes:
        return [nb201.parse_genotype(g) for g in genotypes]
    raise SpaceError(f"{spec!r} is not 'all', 'random:N' or a comma-separated list of genotypes "
                     "such as '|nor_conv_3x3~0|+|none~0|skip_connect~1|+|avg_pool_3x3~0|"
                     "nor_conv_1x1~1|skip_connect~2|'.")

  def random_population(self, n: int, rng: np.random.Generator) -> list[str]:
    """``n`` distinct cells drawn uniformly from the 15,625 (RZ-NAS does not say how its initial
    population is drawn; uniform is what the NB201 baselines do)."""
    if not 1 <= n <= nb201.NUM_ARCHS:
      raise SpaceError(f"population size {n} must be in 1..{nb201.NUM_ARCHS}.")
    codes = rng.choice(nb201.NUM_ARCHS, size=n, replace=False)
    return [nb201.Arch.from_code(int(c)).genotype for c in codes]

  def random_mutation(self, genotype: str, rng: np.random.Generator) -> str:
    """The regularized-evolution move of NAS-Bench-201: one edge gets a different op."""
    ops = list(nb201.parse_genotype(genotype).ops)
    e = int(rng.integers(nb201.NUM_EDGES))
    ops[e] = [op for op in nb201.OPS if op != ops[e]][int(rng.integers(nb201.NUM_OPS - 1))]
    return nb201.Arch(tuple(ops)).genotype

  def edits(self, parent: str, child: str) -> list[str]:
    """``from->to`` for every edge whose op changed, e.g. ``skip_connect->nor_conv_3x3``."""
    a, b = nb201.parse_genotype(parent), nb201.parse_genotype(child)
    return [f"{x}->{y}" for x, y in zip(a.ops, b.ops) if x != y]

  def neighbours(self, genotype: str) -> list[str]:
    """The 24 cells that differ from ``genotype`` on one edge, edge by edge, ops in `nb201.OPS`
    order."""
    ops = nb201.parse_genotype(genotype).ops
    return [self.apply_edit(genotype, e, op) for e, current in enumerate(ops) for op in nb201.OPS
            if op != current]

  def apply_edit(self, genotype: str, edge: int, op: str) -> str:
    ops = list(nb201.parse_genotype(genotype).ops)
    ops[edge] = op
    return nb201.Arch(tuple(ops)).genotype

  @property
  def resolution(self) -> int:
    return nb201.DATASET_SHAPES[self.dataset][0]

  @property
  def num_classes(self) -> int:
    return nb201.DATASET_SHAPES[self.dataset][1]

  def costs(self, arch: nb201.Arch | str) -> dict[str, float]:
    """Exact parameters and FLOPs (multiply-accumulates) of the network of ``arch``."""
    arch = nb201.parse_genotype(arch) if isinstance(arch, str) else arch
    kw = dict(channels=self.channels, cells_per_stage=self.cells_per_stage,
              num_classes=self.num_classes)
    return {"params": float(nb201.count_params(arch, **kw)),
            "flops": float(nb201.count_flops(arch, resolution=self.resolution, **kw))}

  # --- the prompt --------------------------------------------------------------------------------

  def operations(self) -> list[Operation]:
    from rznas_jax.spaces import layers  # pylint: disable=g-import-not-at-top  (Flax)
    from rznas_jax.spaces import nb201_net  # pylint: disable=g-import-not-at-top
    exact = source_of(nb201_net.Cell._exact_op)  # pylint: disable=protected-access
    conv = source_of(nb201_net.ReLUConvBN)
    pool = source_of(layers.avg_pool_exclude_pad)
    code = {"none": exact, "skip_connect": exact, "nor_conv_1x1": conv, "nor_conv_3x3": conv,
            "avg_pool_3x3": pool}
    return [Operation(op, _TEXT[op], code[op]) for op in nb201.OPS]

  def rules(self) -> str:
    h, classes = nb201.DATASET_SHAPES[self.dataset]
    return "\n".join([
        "A cell is a directed acyclic graph on four nodes 0..3. Node 0 is the cell's input; "
        "node j (1..3) is the sum of one operation applied to every earlier node i, so the cell "
        "has six edges; node 3 is the cell's output.",
        "The genotype string lists the edges' operations node by node, each as op~i (i = the "
        "source node), nodes separated by +:",
        "|op~0|+|op~0|op~1|+|op~0|op~1|op~2|",
        f"Allowed operations: {', '.join(nb201.OPS)}. Each of the six edges takes exactly one.",
        f"The network: a 3×3 conv stem ({self.channels} channels), then three stages of "
        f"{self.cells_per_stage} copies of the cell with {self.channels}, {2 * self.channels} and "
        f"{4 * self.channels} channels, joined by residual reduction blocks (stride 2), then BN, "
        f"ReLU, global average pooling and a linear classifier ({classes} classes, "
        f"{h}×{h} inputs). Every cell of the network uses the same genotype.",
        "A cell whose output is not connected to its input (e.g. all edges into node 3 are none) "
        "is valid but outputs zeros.",
    ])

  def construction_code(self) -> str:
    from rznas_jax.spaces import nb201_net  # pylint: disable=g-import-not-at-top
    return source_of(nb201_net.Cell.__call__)

  def example(self) -> tuple[str, str, str]:
    return ("|nor_conv_1x1~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|"
            "skip_connect~2|",
            "|nor_conv_1x1~0|+|nor_conv_3x3~0|skip_connect~1|+|skip_connect~0|skip_connect~1|"
            "nor_conv_3x3~2|",
            "The parent's cell is almost all skip connections, so it has few parameters to carry "
            "the signal. Replacing the skip_connect on 2<-0 and on 3<-2 with 3×3 convolutions adds "
            "depth and trainable paths while keeping the shortcuts 2<-1, 3<-0 and 3<-1.")

  def reply_expression(self):
    return reply_format.nb201_genotype()

  # --- networks, scoring, ground truth -----------------------------------------------------------

  def network(self, arch: nb201.Arch | str, *, num_classes: int | None = None,
              image_shape: tuple[int, int, int] | None = None):
    """``(module, init)``: the exact NB201 network of ``arch`` (``num_classes`` defaults to the
    dataset's) and ``init(key)``, its PyTorch-default variables for ``image_shape`` (HWC)."""
    from rznas_jax.spaces import nb201_net  # pylint: disable=g-import-not-at-top
    arch = nb201.parse_genotype(arch) if isinstance(arch, str) else arch
    module = nb201_net.NB201Network(arch, channels=self.channels,
                                    cells_per_stage=self.cells_per_stage,
                                    num_classes=num_classes or self.num_classes)
    shape = image_shape or (self.resolution, self.resolution, 3)
    return module, lambda key: nb201_net.init_variables(module, key, shape)

  def check_proxies(self, names: Sequence[str]) -> None:
    from rznas_jax import proxies as proxy_lib  # pylint: disable=g-import-not-at-top
    proxy_lib.check_for_space(names, self.COST_KEYS, self.name)  # `costs` has no other keys

  def scorer(self, proxies: Sequence[str], *, images=None, batch_size: int = 64, seed: int = 0,
             devices: Sequence[Any] | None = None, strategy: str = "auto",
             chunk_size: int | None = None):
    """An `NB201Scorer`; with several ``devices`` the cells are sharded over a mesh of them
    (``chunk_size`` cells per device per call, default 1; without a mesh default 8)."""
    from rznas_jax import data as data_lib  # pylint: disable=g-import-not-at-top
    from rznas_jax import scoring  # pylint: disable=g-import-not-at-top
    if strategy not in scoring.STRATEGIES:
      raise SpaceError(f"strategy {strategy!r} is unknown; valid: {', '.join(scoring.STRATEGIES)}.")
    if chunk_size is not None and chunk_size < 1:
      raise SpaceError(f"chunk_size {chunk_size} must be at least 1.")
    self.check_proxies(proxies)
    setting = scoring.NB201Setting(self.dataset, self.channels, self.cells_per_stage)
    if images is not None:  # the scorer checks the images only after initialising the network
      data_lib.real_batch(images, batch_size, seed, setting.dataset, setting.resolution)
    several = devices is not None and len(devices) > 1
    if several and strategy == "masked":
      raise SpaceError("strategy 'masked' scores one cell per call; on several devices use auto, "
                       "switch or masked_vmap.")
    if chunk_size is None:
      chunk_size = 1 if several else 8
    return scoring.NB201Scorer(proxies, setting, images=images, batch_size=batch_size, seed=seed,
                               strategy=strategy, chunk_size=chunk_size,
                               devices=list(devices) if devices is not None else None)

  def benchmark(self, path: str | None = None) -> nb201.BenchmarkTable:
    """The nats_bench.csv-format table at ``path``, or the packaged NATS-Bench table."""
    return nb201.BenchmarkTable.load(path) if path else nb201.BenchmarkTable.packaged()

  def draw(self, genotype: str, path: str, title: str | None = None) -> None:
    from rznas_jax.report import drawing  # pylint: disable=g-import-not-at-top  (matplotlib)
    drawing.nb201_cell(genotype, path, title=title or "NB201 cell (nodes: feature maps; edges: operations)")
