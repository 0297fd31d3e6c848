"""The NAS-Bench-201 cell space: genotype strings, the `Arch` value, indices and cost counters.

A cell is a DAG on four nodes; node ``j`` sums one operation applied to every earlier node, which
gives six edges in the official string order ``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|``
(Dong & Yang, ICLR 2020; ``xautodl/models/cell_infers/cells.py``).
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import os
import re
from typing import Iterable, Sequence

import numpy as np

from rznas_jax.errors import UserError

OPS: tuple[str, ...] = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
NUM_OPS = len(OPS)
NUM_EDGES = 6
NUM_ARCHS = NUM_OPS**NUM_EDGES  # 15,625
# (to_node, from_node) of each edge, in genotype-string order.
EDGES: tuple[tuple[int, int], ...] = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))

_TOKEN = re.compile(r"^([A-Za-z0-9_]+)~(\d+)$")


class GenotypeError(UserError):
  """A genotype string that is not a valid NAS-Bench-201 cell."""


@dataclasses.dataclass(frozen=True, order=True)
class Arch:
  """One NAS-Bench-201 cell: the op on each of the six edges, in genotype-string order.

  Frozen and hashable, so it can be a static argument, a dict key or a set member.

  Example:
    >>> a = Arch.parse("|nor_conv_3x3~0|+|none~0|skip_connect~1|+|avg_pool_3x3~0|nor_conv_1x1~1|skip_connect~2|")
    >>> a.ops[0], str(a) == a.genotype
    ('nor_conv_3x3', True)
  """

  ops: tuple[str, ...]

  def __post_init__(self):
    ops = tuple(self.ops)
    object.__setattr__(self, "ops", ops)
    if len(ops) != NUM_EDGES:
      raise GenotypeError(f"a NAS-Bench-201 cell has {NUM_EDGES} edges, got {len(ops)} ops: {ops}.")
    for op in ops:
      if op not in OPS:
        raise GenotypeError(f"unknown op {op!r}; valid ops are {', '.join(OPS)}.")

  # --- string form -------------------------------------------------------------------------------
  @classmethod
  def parse(cls, genotype: str) -> "Arch":
    """Parses the official string, e.g. ``|nor_conv_3x3~0|+|none~0|skip_connect~1|+|...|``."""
    return parse_genotype(genotype)

  @property
  def genotype(self) -> str:
    return format_genotype(self)

  def __str__(self) -> str:
    return self.genotype

  # --- integer forms -----------------------------------------------------------------------------
  @property
  def op_indices(self) -> tuple[int, ...]:
    """Index of each edge's op in `OPS`."""
    return tuple(OPS.index(op) for op in self.ops)

  @classmethod
  def from_op_indices(cls, indices: Sequence[int]) -> "Arch":
    bad = [i for i in indices if not 0 <= int(i) < NUM_OPS]
    if bad:
      raise GenotypeError(f"op index {bad[0]} is out of range; valid op indices are 0..{NUM_OPS - 1}.")
    return cls(tuple(OPS[int(i)] for i in indices))

  @property
  def code(self) -> int:
    """A canonical integer 0..15624 (base-5 digits = op indices); *not* the benchmark index."""
    value = 0
    for i in self.op_indices:
      value = value * NUM_OPS + i
    return value

  @classmethod
  def from_code(cls, code: int) -> "Arch":
    if not 0 <= code < NUM_ARCHS:
      raise GenotypeError(f"arch code {code} is out of range 0..{NUM_ARCHS - 1}.")
    digits = []
    for _ in range(NUM_EDGES):
      code, d = divmod(code, NUM_OPS)
      digits.append(d)
    return cls.from_op_indices(digits[::-1])

  def one_hot(self) -> np.ndarray:
    """(6, 5) float32 one-hot of the ops: the array form the masked network takes."""
    out = np.zeros((NUM_EDGES, NUM_OPS), np.float32)
    out[np.arange(NUM_EDGES), self.op_indices] = 1.0
    return out


