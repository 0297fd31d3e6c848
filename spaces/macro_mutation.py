"""Zen-NAS's random mutation operator for macro architectures (the "original proxy" baseline).

This is the candidate generator that RZ-NAS replaces with an LLM (the paper's "X" baseline rows),
as written in idstcv/ZenNAS ``evolution_search.py::get_new_random_structure_str`` with
``SearchSpace/search_space_XXBL.py`` (ResNet-like CIFAR space) or
``SearchSpace/search_space_IDW_fixfc.py`` (MobileNetV2-like ImageNet space):

1. Pick ``num_replaces`` block positions uniformly (Zen-NAS: 1 while the population holds at most
   10 members, 2 after); a position drawn twice is mutated once.
2. Replace each by a candidate drawn uniformly from the *set* of candidate blocks: for a
   ``SuperConv`` block its out channels × {2.5, 2, 1.5, 1.25, 1, 1/1.25, 1/1.5, 1/2, 1/2.5}
   (``sub_layers`` reset to 1; in the IDW space a 1×1 SuperConv, the final 2048-wide layer, never
   changes); for a residual block every combination of a candidate type, out channels and
   bottleneck channels (the same nine factors) and ``sub_layers`` in {L-2..L+2} (positive).
   Widths are clipped to [8, 2048] (IDW: only below, at 8) and rounded to a multiple of 8 with
   Zen-NAS's ``smart_round``. Stride and in_channels are kept.
3. Drop empty blocks, re-chain every block's in_channels to the previous block's out_channels.
4. Split: a residual block with ``sub_layers >= 6`` becomes ``T(in,out,s,btn,3)T(out,out,1,btn,3)``.
   This is the reference's rule verbatim, and it *caps* depth: both halves get
   ``threshold // 2`` and ``threshold - threshold // 2`` sub-layers, whatever L was (7 -> 3 + 3).

The operator is a pure function of ``(arch, numpy Generator)``. Its children are not checked
against budgets or the layer limit (the search loop does that, as Zen-NAS does).
"""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np

from rznas_jax.spaces import macro
from rznas_jax.spaces.macro import Arch, Block

WIDTH_FACTORS = (2.5, 2.0, 1.5, 1.25, 1.0, 1 / 1.25, 1 / 1.5, 1 / 2.0, 1 / 2.5)
DEPTH_OFFSETS = (0, 1, 2, -1, -2)


@dataclasses.dataclass(frozen=True)
class MutationRule:
  """The candidate set of one Zen-NAS search-space file.

  Attributes:
    residual_types: block types a residual block may become.
    max_channels: upper clip of candidate widths; None clips only below (the IDW file).
    freeze_pointwise_conv: a ``SuperConvK1BNRELU`` block never changes (the IDW file's fixed fc).
    split_threshold: blocks with at least this many sub-layers are split in two; None: never.
    min_channels: lower clip, and the smallest width a candidate may have.
  """

  residual_types: tuple[str, ...]
  max_channels: int | None = 2048
  freeze_pointwise_conv: bool = False
  split_threshold: int | None = 6
  min_channels: int = 8

  def __post_init__(self):
    bad = [t for t in self.residual_types
           if t not in macro.BLOCK_TYPES or macro.BLOCK_TYPES[t].family == "conv"]
    if bad:
      raise ValueError(f"{bad[0]!r} is not a residual block type; valid: "
                       f"{', '.join(n for n, t in macro.BLOCK_TYPES.items() if t.family != 'conv')}.")


XXBL = MutationRule(("SuperResK1K3K1", "SuperResK1K5K1", "SuperResK1K7K1",
                     "SuperResK3K3", "SuperResK5K5", "SuperResK7K7"))
IDW = MutationRule(tuple(f"SuperResIDWE{e}K{k}" for k in (3, 5, 7) for e in (1, 2, 4, 6)),
                   max_channels=None, freeze_pointwise_conv=True)
# MAE-DET's bottleneck kernels (tinynas space_k1kxk1: 3 and 5); MAE-DET has no split rule.
MAEDET = MutationRule(("SuperResK1K3K1", "SuperResK1K5K1"), split_threshold=None)


