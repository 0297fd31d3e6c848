"""MAE-DET: the analytic entropy score of a detection backbone (no network is run, no data)."""

from __future__ import annotations

import math
from typing import Sequence

from rznas_jax.proxies.base import register_analytic
from rznas_jax.spaces import macro

DETECTION_RATIOS = (0.0, 0.0, 1.0, 1.0, 6.0)  # multi_block_ratio of configs/detection/*.py


def _tinynas_blocks(arch: macro.Arch):
  """The arch as tinynas blocks: ``(log_std list, stride, out_channels)`` per block.

  A ``SuperConv`` sub-layer is one ``ConvKXBNRELU`` block (log std ``log√(in·k²)``); a
  ``SuperResK1KXK1`` block with L sub-layers is one ``SuperResK1KXK1`` block of L ``ResK1KXK1``
  bottlenecks, each with log std ``log√in + log√(btn·k²) + log√btn`` (the non-quantised branch of
  ``get_madnas_forward``).
  """
  out = []
  for b in arch.blocks:
    k = b.kernel
    if b.family == "conv":
      last, s = b.in_channels, b.stride
      for _ in range(b.sub_layers):
        out.append(([math.log(math.sqrt(last * k * k))], s, b.out_channels))
        last, s = b.out_channels, 1
    elif b.family == "k1kxk1":
      stds, last = [], b.in_channels
      for _ in range(b.sub_layers):
        stds.append(math.log(math.sqrt(last)) + math.log(math.sqrt(b.bottleneck * k * k))
                    + math.log(math.sqrt(b.bottleneck)))
        last = b.out_channels
      out.append((stds, b.stride, b.out_channels))
    else:
      raise ValueError(f"the MAE-DET score is defined for SuperConv and SuperResK1KXK1 blocks; "
                       f"{b.name} is neither.")
  return out


def maedet_score(arch: macro.Arch | str,
                 multi_block_ratio: Sequence[float] = DETECTION_RATIOS) -> float:
  """The MAE-DET score (Sun et al., ICML 2022) as tinynas ``compute_madnas.py`` computes it.

  With the blocks' log stds concatenated in order (the stem included), a stage ending before
  every stride-2 block after the first and at the last block, ``B_s`` the number of tinynas
  blocks up to the end of stage s (cumulative) and ``C_s`` its output channels:
  ``score = Σ_s ratio_s · (Σ_{b < B_s} log_std_b + log C_s)``; stages whose ratio is 0 add 0.

  Args:
    arch: the backbone (an `Arch` or its string), read in the MAE-DET convention.
    multi_block_ratio: one weight per stage; ``(0, 0, 1, 1, 6)`` for detection.

  Returns:
    The score; higher is better.

  Raises:
    ValueError: if the number of stages differs from ``len(multi_block_ratio)``, or for a block
      the score does not define.
  """
  arch = macro.as_arch(arch)
  blocks = _tinynas_blocks(arch)
  stds = [s for block_stds, _, _ in blocks for s in block_stds]
  stage_block_num, stage_channels = [], []
  count, channels = 0, 0
  for idx, (block_stds, stride, out) in enumerate(blocks):
    if stride == 2 and idx > 0:
      stage_block_num.append(count)
      stage_channels.append(channels)
    count += len(block_stds)
    channels = out
  stage_block_num.append(count)
  stage_channels.append(channels)
  if len(stage_block_num) != len(multi_block_ratio):
    raise ValueError(f"the structure has {len(stage_block_num)} stages but multi_block_ratio has "
                     f"{len(multi_block_ratio)} weights; MAE-DET needs one weight per stage.")
  score = 0.0
  for ratio, n, c in zip(multi_block_ratio, stage_block_num, stage_channels):
    if ratio == 0:
      continue
    score += ratio * (sum(stds[:n]) + math.log(c))
  return score


# The tinynas block reading of `_tinynas_blocks` is the maedet convention's (one K1KXK1 sub-layer,
# one bottleneck); under Zen-NAS's convention the score would mean something else.
@register_analytic("maedet", costs=("arch",), convention="maedet", home_spaces=("maedet_coco",),
                   source="alibaba/lightweight-neural-architecture-search tinynas/scores/compute_madnas.py")
def maedet(costs: dict) -> float:
  """The MAE-DET score of ``costs["arch"]``; an analytic proxy (see ``analytic.params``).

  Args:
    costs: the space's cost dict (``MacroSpace.costs``): ``costs["arch"]`` is the `Arch` (or
      its string); an optional ``costs["multi_block_ratio"]`` overrides the detection weights
      ``(0, 0, 1, 1, 6)``.

  Returns:
    `maedet_score`; higher is better.
  """
  return maedet_score(costs["arch"], costs.get("multi_block_ratio", DETECTION_RATIOS))