def parse_genotype(genotype: str) -> Arch:
  """Parses a NAS-Bench-201 genotype string into an `Arch`.

  Raises:
    GenotypeError: naming the bad token and the valid ops, for any malformed string.
  """
  if not isinstance(genotype, str):
    raise GenotypeError(f"a genotype must be a string, got {type(genotype).__name__}.")
  text = genotype.strip()
  expected = "|op~0|+|op~0|op~1|+|op~0|op~1|op~2|"
  if not (text.startswith("|") and text.endswith("|")):
    raise GenotypeError(f"genotype {genotype!r} must start and end with '|', as in {expected}.")
  nodes = text.split("+")
  if len(nodes) != 3:
    raise GenotypeError(
        f"genotype {genotype!r} has {len(nodes)} node groups separated by '+'; a NAS-Bench-201 cell "
        f"has 3, as in {expected}.")
  ops = []
  for node, group in enumerate(nodes, start=1):
    if not (group.startswith("|") and group.endswith("|")) or len(group) < 2:
      raise GenotypeError(f"node group {group!r} in {genotype!r} must be enclosed in '|'.")
    tokens = group[1:-1].split("|")
    if len(tokens) != node:
      raise GenotypeError(
          f"node {node} in {genotype!r} has {len(tokens)} inputs ({group}); it needs exactly {node}, "
          f"from nodes 0..{node - 1}.")
    for source, token in enumerate(tokens):
      m = _TOKEN.match(token.strip())
      if not m:
        raise GenotypeError(f"token {token!r} in {genotype!r} is not of the form op~k.")
      op, k = m.group(1), int(m.group(2))
      if op not in OPS:
        raise GenotypeError(f"unknown op {op!r} in {genotype!r}; valid ops are {', '.join(OPS)}.")
      if k != source:
        raise GenotypeError(
            f"token {token!r} in {genotype!r} names input node {k}, but position {source} of node "
            f"{node} must read from node {source}.")
      ops.append(op)
  return Arch(tuple(ops))


def format_genotype(arch: Arch) -> str:
  """The official string of an `Arch`; ``parse_genotype(format_genotype(a)) == a``."""
  o = arch.ops
  return f"|{o[0]}~0|+|{o[1]}~0|{o[2]}~1|+|{o[3]}~0|{o[4]}~1|{o[5]}~2|"


def all_archs() -> list[Arch]:
  """All 15,625 cells, ordered by `Arch.code`."""
  return [Arch.from_code(c) for c in range(NUM_ARCHS)]


def random_archs(n: int, seed: int, unique: bool = True) -> list[Arch]:
  """``n`` cells drawn uniformly (without replacement when ``unique``) with a NumPy seed."""
  rng = np.random.default_rng(seed)
  if unique:
    if n > NUM_ARCHS:
      raise ValueError(f"cannot draw {n} distinct cells; NAS-Bench-201 has {NUM_ARCHS}.")
    codes = rng.choice(NUM_ARCHS, size=n, replace=False)
  else:
    codes = rng.integers(0, NUM_ARCHS, size=n)
  return [Arch.from_code(int(c)) for c in codes]


# --- the official benchmark index ------------------------------------------------------------------


PACKAGED_TABLE = "packaged NATS-Bench"  # the `BenchmarkTable.source` of `BenchmarkTable.packaged`
PACKAGED_TABLE_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data",
                                   "nb201_accuracy.npz")


class TableError(UserError):
  """A benchmark table file that cannot be used: missing, without the needed columns, a bad row."""


