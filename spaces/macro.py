"""Macro (Zen-NAS PlainNet) architectures: block vocabulary, the `Arch` value, parsing, counters.

A macro architecture is a string of super-blocks, ``Name(args)`` written back to back, e.g.
``SuperConvK3BNRELU(3,8,1,1)SuperResK3K3(8,16,1,8,1)...SuperConvK1BNRELU(64,128,1,1)``, followed
implicitly by global average pooling and a linear classifier (idstcv/ZenNAS ``Masternet.py`` and
``PlainNet/``). The block families and what one sub-layer expands to:

* ``SuperConvK{1,3,5,7}BNRELU(in,out,stride,sub_layers)``: ``Conv k×k, BN, ReLU``.
* ``SuperResK{3,5,7}K{3,5,7}(in,out,stride,btn,sub_layers)``: ``[Conv k(->btn, s), BN, ReLU,
  Conv k(btn->out), BN]`` + shortcut, ReLU.
* ``SuperResK1K{3,5,7}K1(in,out,stride,btn,sub_layers)``: two 1×1/k×k/1×1 bottlenecks, the first
  strided; each + shortcut, ReLU. (Under the MAE-DET convention one sub-layer is *one* bottleneck.)
* ``SuperResIDWE{1,2,4,6}K{3,5,7}(in,out,stride,btn,sub_layers)``: two inverted bottlenecks
  (1×1 expand, depthwise k×k, 1×1 project), the first ending at ``btn`` channels.

Counters reproduce the reference code's numbers, quirks included, because search budgets are
defined by them:

* ``convention="zen"`` (idstcv/ZenNAS ``PlainNet/*.py``): FLOPs are multiply-accumulates
  ``Cin·Cout·k²·H_in²//s²`` per conv, ``C·H_out²`` per BN, ``in·out`` for the classifier, and a
  shortcut projection costs ``in·out·(H_out/s)² + out·(H_out/s)²`` (the already-strided
  resolution is divided by the stride again, in float). Params count a BN as ``C`` (not 2C), a
  projection as ``in·out + out`` (its BN is not counted) and the classifier as ``in·out + 1``.
  Layers are the sum of ``sub_layers``.
* ``convention="maedet"`` (alibaba/lightweight-neural-architecture-search ``tinynas/models``,
  the MAE-DET backbone space): a ``SuperConv`` sub-layer is a ``ConvKXBNRELU``, a
  ``SuperResK1KXK1`` sub-layer is one ``ResK1KXK1`` bottleneck (three convs). Conv FLOPs are
  ``(Cin·Cout·k²/g + 2·Cout)·H_out²`` plus ``Cout·H_out²`` per ReLU, a strided shortcut adds an
  average pool (``Cin·H_out²``) and the first bottleneck of a block always has a 1×1 projection;
  params count a BN as ``2·C``; there is no classifier; layers count one per conv.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Iterator

from rznas_jax.errors import UserError

FAMILIES = ("conv", "kxkx", "k1kxk1", "idw")
CONVENTIONS = ("zen", "maedet")


class StructureError(UserError):
  """A structure string that does not follow the block grammar.

  Attributes:
    reasons: one human-readable sentence per problem found.
  """

  def __init__(self, reasons: list[str] | str):
    self.reasons = [reasons] if isinstance(reasons, str) else list(reasons)
    super().__init__(" ".join(self.reasons))


@dataclasses.dataclass(frozen=True)
class BlockType:
  """One super-block class of the vocabulary.

  Attributes:
    name: the class name in structure strings, e.g. ``SuperResIDWE6K3``.
    family: ``"conv"``, ``"kxkx"``, ``"k1kxk1"`` or ``"idw"``.
    kernel: the k×k kernel size.
    expansion: the inverted-bottleneck expansion ratio (IDW only, else None).
  """

  name: str
  family: str
  kernel: int
  expansion: int | None = None

  @property
  def arg_names(self) -> tuple[str, ...]:
    if self.family == "conv":
      return ("in_channels", "out_channels", "stride", "sub_layers")
    return ("in_channels", "out_channels", "stride", "bottleneck_channels", "sub_layers")


def _vocabulary() -> dict[str, BlockType]:
  types = [BlockType(f"SuperConvK{k}BNRELU", "conv", k) for k in (1, 3, 5, 7)]
  types += [BlockType(f"SuperResK{k}K{k}", "kxkx", k) for k in (3, 5, 7)]
  types += [BlockType(f"SuperResK1K{k}K1", "k1kxk1", k) for k in (3, 5, 7)]
  types += [BlockType(f"SuperResIDWE{e}K{k}", "idw", k, e) for k in (3, 5, 7) for e in (1, 2, 4, 6)]
  return {t.name: t for t in types}


BLOCK_TYPES: dict[str, BlockType] = _vocabulary()


def smart_round(x: float, base: int = 8) -> int:
  """Zen-NAS ``global_utils.smart_round``: the nearest multiple of ``base``, at least ``base``.

  Python's ``round`` (halves to even) is part of the definition: ``smart_round(20) == 16``.
  """
  return max(base, round(x / float(base)) * base)


@dataclasses.dataclass(frozen=True)
class Block:
  """One super-block: its class name and integer arguments. Frozen and hashable.

  Values are not range-checked here (a space's ``validate`` does that, with reasons); only the
  class name and the presence of a bottleneck are, because without them the block has no meaning.

  Attributes:
    name: a key of ``BLOCK_TYPES``.
    in_channels, out_channels, stride, sub_layers: the arguments.
    bottleneck: ``bottleneck_channels`` of residual blocks; None for ``SuperConv`` blocks.
  """

  name: str
  in_channels: int
  out_channels: int
  stride: int
  sub_layers: int
  bottleneck: int | None = None

  def __post_init__(self):
    if self.name not in BLOCK_TYPES:
      raise StructureError(f"unknown block {self.name!r}; valid blocks are {', '.join(BLOCK_TYPES)}.")
    has_btn = self.bottleneck is not None
    if has_btn != (self.type.family != "conv"):
      raise StructureError(
          f"block {self.name} {'takes' if not has_btn else 'does not take'} bottleneck_channels.")

  @property
  def type(self) -> BlockType:
    return BLOCK_TYPES[self.name]

  @property
  def family(self) -> str:
    return self.type.family

  @property
  def kernel(self) -> int:
    return self.type.kernel

  @property
  def args(self) -> tuple[int, ...]:
    """The arguments in string order."""
    if self.bottleneck is None:
      return (self.in_channels, self.out_channels, self.stride, self.sub_layers)
    return (self.in_channels, self.out_channels, self.stride, self.bottleneck, self.sub_layers)

  @classmethod
  def from_args(cls, name: str, args: tuple[int, ...]) -> "Block":
    if name not in BLOCK_TYPES:
      raise StructureError(f"unknown block {name!r}; valid blocks are {', '.join(BLOCK_TYPES)}.")
    names = BLOCK_TYPES[name].arg_names
    if len(args) != len(names):
      raise StructureError(
          f"block {name}({','.join(map(str, args))}) has {len(args)} arguments; {name} takes "
          f"{len(names)}: ({', '.join(names)}).")
    if len(args) == 4:
      return cls(name, args[0], args[1], args[2], args[3])
    return cls(name, args[0], args[1], args[2], args[4], args[3])

  def replace(self, **changes) -> "Block":
    return dataclasses.replace(self, **changes)

  def __str__(self) -> str:
    return f"{self.name}({','.join(str(a) for a in self.args)})"


_BLOCK_TOKEN = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*\(([^()]*)\)\s*")


@dataclasses.dataclass(frozen=True)
class Arch:
  """A macro architecture: the tuple of its super-blocks. Frozen and hashable.

  Example:
    >>> a = Arch.parse("SuperConvK3BNRELU(3,8,1,1)SuperResK3K3(8,16,1,8,1)")
    >>> str(a), a.blocks[1].bottleneck
    ('SuperConvK3BNRELU(3,8,1,1)SuperResK3K3(8,16,1,8,1)', 8)
  """

  blocks: tuple[Block, ...]

  def __post_init__(self):
    object.__setattr__(self, "blocks", tuple(self.blocks))

  @classmethod
  def parse(cls, structure: str) -> "Arch":
    """Parses a structure string; see `parse_structure`."""
    return parse_structure(structure)

  @property
  def structure(self) -> str:
    """The canonical structure string (the genotype the LLM edits)."""
    return format_structure(self)

  genotype = structure

  def __str__(self) -> str:
    return self.structure

  def __len__(self) -> int:
    return len(self.blocks)

  def __iter__(self) -> Iterator[Block]:
    return iter(self.blocks)


def parse_structure(structure: str) -> Arch:
  """Parses ``Name(a,b,...)Name(...)...`` into an `Arch`; whitespace between tokens is allowed.

  Raises:
    StructureError: with one reason per malformed block (unknown name, wrong argument count,
      non-integer argument) or for text that is not a sequence of ``Name(args)``.
  """
  if not isinstance(structure, str):
    raise StructureError(f"a structure must be a string, got {type(structure).__name__}.")
  text = structure.strip()
  if not text:
    raise StructureError("the structure string is empty; write blocks such as "
                         "SuperConvK3BNRELU(3,8,1,1)SuperResK3K3(8,16,1,8,1).")
  blocks, reasons, pos = [], [], 0
  while pos < len(text):
    m = _BLOCK_TOKEN.match(text, pos)
    if m is None:
      rest = text[pos:pos + 40]
      reasons.append(f"cannot read a block at {rest!r} (character {pos}); each block is written "
                     "Name(arg,arg,...) with integer arguments, blocks back to back.")
      break
    name, raw = m.group(1), m.group(2)
    pos = m.end()
    pieces = [p.strip() for p in raw.split(",")] if raw.strip() else []
    bad = [p for p in pieces if not re.fullmatch(r"[+-]?\d+", p)]
    if bad:
      reasons.append(f"block {name}({raw}) has the non-integer argument {bad[0]!r}; every argument "
                     "must be an integer.")
      continue
    try:
      blocks.append(Block.from_args(name, tuple(int(p) for p in pieces)))
    except StructureError as e:
      reasons.extend(e.reasons)
  if reasons:
    raise StructureError(reasons)
  return Arch(tuple(blocks))


def format_structure(arch: Arch) -> str:
  """The canonical string of ``arch``; ``parse_structure(format_structure(a)) == a``."""
  return "".join(str(b) for b in arch.blocks)


def as_arch(arch_or_string: Arch | str) -> Arch:
  arch = arch_or_string if isinstance(arch_or_string, Arch) else parse_structure(arch_or_string)
  if not arch.blocks:
    raise StructureError("the structure has no blocks.")
  return arch


def idw_widths(block: Block) -> tuple[int, int]:
  """The depthwise widths of an IDW block: ``smart_round(btn·e)`` and ``smart_round(out·e)``."""
  e = float(block.type.expansion)
  return smart_round(block.bottleneck * e, 8), smart_round(block.out_channels * e, 8)


def _check_convention(convention: str):
  if convention not in CONVENTIONS:
    raise ValueError(f"unknown counter convention {convention!r}; valid: {', '.join(CONVENTIONS)}.")


# --- Zen-NAS counters ------------------------------------------------------------------------------


def _zen_se(c: int, h: int) -> tuple[float, int]:
  """FLOPs and params of ``SE(c)`` at resolution h (basic_blocks.SE: BN counted as 2C here)."""
  se = max(1, int(round(c * 0.25)))
  return c * se + se * c + c + c * h * h, c * se + 2 * se + se * c + 2 * c


def _zen_inner(convs, h: int, use_se: bool) -> tuple[float, int, int]:
  """FLOPs, params and output resolution of a conv/BN/ReLU chain.

  ``convs`` holds ``(cin, cout, k, stride, depthwise)``; an SE follows the ReLU of the second-last
  conv when ``use_se``.
  """
  flops, params = 0, 0
  for i, (cin, cout, k, s, dw) in enumerate(convs):
    if dw:
      flops += cout * k * k * h * h // s // s
      params += cout * k * k
    else:
      flops += cin * cout * k * k * h * h // s // s
      params += cin * cout * k * k
    h = h // s
    flops += h * h * cout  # BN
    params += cout
    if use_se and i == len(convs) - 2:
      f, p = _zen_se(cout, h)
      flops, params = flops + f, params + p
  return flops, params, h


def _zen_proj(cin: int, cout: int, h_out: int, stride: int) -> tuple[float, int]:
  r = (h_out / stride) ** 2  # ResBlock.get_FLOPs: the output resolution divided by s once more
  return cin * cout * r + r * cout, cin * cout + cout


def _zen_units(block: Block):
  """Yields ``(convs, in_channels, stride, always_project)`` for every residual unit of a block."""
  k, out, btn = block.kernel, block.out_channels, block.bottleneck
  last, s = block.in_channels, block.stride
  for i in range(block.sub_layers):
    if block.family == "conv":
      yield ((last, out, k, s, False),), last, s, None
    elif block.family == "kxkx":
      yield ((last, btn, k, s, False), (btn, out, k, 1, False)), last, s, i == 0
    elif block.family == "k1kxk1":
      yield ((last, btn, 1, 1, False), (btn, btn, k, s, False), (btn, out, 1, 1, False)), last, s, i == 0
      yield ((out, btn, 1, 1, False), (btn, btn, k, 1, False), (btn, out, 1, 1, False)), out, 1, False
    else:  # idw
      dw1, dw2 = idw_widths(block)
      yield ((last, dw1, 1, 1, False), (dw1, dw1, k, s, True), (dw1, btn, 1, 1, False)), last, s, i == 0
      yield ((btn, dw2, 1, 1, False), (dw2, dw2, k, 1, True), (dw2, out, 1, 1, False)), btn, 1, False
    last, s = out, 1


def _zen_block(block: Block, h: int, no_reslink: bool, use_se: bool) -> tuple[float, int, int]:
  flops, params = 0, 0
  for convs, cin, s, always_project in _zen_units(block):
    f, p, h = _zen_inner(convs, h, use_se and block.family != "conv")
    flops, params = flops + f, params + p
    cout = convs[-1][1]
    # ResBlockProj always projects; ResBlock projects when strided or when channels change.
    if always_project is not None and not no_reslink and (always_project or s > 1 or cin != cout):
      f, p = _zen_proj(cin, cout, h, s)
      flops, params = flops + f, params + p
  return flops, params, h


# --- MAE-DET counters ------------------------------------------------------------------------------


def _maedet_units(block: Block):
  """Yields ``(kind, cin, cout, stride)``: ``ConvKXBNRELU`` or ``ResK1KXK1`` units of a block."""
  last, s = block.in_channels, block.stride
  kind = "conv" if block.family == "conv" else "bottleneck"
  if block.family not in ("conv", "k1kxk1"):
    raise ValueError(f"the MAE-DET convention has no {block.name}; it counts SuperConv and "
                     "SuperResK1KXK1 blocks only.")
  for _ in range(block.sub_layers):
    yield kind, last, block.out_channels, s
    last, s = block.out_channels, 1


def _maedet_unit_cost(block: Block, kind: str, cin: int, cout: int, s: int, first: bool):
  """FLOPs per unit of input area and params of one MAE-DET unit (tinynas blocks)."""
  k = block.kernel
  if kind == "conv":  # ConvKXBNRELU: conv + BN (2C) + ReLU
    return cin * cout * k * k / s**2 + 2 * cout / s**2 + cout / s**2, cin * cout * k * k + 2 * cout
  btn = block.bottleneck
  flops = (cin * btn + 2 * btn) + (btn * btn * k * k / s**2 + 2 * btn / s**2) \
      + (btn * cout + 2 * cout) / s**2 + btn + btn / s**2 + cout / s**2
  params = cin * btn + 2 * btn + btn * btn * k * k + 2 * btn + btn * cout + 2 * cout
  if s == 2:
    flops += cin  # the 2x2 average pool of the shortcut
  if cin != cout or first:  # force_resproj on a block's first bottleneck
    flops += (cin * cout + 2 * cout) / s**2 + cout / s**2
    params += cin * cout + 2 * cout
  return flops, params


def _maedet_block(block: Block) -> tuple[float, float, int]:
  """FLOPs per unit of input area, params and layers of one block (BaseSuperBlock)."""
  flops, params, layers, area = 0.0, 0.0, 0, 1.0
  for j, (kind, cin, cout, s) in enumerate(_maedet_units(block)):
    f, p = _maedet_unit_cost(block, kind, cin, cout, s, j == 0)
    flops += f * area
    params += p
    layers += 1 if kind == "conv" else 3
    area /= s * s
  return flops, params, layers


# --- public counters -------------------------------------------------------------------------------


def count_flops(arch: Arch | str, resolution: int, num_classes: int = 1000, *, no_reslink: bool = False,
                use_se: bool = False, convention: str = "zen") -> float:
  """FLOPs (multiply-accumulates) of one forward pass at ``resolution``, as the reference counts.

  Args:
    arch: the architecture or its string.
    resolution: input height = width.
    num_classes: classifier width (``zen`` only; MAE-DET backbones have no classifier).
    no_reslink: leave out the shortcut projections (the network proxies score). Search budgets
      in Zen-NAS are checked *with* them (the default).
    use_se: count the training-time SE modules (``zen`` only).
    convention: ``"zen"`` (``MasterNet.get_FLOPs``) or ``"maedet"`` (``CnnNet.get_flops``).

  Returns:
    A float: Zen-NAS's projection term and MAE-DET's counter are not integers in general.
  """
  arch = as_arch(arch)
  _check_convention(convention)
  if convention == "maedet":
    total, res = 0.0, float(resolution)
    for b in arch.blocks:
      total += _maedet_block(b)[0] * res**2
      res /= b.stride  # CnnNet.get_flops divides in float
    return total
  total, h = 0.0, resolution
  for b in arch.blocks:
    f, _, h = _zen_block(b, h, no_reslink, use_se)
    total += f
  return total + arch.blocks[-1].out_channels * num_classes


def count_params(arch: Arch | str, num_classes: int = 1000, *, no_reslink: bool = False,
                 use_se: bool = False, convention: str = "zen") -> float:
  """Parameters as the reference counts them (``MasterNet.get_model_size`` / ``CnnNet``).

  Zen quirks: a BN counts C (the network has 2C), a shortcut projection ``in·out + out`` (conv
  weight + bias; its BN is not counted) and the classifier ``in·out + 1``. See `count_flops` for
  the arguments.
  """
  arch = as_arch(arch)
  _check_convention(convention)
  if convention == "maedet":
    return float(sum(_maedet_block(b)[1] for b in arch.blocks))
  total, h = 0, 1 << 20  # resolution does not matter for params
  for b in arch.blocks:
    _, p, h = _zen_block(b, h, no_reslink, use_se)
    total += p
  return float(total + arch.blocks[-1].out_channels * num_classes + 1)


def count_layers(arch: Arch | str, *, convention: str = "zen") -> int:
  """Depth: the sum of ``sub_layers`` (``zen``) or one per conv (``maedet``: 3 per bottleneck)."""
  arch = as_arch(arch)
  _check_convention(convention)
  if convention == "maedet":
    return sum(_maedet_block(b)[2] for b in arch.blocks)
  return sum(b.sub_layers for b in arch.blocks)
