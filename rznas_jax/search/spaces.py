"""What the search needs from a search space, for NAS-Bench-201 and for the macro spaces.

A `SearchSpace` turns genotype text into an architecture or into reasons it is not one (the
reasons go back to the LLM through reflection), draws the initial population, applies the
original random mutation (the baseline and the offline agent's move generator), names the edits
between a parent and a child (so that reflection can say which kinds of edit raised the score),
and describes itself for the prompt: each operation as text and as the source of our own Flax
code, the construction rules and an in-context example.

Architectures travel through the search state as their canonical genotype strings; a space
parses them back when it needs the value.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from typing import Any, Protocol, Sequence

import numpy as np

from rznas_jax.search import reply_format
from rznas_jax.spaces import layers
from rznas_jax.spaces import macro
from rznas_jax.spaces import macro_net
from rznas_jax.spaces import macro_spaces
from rznas_jax.spaces import nb201
from rznas_jax.spaces import nb201_net


def source_of(obj: Any) -> str:
  """The source code of a function or class of ours, as the prompt shows it."""
  return inspect.cleandoc(inspect.getsource(obj))


@dataclasses.dataclass(frozen=True)
class Operation:
  """One operation of a space as the prompt describes it: a name, a sentence and its code."""
  name: str
  text: str
  code: str


class SearchSpace(Protocol):
  """The interface `rznas_jax.search` uses; see `NB201SearchSpace` and `MacroSearchSpace`."""
  name: str

  def check(self, genotype: str) -> tuple[str | None, list[str]]:
    """(canonical genotype, []) for a member of the space; (None, reasons) otherwise."""

  def random_population(self, n: int, rng: np.random.Generator) -> list[str]:
    ...

  def random_mutation(self, genotype: str, rng: np.random.Generator) -> str:
    ...

  def edits(self, parent: str, child: str) -> list[str]:
    ...

  def neighbours(self, genotype: str) -> list[str]:
    """Every architecture one edit away, for a space small enough to list them; else []."""

  def operations(self) -> list[Operation]:
    ...

  def rules(self) -> str:
    ...

  def construction_code(self) -> str:
    ...

  def example(self) -> tuple[str, str, str]:
    """(parent genotype, child genotype, the reasoning that led from one to the other)."""

  def costs(self, genotype: str) -> dict[str, float]:
    ...

  def arch_pattern(self) -> str:
    """An anchored regex of the genotypes a mutation reply may hold (`reply_format`)."""

  def reply_schema(self) -> dict:
    """The JSON schema of a mutation reply, for structured output (`reply_format`)."""

  def reply_grammar(self) -> str:
    """The llama.cpp GBNF grammar of a mutation reply (`reply_format`)."""


class _ReplyFormat:
  """What a mutation reply may be, for both kinds of space (`reply_format` builds it from the
  space's own data)."""

  def arch_pattern(self) -> str:
    return reply_format.arch_pattern(self)

  def reply_schema(self) -> dict:
    return reply_format.reply_schema(self)

  def reply_grammar(self) -> str:
    return reply_format.reply_grammar(self)


# --- NAS-Bench-201 ---------------------------------------------------------------------------------

_NB201_TEXT = {
    "none": "outputs zeros: the edge is cut and passes no information.",
    "skip_connect": "the identity: passes the input unchanged (no parameters).",
    "nor_conv_1x1": "ReLU, 1×1 convolution (C→C, no bias), batch norm.",
    "nor_conv_3x3": "ReLU, 3×3 convolution (C→C, padding 1, no bias), batch norm.",
    "avg_pool_3x3": "3×3 average pooling, stride 1, padding 1, padded pixels not counted.",
}


@dataclasses.dataclass(frozen=True)
class NB201SearchSpace(_ReplyFormat):
  """The NAS-Bench-201 cell space (METHOD.md §4.3): six edges, five ops, 15,625 cells.

  Attributes:
    dataset: the benchmark dataset the network is built for (classes and input size).
    channels, cells_per_stage: the network (NAS-Bench-201: 16 and 5).
  """
  dataset: str = "cifar10"
  channels: int = 16
  cells_per_stage: int = 5
  name: str = "nb201"

  def check(self, genotype: str) -> tuple[str | None, list[str]]:
    try:
      return nb201.parse_genotype(genotype).genotype, []
    except nb201.GenotypeError as e:
      return None, [str(e)]

  def random_population(self, n: int, rng: np.random.Generator) -> list[str]:
    """``n`` distinct cells drawn uniformly from the 15,625 (METHOD.md §2.1 decision)."""
    if not 1 <= n <= nb201.NUM_ARCHS:
      raise ValueError(f"population size {n} must be in 1..{nb201.NUM_ARCHS}.")
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

  def operations(self) -> list[Operation]:
    exact = source_of(nb201_net.Cell._exact_op)  # pylint: disable=protected-access
    conv = source_of(nb201_net.ReLUConvBN)
    pool = source_of(layers.avg_pool_exclude_pad)
    code = {"none": exact, "skip_connect": exact, "nor_conv_1x1": conv, "nor_conv_3x3": conv,
            "avg_pool_3x3": pool}
    return [Operation(op, _NB201_TEXT[op], code[op]) for op in nb201.OPS]

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
    return source_of(nb201_net.Cell.__call__)

  def example(self) -> tuple[str, str, str]:
    return ("|nor_conv_1x1~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|"
            "skip_connect~2|",
            "|nor_conv_1x1~0|+|nor_conv_3x3~0|skip_connect~1|+|skip_connect~0|skip_connect~1|"
            "nor_conv_3x3~2|",
            "The parent's cell is almost all skip connections, so it has few parameters to carry "
            "the signal. Replacing the skip_connect on 2<-0 and on 3<-2 with 3×3 convolutions adds "
            "depth and trainable paths while keeping the shortcuts 2<-1, 3<-0 and 3<-1.")

  def costs(self, genotype: str) -> dict[str, float]:
    arch = nb201.parse_genotype(genotype)
    resolution, classes = nb201.DATASET_SHAPES[self.dataset]
    return {"params": float(nb201.count_params(arch, self.channels, self.cells_per_stage, classes)),
            "flops": float(nb201.count_flops(arch, self.channels, self.cells_per_stage, classes,
                                             resolution=resolution))}


# --- macro spaces ------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class MacroSearchSpace(_ReplyFormat):
  """A Zen-NAS-grammar macro space (`macro_spaces.MacroSpace`) as the search sees it.

  Attributes:
    space: the space, with its budgets, layer limit and resolution.
    initial_mutations: random mutations of the initial structure applied to draw each member of
      the initial population (METHOD.md §2.1 decision: random mutations of F0 under the budget).
  """
  space: macro_spaces.MacroSpace
  initial_mutations: int = 8

  @property
  def name(self) -> str:
    return self.space.name

  def check(self, genotype: str) -> tuple[str | None, list[str]]:
    reasons = self.space.validate(genotype)
    if reasons:
      return None, reasons
    return macro.format_structure(macro.parse_structure(genotype)), []

  def random_population(self, n: int, rng: np.random.Generator, max_tries: int = 200) -> list[str]:
    """``n`` distinct valid structures, each a chain of random mutations of the initial one."""
    out: list[str] = []
    seen: set[str] = set()
    initial = self.space.initial
    for _ in range(n * max_tries):
      if len(out) == n:
        return out
      current = initial
      for _ in range(int(rng.integers(1, self.initial_mutations + 1))):
        child = self.random_mutation(current, rng)
        if not self.space.validate(child):
          current = child
      if current not in seen:
        seen.add(current)
        out.append(current)
    raise ValueError(f"found only {len(out)} distinct valid structures of {self.name} for a "
                     f"population of {n}; lower search.population or loosen the budget.")

  def random_mutation(self, genotype: str, rng: np.random.Generator) -> str:
    """Zen-NAS's mutation (one block position; the child may break the budget: check it)."""
    return macro.format_structure(self.space.mutate(genotype, rng, num_replaces=1))

  def edits(self, parent: str, child: str) -> list[str]:
    """Kinds of change, block by block: ``A->B`` (block type), ``wider``/``narrower`` (out
    channels), ``deeper``/``shallower`` (sub-layers), ``stride``, plus ``more_blocks`` or
    ``fewer_blocks``."""
    a = macro.parse_structure(parent).blocks
    b = macro.parse_structure(child).blocks
    out: list[str] = []
    for x, y in zip(a, b):
      if x.name != y.name:
        out.append(f"{x.name}->{y.name}")
      if y.out_channels != x.out_channels:
        out.append("wider" if y.out_channels > x.out_channels else "narrower")
      if y.sub_layers != x.sub_layers:
        out.append("deeper" if y.sub_layers > x.sub_layers else "shallower")
      if y.stride != x.stride:
        out.append("stride")
    if len(a) != len(b):
      out.append("more_blocks" if len(b) > len(a) else "fewer_blocks")
    return out

  def neighbours(self, genotype: str) -> list[str]:
    """[]: a macro structure's one-edit changes (widths, depths, block types) are too many to list."""
    del genotype
    return []

  def operations(self) -> list[Operation]:
    text = {line.split("(")[0]: line for line in self.space.description().splitlines()
            if line.startswith("- Super")}
    code = "\n\n".join([source_of(macro_net.Unit), source_of(macro_net.SuperBlock)])
    ops = []
    for name in self.space.allowed_blocks:
      family_text = next((t for k, t in text.items() if _family_match(k[2:], name)), name)
      ops.append(Operation(name, family_text[2:], code))
    return ops

  def rules(self) -> str:
    return self.space.description()

  def construction_code(self) -> str:
    return "\n\n".join([source_of(macro_net.sub_layer_specs), source_of(macro_net.MacroNetwork)])

  def example(self) -> tuple[str, str, str]:
    parent = self.space.initial
    rng = np.random.default_rng(0)
    for _ in range(100):
      child = self.random_mutation(parent, rng)
      if child != parent and not self.space.validate(child):
        edits = ", ".join(self.edits(parent, child)) or "a parameter change"
        return (parent, child, f"The change ({edits}) keeps every block chained and stays within "
                "the layer and budget limits, and it gives the network more capacity where the "
                "parent was thin.")
    return parent, parent, "No valid change was found."

  def costs(self, genotype: str) -> dict[str, float]:
    return {k: float(v) for k, v in self.space.costs(macro.parse_structure(genotype)).items()
            if k in ("params", "flops", "layers")}


def _family_match(pattern: str, name: str) -> bool:
  """Whether a description line's block pattern (``SuperResK{k}K{k}``) covers block ``name``."""
  regex = re.sub(r"\\\{[a-z]+\\\}", r"\\d+", re.escape(pattern))
  return re.fullmatch(regex, name) is not None


def make_space(name: str, *, dataset: str = "cifar10", channels: int = 16, cells_per_stage: int = 5,
               overrides: dict | None = None) -> SearchSpace:
  """The search space called ``name`` (``nb201`` or a macro space name) with its settings."""
  if name == "nb201":
    return NB201SearchSpace(dataset=dataset, channels=channels, cells_per_stage=cells_per_stage)
  overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
  return MacroSearchSpace(macro_spaces.get_space(name, **overrides))


SPACE_NAMES: Sequence[str] = ("nb201", "zen_cifar", "mobilenet_imagenet", "maedet_coco")