class BenchmarkTable:
  """A NAS-Bench-201 accuracy table: every cell's official index and test accuracies.

  Rows are in the official benchmark order, so the row number is the official index 0..15624.
  `packaged` gives the table that ships with the package (NATS-Bench tss, MIT; built from
  ``nats_bench.csv`` by ``benchmarks/make_nb201_table.py``); `load` reads a table in the
  ``nats_bench.csv`` format from a path the user gives. Columns used: ``ArchitectureString``,
  ``CIFAR10TestAccuracy200Epochs``, ``CIFAR100TestAccuracy200Epochs``,
  ``ImageNetTestAccuracy200Epochs`` (the 200-epoch seed mean of the test accuracy, in %) and, when
  present, ``UniqueString`` (isomorphism class). ``source`` names the table: its path, or
  `PACKAGED_TABLE`.
  """

  DATASET_COLUMNS = {
      "cifar10": "CIFAR10TestAccuracy200Epochs",
      "cifar100": "CIFAR100TestAccuracy200Epochs",
      "imagenet16-120": "ImageNetTestAccuracy200Epochs",
  }

  def __init__(self, archs: list[Arch], accuracy: dict[str, np.ndarray],
               unique: list[str] | None = None, source: str = ""):
    self.archs = archs
    self.accuracy = accuracy
    self.unique = unique
    self.source = source
    self._index = {a: i for i, a in enumerate(archs)}
    if len(self._index) != len(archs):
      raise ValueError("the benchmark table lists some architecture twice.")
    self._sorted = {d: np.sort(acc) for d, acc in accuracy.items()}

  @classmethod
  def load(cls, path: str | os.PathLike) -> "BenchmarkTable":
    if not os.path.isfile(path):
      raise TableError(
          f"benchmark table {str(path)!r} does not exist; give the path to a nats_bench.csv-format "
          "table (columns ArchitectureString, CIFAR10TestAccuracy200Epochs, ...).")
    with open(path, newline="") as f:
      rows = list(csv.DictReader(f))
    needed = ["ArchitectureString", *cls.DATASET_COLUMNS.values()]
    missing = [c for c in needed if not rows or c not in rows[0]]
    if missing:
      raise TableError(f"benchmark table {str(path)!r} lacks the column(s) {', '.join(missing)}.")
    try:
      archs = [parse_genotype(r["ArchitectureString"]) for r in rows]
      acc = {name: np.array([float(r[col]) for r in rows]) for name, col in cls.DATASET_COLUMNS.items()}
    except (GenotypeError, ValueError) as e:
      raise TableError(f"benchmark table {str(path)!r} has a bad row: {e}") from None
    unique = [r["UniqueString"] for r in rows] if "UniqueString" in rows[0] else None
    return cls(archs, acc, unique, source=str(path))

  @classmethod
  def packaged(cls) -> "BenchmarkTable":
    """The NATS-Bench table that ships with the package (read once per process).

    The file holds each row's six op indices (in `OPS` order) and the three accuracy columns as
    the float64 values of ``nats_bench.csv``; ``unique`` is derived with `isomorphism_key`, which
    equals NATS's ``UniqueString`` on every cell.

    Raises:
      FileNotFoundError: the package was installed without its data file.

    Example:
      >>> table = BenchmarkTable.packaged()
      >>> table.index(table.arch(6111)), float(table.accuracy["cifar10"][6111])
      (6111, 94.37333333333333)
    """
    return _packaged_table()

  def save_compact(self, path: str | os.PathLike) -> None:
    """Writes the table as the compact ``.npz`` that `packaged` reads (ops and accuracies only)."""
    ops = np.array([a.op_indices for a in self.archs], np.uint8)
    np.savez_compressed(path, ops=ops, op_names=np.array(OPS),
                        **{d: np.asarray(acc, np.float64) for d, acc in self.accuracy.items()})

  @classmethod
  def load_compact(cls, path: str | os.PathLike, source: str | None = None) -> "BenchmarkTable":
    """Reads a table that `save_compact` wrote; ``source`` names it (default: the path)."""
    if not os.path.isfile(path):
      raise FileNotFoundError(f"benchmark table {str(path)!r} does not exist; reinstall the package "
                              "or give a nats_bench.csv with --config.benchmark / --benchmark.")
    with np.load(path) as data:
      if tuple(data["op_names"]) != OPS:
        raise ValueError(f"benchmark table {str(path)!r} numbers the ops {tuple(data['op_names'])}, "
                         f"not {OPS}.")
      archs = [Arch(tuple(OPS[i] for i in row)) for row in data["ops"].tolist()]
      accuracy = {d: data[d] for d in cls.DATASET_COLUMNS}
    return cls(archs, accuracy, [isomorphism_key(a) for a in archs],
               source=str(path) if source is None else source)

  def __len__(self) -> int:
    return len(self.archs)

  def index(self, arch: Arch) -> int:
    """The official benchmark index of ``arch``."""
    try:
      return self._index[arch]
    except KeyError:
      raise KeyError(f"cell {arch} is not in the benchmark table.") from None

  def check_covers(self, archs: Sequence[Arch]) -> None:
    """GenotypeError naming the first of ``archs`` the table lacks (a partial table)."""
    known = set(self.archs)
    missing = [a for a in archs if a not in known]
    if missing:
      raise GenotypeError(f"benchmark table {self.source!r} lacks {len(missing)} of the "
                          f"{len(archs)} architectures, e.g. {missing[0].genotype}; give a table "
                          f"of all {NUM_ARCHS} NAS-Bench-201 architectures.")

  def arch(self, index: int) -> Arch:
    return self.archs[index]

  def lookup(self, archs: Iterable[Arch], dataset: str) -> np.ndarray:
    if dataset not in self.accuracy:
      raise ValueError(f"unknown dataset {dataset!r}; valid: {', '.join(self.accuracy)}.")
    return self.accuracy[dataset][[self.index(a) for a in archs]]

  def rank(self, arch: Arch, dataset: str) -> int:
    """The rank of ``arch``'s test accuracy on ``dataset`` among all cells of the table, 1 = best.

    Ties share the best rank (competition ranking): the rank is 1 + the number of cells with a
    strictly higher accuracy, so both CIFAR-10 optima (indices 6111 and 13714) have rank 1.

    Example:
      >>> table = BenchmarkTable.packaged()
      >>> table.rank(table.arch(13714), "cifar10"), table.rank(table.arch(9930), "cifar100")
      (1, 1)
    """
    value = self.lookup([arch], dataset)[0]
    ordered = self._sorted[dataset]
    return 1 + len(ordered) - int(np.searchsorted(ordered, value, side="right"))