def width_candidates(channels: int, rule: MutationRule = XXBL) -> list[int]:
  """``get_select_student_channels_list``: scaled, clipped, rounded widths, largest first."""
  widths = [channels * f for f in WIDTH_FACTORS]
  widths = [max(rule.min_channels, w) for w in widths]
  if rule.max_channels is not None:
    widths = [min(rule.max_channels, w) for w in widths]
  return sorted({macro.smart_round(w, 8) for w in widths}, reverse=True)


def depth_candidates(sub_layers: int) -> list[int]:
  """``get_select_student_sublayers_list`` with the empty depths removed, largest first."""
  return sorted({max(0, sub_layers + d) for d in DEPTH_OFFSETS} - {0}, reverse=True)


def _candidate_axes(block: Block, rule: MutationRule) -> list[list]:
  """The independent choices behind ``block``'s candidates; their product is the candidate set.

  Every combination is a distinct block (each axis holds distinct values), so a uniform draw
  from the set is a uniform draw of one index into the product.
  """
  if block.family == "conv":
    if rule.freeze_pointwise_conv and block.kernel == 1:
      return [[block.out_channels]]
    return [width_candidates(block.out_channels, rule)]
  outs = [o for o in width_candidates(block.out_channels, rule) if o >= rule.min_channels]
  btns = [b for b in width_candidates(block.bottleneck, rule) if b >= rule.min_channels]
  return [list(rule.residual_types), outs, depth_candidates(block.sub_layers), btns]


def _candidate(block: Block, choice: tuple) -> Block:
  if block.family == "conv":
    return Block(block.name, block.in_channels, choice[0], block.stride, 1)
  name, out, depth, btn = choice
  return Block(name, block.in_channels, out, block.stride, depth, btn)


def block_candidates(block: Block, rule: MutationRule = XXBL) -> list[Block]:
  """Every block ``block`` may become (``gen_search_space``), without duplicates, in draw order."""
  return [_candidate(block, c) for c in itertools.product(*_candidate_axes(block, rule))]


def split_blocks(blocks: list[Block], threshold: int | None) -> list[Block]:
  """Zen-NAS ``split(split_layer_threshold)``: deep residual blocks become two blocks."""
  if threshold is None:
    return list(blocks)
  out = []
  for b in blocks:
    if b.family != "conv" and b.sub_layers >= threshold:
      first = threshold // 2
      out.append(b.replace(sub_layers=first))
      out.append(b.replace(in_channels=b.out_channels, stride=1, sub_layers=threshold - first))
    else:
      out.append(b)
  return out


def mutate(arch: Arch | str, rng: np.random.Generator, rule: MutationRule = XXBL,
           num_replaces: int = 1) -> Arch:
  """One Zen-NAS random mutation of ``arch``.

  Args:
    arch: the parent (an `Arch` or its string).
    rng: the only source of randomness; the same generator state gives the same child.
    rule: `XXBL` (CIFAR ResNet-like space), `IDW` (ImageNet MobileNet-like) or `MAEDET`.
    num_replaces: block positions to draw (Zen-NAS: 1 for a population of at most 10, else 2).

  Returns:
    The child. It may exceed a budget or the layer limit, or (IDW) a channel bound: the caller
    validates it.

  Raises:
    ValueError: for an architecture without blocks.

  Example:
    >>> child = mutate(parent, np.random.default_rng(0), IDW, num_replaces=2)
  """
  blocks = list(macro.as_arch(arch).blocks)
  if not blocks:
    raise ValueError("cannot mutate an architecture without blocks.")
  chosen = set()
  for _ in range(num_replaces):
    idx = int(rng.integers(len(blocks)))
    if idx in chosen:
      continue
    chosen.add(idx)
    axes = _candidate_axes(blocks[idx], rule)
    flat = int(rng.integers(math.prod(len(a) for a in axes)))
    choice = []
    for axis in reversed(axes):  # decode ``flat`` as block_candidates(...)[flat], row-major
      flat, i = divmod(flat, len(axis))
      choice.append(axis[i])
    blocks[idx] = _candidate(blocks[idx], tuple(reversed(choice)))
  blocks = [b for b in blocks if b.sub_layers > 0]
  for i in range(1, len(blocks)):
    blocks[i] = blocks[i].replace(in_channels=blocks[i - 1].out_channels)
  return Arch(tuple(split_blocks(blocks, rule.split_threshold)))
