"""Pictures of an architecture: the NB201 cell as a small graph, a macro network as a block
diagram with channels and strides.
"""

from __future__ import annotations

import math

from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from rznas_jax.report.figures import save
from rznas_jax.spaces import macro
from rznas_jax.spaces import nb201

# NB201 edges in genotype order: node j takes the sum of its edges from nodes i < j.
NB201_EDGES = ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))
OP_STYLE = {  # short label, colour
    "none": ("none", "lightgray"),
    "skip_connect": ("skip", "tab:green"),
    "nor_conv_1x1": ("conv 1×1", "tab:orange"),
    "nor_conv_3x3": ("conv 3×3", "tab:red"),
    "avg_pool_3x3": ("avg pool 3×3", "tab:purple"),
}
# arc3 curvature of each edge: 0->2 and 0->3 above the nodes (0->3 higher), 1->3 below, so that
# no two arcs cross.
EDGE_CURVES = {(0, 1): 0.0, (1, 2): 0.0, (2, 3): 0.0, (0, 2): -0.45, (0, 3): -0.5, (1, 3): 0.45}


def nb201_cell(genotype: str, path: str, *, title: str | None = None) -> str:
  """Draws an NB201 cell: nodes 0 (input) to 3 (output), each edge labelled with its op.

  ``none`` edges are drawn faint and dashed: they carry nothing.

  Args:
    genotype: e.g. ``|nor_conv_3x3~0|+|none~0|skip_connect~1|+|...|``.
    path: the PNG to write.
    title: the figure's title (default: the genotype).

  Raises:
    GenotypeError: ``genotype`` is not an NB201 cell.
  """
  arch = nb201.parse_genotype(genotype)
  fig = Figure(figsize=(7.0, 3.4), layout="constrained")
  ax = fig.add_subplot(1, 1, 1)
  xs = [0.0, 1.0, 2.0, 3.0]
  for (i, j), op in zip(NB201_EDGES, arch.ops):
    label, colour = OP_STYLE[op]
    rad = EDGE_CURVES[(i, j)]
    dashed = op == "none"
    ax.add_patch(FancyArrowPatch((xs[i], 0), (xs[j], 0), connectionstyle=f"arc3,rad={rad}",
                                 arrowstyle="-|>", mutation_scale=12, shrinkA=13, shrinkB=13,
                                 color=colour, linewidth=1.2 if dashed else 2.2,
                                 linestyle="--" if dashed else "-"))
    # The arc's midpoint: halfway between the chord's midpoint and arc3's control point.
    mx, my = (xs[i] + xs[j]) / 2, -rad * (xs[j] - xs[i]) / 2
    ax.text(mx, my, label, ha="center", va="center", fontsize=8, color="black",
            bbox=dict(boxstyle="round,pad=0.2", fc="white", ec=colour, lw=0.8))
  for k, x in enumerate(xs):
    ax.scatter([x], [0], s=420, color="white", edgecolors="black", zorder=3)
    ax.text(x, 0, str(k), ha="center", va="center", fontsize=10, zorder=4)
  ax.text(xs[0], -0.2, "input", ha="center", va="top", fontsize=8)
  ax.text(xs[3], -0.2, "output", ha="center", va="top", fontsize=8)
  ax.set_xlim(-0.4, 3.4)
  ax.set_ylim(-0.7, 1.0)
  ax.set_aspect("equal")
  ax.axis("off")
  fig.suptitle(title or genotype, fontsize=8)
  return save(fig, path)


def _block_text(block: macro.Block) -> str:
  text = f"{block.name}\n{block.in_channels}→{block.out_channels} ch, stride {block.stride}"
  if block.bottleneck is not None:
    text += f", bottleneck {block.bottleneck}"
  return text + f", ×{block.sub_layers}"


def macro_blocks(structure: str, path: str, *, title: str | None = None) -> str:
  """Draws a macro network as a top-to-bottom chain of blocks.

  Each box names the block and gives its channels, stride, bottleneck and repeats; its width
  grows with the output channels (log scale); stride-2 blocks are shaded.

  Args:
    structure: e.g. ``SuperConvK3BNRELU(3,8,1,1)SuperResK3K3(8,16,2,8,1)``.
    path: the PNG to write.
    title: the figure's title.

  Raises:
    StructureError: ``structure`` is not a macro architecture string.
  """
  arch = macro.parse_structure(structure)
  blocks = list(arch.blocks)
  n = len(blocks)
  fig = Figure(figsize=(6.0, 0.62 * n + 1.0), layout="constrained")
  ax = fig.add_subplot(1, 1, 1)
  widest = max(math.log2(max(b.out_channels, 1)) for b in blocks) or 1.0
  for k, block in enumerate(blocks):
    y = n - 1 - k
    w = 0.45 + 0.5 * math.log2(max(block.out_channels, 1)) / widest
    colour = "moccasin" if block.stride > 1 else "lightsteelblue"
    ax.add_patch(FancyBboxPatch((-w / 2, y - 0.3), w, 0.6, boxstyle="round,pad=0.02",
                                fc=colour, ec="black", lw=0.8))
    ax.text(0, y, _block_text(block), ha="center", va="center", fontsize=7)
    if k + 1 < n:
      ax.add_patch(FancyArrowPatch((0, y - 0.32), (0, y - 0.68), arrowstyle="-|>",
                                   mutation_scale=8, color="black"))
  ax.set_xlim(-0.75, 0.75)
  ax.set_ylim(-0.6, n - 0.4)
  ax.axis("off")
  fig.suptitle(title or f"{n} blocks (shaded: stride 2)", fontsize=9)
  return save(fig, path)