# --- cost counters ---------------------------------------------------------------------------------

DATASET_SHAPES = {"cifar10": (32, 10), "cifar100": (32, 100), "imagenet16-120": (16, 120)}


def count_params(arch: Arch, channels: int = 16, cells_per_stage: int = 5, num_classes: int = 10) -> int:
  """Exact number of trainable parameters of the NAS-Bench-201 network (conv, BN affine, linear).

  Matches xautodl's ``count_parameters_in_MB`` (times 1e6): the stem conv+BN, every cell's conv ops
  (a ``nor_conv_kxk`` edge is a bias-free k×k conv plus an affine BN), the two ResNet reduction
  blocks, the last BN and the classifier.
  """
  total = 3 * channels * 9 + 2 * channels  # stem
  c = channels
  for stage in range(3):
    if stage > 0:
      c_in, c = c, 2 * c
      total += c_in * c * 9 + 2 * c + c * c * 9 + 2 * c + c_in * c  # conv_a, conv_b, 1x1 shortcut
    for _ in range(cells_per_stage):
      for op in arch.ops:
        if op == "nor_conv_3x3":
          total += c * c * 9 + 2 * c
        elif op == "nor_conv_1x1":
          total += c * c + 2 * c
  return total + 2 * c + c * num_classes + num_classes


def count_flops(arch: Arch, channels: int = 16, cells_per_stage: int = 5, num_classes: int = 10,
                resolution: int = 32, convention: str = "tensorwatch") -> int:
  """Exact FLOPs of one forward pass (batch 1) of the NAS-Bench-201 network.

  Args:
    convention: ``"tensorwatch"`` (default) counts as the ``torchstat`` counter inside
      ``tensorwatch`` that NASLib used for the ``flops`` stored with its NAS-Bench-201 zero-cost
      data: ``k*k*C_in`` per conv output element, ``2`` per element for an affine BN, ``1`` per
      ReLU input element, ``k*k`` per average-pool output element, ``(kh+1)*(kw+1)`` per channel
      for the global pool and ``in*out`` for the classifier. ``"macs"`` counts convolutions,
      average pools and the classifier (with its bias) only, as xautodl's ``get_model_infos``.
      NAS-Bench-201 tables store these numbers divided by 1e6.
  """
  if convention not in ("tensorwatch", "macs"):
    raise ValueError(f"unknown FLOPs convention {convention!r}; valid: tensorwatch, macs.")
  full = convention == "tensorwatch"
  bn = 2 if full else 0  # per element, affine BN
  relu = 1 if full else 0  # per element

  def conv(c_in, c_out, k, h_out):
    return c_in * c_out * k * k * h_out * h_out

  def relu_conv_bn(c_in, c_out, k, h_in, h_out):
    return relu * c_in * h_in * h_in + conv(c_in, c_out, k, h_out) + bn * c_out * h_out * h_out

  h = resolution
  c = channels
  total = conv(3, c, 3, h) + bn * c * h * h  # stem
  for stage in range(3):
    if stage > 0:
      c_in, c, h_in = c, 2 * c, h
      h = h_in // 2
      total += relu_conv_bn(c_in, c, 3, h_in, h) + relu_conv_bn(c, c, 3, h, h)
      total += c_in * 4 * h * h + conv(c_in, c, 1, h)  # 2x2 average pool, then 1x1 conv shortcut
    per_cell = 0
    for op in arch.ops:
      if op == "nor_conv_3x3":
        per_cell += relu_conv_bn(c, c, 3, h, h)
      elif op == "nor_conv_1x1":
        per_cell += relu_conv_bn(c, c, 1, h, h)
      elif op == "avg_pool_3x3":
        per_cell += 9 * c * h * h
    total += cells_per_stage * per_cell
  total += bn * c * h * h + relu * c * h * h  # last BN + ReLU
  if full:
    return total + (h + 1) * (h + 1) * c + c * num_classes
  return total + c * num_classes + num_classes


def prune_dead_edges(arch: Arch) -> Arch:
  """``arch`` with ``none`` on every edge into a node whose value never reaches the cell output.

  Node 2 reaches the output (node 3) iff its edge 3<-2 is not ``none``; node 1 iff 3<-1 is not, or
  2<-1 is not and node 2 reaches it. Such an edge's op runs, but nothing reads its output: its
  weights get zero gradients and the network's output is the same without it, so proxies flagged
  ``dead_edge_exact`` give the same score for both cells while the pruned one costs less. (Edges
  *out of* a node that the input never reaches are not dead: a conv on zeros still adds its BN
  bias.)

  Example:
    >>> prune_dead_edges(parse_genotype("|nor_conv_3x3~0|+|nor_conv_3x3~0|none~1|+|none~0|none~1|skip_connect~2|"))
  """
  op = dict(zip(EDGES, arch.ops))
  live = {3: True, 2: op[(3, 2)] != "none"}
  live[1] = op[(3, 1)] != "none" or (op[(2, 1)] != "none" and live[2])
  return Arch(tuple(o if live[to] else "none" for (to, _), o in zip(EDGES, arch.ops)))


def isomorphism_key(arch: Arch) -> str:
  """NATS-Bench's ``UniqueString``: cells with equal keys compute the same function up to weights.

  Each node is the sorted, '+'-joined list of its incoming edges' strings: ``skip_connect`` passes
  its input node's string through, ``none`` (or any op on a node that is ``#``) gives ``#``, and
  any other op gives ``(input)@op``. NAS-Bench-201's 15,625 cells fall into 6,466 classes, so a
  full sweep can score each class once (with one set of initial weights, members of a class see different
  weights, so their scores differ slightly).
  """
  nodes = ["0"]
  for node in range(1, 4):
    items = []
    for e, (to, src) in enumerate(EDGES):
      op = arch.ops[e]
      if to != node:
        continue
      if op == "none" or nodes[src] == "#":  # zero, or an op applied to a zero node
        items.append("#")
      else:
        items.append(nodes[src] if op == "skip_connect" else f"({nodes[src]})@{op}")
    nodes.append("+".join(sorted(items)))
  return nodes[3]


@functools.cache
def _packaged_table() -> BenchmarkTable:
  return BenchmarkTable.load_compact(PACKAGED_TABLE_FILE, source=PACKAGED_TABLE)
