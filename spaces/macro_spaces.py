"""The three macro search spaces of RZ-NAS: allowed blocks, budgets, initial structures, validation.

* ``zen_cifar``: Zen-NAS's ResNet-like CIFAR space (``search_space_XXBL.py``), resolution 32,
  params ≤ 1M (max 18 layers) or 2M (max 20), 100 classes as in the Zen-NAS search scripts.
* ``mobilenet_imagenet``: the MobileNetV2-like IDW space of Zen-NAS/ZiCo
  (``search_space_IDW_fixfc.py``), resolution 224, FLOPs ≤ 450M/600M (max 14 layers) or 1000M
  (max 16), 1000 classes.
* ``maedet_coco``: the MAE-DET detection backbone space (tinynas ``configs/detection/
  R50_FLOPs.py``): a 3×3 stem and ``SuperResK1KXK1`` stages, resolution 480, FLOPs ≤ 188e8 and
  ≤ 91 layers counted the MAE-DET way (one sub-layer is one 3-conv bottleneck), five stages for
  the MAE-DET score.

Budgets are checked with the networks' shortcut projections included, as Zen-NAS does
(``no_reslink=False`` in its budget checks); proxies later score the plain network.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any, Callable, Sequence

import numpy as np

from rznas_jax.spaces import macro
from rznas_jax.spaces import macro_mutation
from rznas_jax.spaces import reply_format
from rznas_jax.spaces.base import Operation, ReplyFormat, SpaceError, source_of
from rznas_jax.spaces.macro import Arch

CIFAR_INITIAL = ("SuperConvK3BNRELU(3,8,1,1)SuperResK3K3(8,16,1,8,1)SuperResK3K3(16,32,2,16,1)"
                 "SuperResK3K3(32,64,2,32,1)SuperResK3K3(64,64,2,32,1)SuperConvK1BNRELU(64,128,1,1)")
IMAGENET_INITIAL = ("SuperConvK3BNRELU(3,8,2,1)SuperResIDWE6K3(8,32,2,8,1)SuperResIDWE6K3(32,48,2,32,1)"
                    "SuperResIDWE6K3(48,96,2,48,1)SuperResIDWE6K3(96,128,2,96,1)"
                    "SuperConvK1BNRELU(128,2048,1,1)")
# ZiCo's published 450M-FLOPs ImageNet architecture (SLDGroup/ZiCo), for reference and tests.
ZICO_450M = ("SuperConvK3BNRELU(3,16,2,1)SuperResIDWE1K7(16,40,2,40,1)SuperResIDWE2K7(40,80,2,64,1)"
             "SuperResIDWE4K7(80,96,2,96,5)SuperResIDWE2K7(96,224,2,224,5)SuperConvK1BNRELU(224,2048,1,1)")
# tinynas configs/detection/R50_FLOPs.py, written in the block grammar.
MAEDET_INITIAL = ("SuperConvK3BNRELU(3,32,2,1)SuperResK1K3K1(32,256,2,64,1)SuperResK1K3K1(256,512,2,128,1)"
                  "SuperResK1K3K1(512,768,2,256,1)SuperResK1K3K1(768,1024,1,256,1)"
                  "SuperResK1K3K1(1024,2048,2,512,1)")

CONV_BLOCKS = tuple(f"SuperConvK{k}BNRELU" for k in (1, 3, 5, 7))
KXKX_BLOCKS = tuple(f"SuperResK{k}K{k}" for k in (3, 5, 7))
K1KXK1_BLOCKS = tuple(f"SuperResK1K{k}K1" for k in (3, 5, 7))
IDW_BLOCKS = tuple(f"SuperResIDWE{e}K{k}" for k in (3, 5, 7) for e in (1, 2, 4, 6))

_BLOCK_TEXT = {
    "conv": "SuperConvK{k}BNRELU(in,out,stride,sub_layers): sub_layers × [Conv k×k, BN, ReLU]; "
            "only the first conv is strided.",
    "kxkx": "SuperResK{k}K{k}(in,out,stride,btn,sub_layers): sub_layers × residual "
            "[Conv k×k (->btn, stride), BN, ReLU, Conv k×k (btn->out), BN] + shortcut, ReLU.",
    "k1kxk1": "SuperResK1K{k}K1(in,out,stride,btn,sub_layers): sub_layers × two residual bottlenecks "
              "[Conv 1×1 (->btn), BN, ReLU, Conv k×k (btn->btn, stride on the first), BN, ReLU, "
              "Conv 1×1 (btn->out), BN] + shortcut, ReLU.",
    "k1kxk1_maedet": "SuperResK1K{k}K1(in,out,stride,btn,sub_layers): sub_layers × one residual "
                     "bottleneck [Conv 1×1 (->btn), BN, ReLU, Conv k×k (btn->btn, stride on the "
                     "first), BN, ReLU, Conv 1×1 (btn->out), BN] + shortcut, ReLU; 3 layers each.",
    "idw": "SuperResIDWE{e}K{k}(in,out,stride,btn,sub_layers): sub_layers × two residual inverted "
           "bottlenecks: [Conv 1×1 (->btn·e), BN, ReLU, depthwise k×k (stride on the first), BN, "
           "ReLU, Conv 1×1 (->btn), BN] then [Conv 1×1 (btn->out·e), BN, ReLU, depthwise k×k, BN, "
           "ReLU, Conv 1×1 (->out), BN], each + shortcut, ReLU (MobileNetV2-like, expansion e).",
}


@dataclasses.dataclass(frozen=True)
class MacroSpace(ReplyFormat):
  """A macro search space: grammar subset, budgets and the settings its networks are built with.

  Attributes:
    name: ``zen_cifar``, ``mobilenet_imagenet`` or ``maedet_coco``.
    allowed_blocks: block names a structure may use.
    resolution: input size the FLOPs budget and proxies use.
    num_classes: classifier width (Zen-NAS counts the classifier in params and FLOPs).
    max_layers: layer limit, counted with ``macro.count_layers(convention=...)``.
    budget_params: parameter budget, or None.
    budget_flops: FLOPs budget, or None.
    initial: the initial structure of the search.
    convention: counter and builder convention, ``"zen"`` or ``"maedet"``.
    mutation: the random mutation rule of the original (non-LLM) search.
    stem_only: blocks allowed only as the first block.
    num_stages: exact number of stages required (MAE-DET's score has one weight per stage).
    min_channels, max_channels, channel_multiple: width constraints on out and bottleneck.
    input_channels: what the first block must take (RGB).
    configured: the settings `configure` was given, kept so that a later `configure` adds to them.
    normalization: the per-channel statistics real images are normalised with when proxies read
      them (``rznas_jax.scorer.NORMALIZATIONS``): CIFAR's for zen_cifar, ImageNet's elsewhere.
    initial_mutations: at most this many random mutations of the initial structure make each
      member of the search's initial population (Zen-NAS starts from random mutations of the
      initial structure under the budget).
  """

  name: str
  allowed_blocks: tuple[str, ...]
  resolution: int
  num_classes: int
  max_layers: int
  budget_params: float | None
  budget_flops: float | None
  initial: str
  convention: str = "zen"
  mutation: macro_mutation.MutationRule = macro_mutation.XXBL
  stem_only: tuple[str, ...] = ()
  num_stages: int | None = None
  min_channels: int = 8
  max_channels: int = 2048
  channel_multiple: int = 8
  input_channels: int = 3
  initial_mutations: int = 8
  normalization: str = "imagenet"
  configured: tuple[tuple[str, Any], ...] = dataclasses.field(default=(), compare=False)

  size = None  # not enumerable
  SETTINGS = ("resolution", "num_classes", "budget_flops", "budget_params", "max_layers")
  SCORING_OPTIONS = ("scan", "dataset")
  NETWORK_OPTIONS = ("no_reslink", "use_se")
  CONFIG_SECTION = "macro"
  COST_KEYS = ("params", "flops", "layers")

  @property
  def initial_arch(self) -> Arch:
    return macro.parse_structure(self.initial)

  def parse(self, structure: str) -> Arch:
    """Parses with the block grammar (raises ``macro.StructureError``); see `validate`."""
    return macro.parse_structure(structure)

  def validate(self, arch_or_string: Arch | str) -> list[str]:
    """Every reason ``arch_or_string`` is not a member of this space; empty when it is valid.

    Each reason is one sentence that names the bad value and what would be valid, meant to go
    back to the LLM (docs/search.md, Reply parsing). Never raises for a string.
    """
    if isinstance(arch_or_string, Arch):
      arch = arch_or_string
    else:
      try:
        arch = macro.parse_structure(arch_or_string)
      except macro.StructureError as e:
        return list(e.reasons)
    if not arch.blocks:
      return ["the structure has no blocks."]
    reasons: list[str] = []
    sane = True  # every block has values the counters can work with
    lo, hi, mult = self.min_channels, self.max_channels, self.channel_multiple
    for i, b in enumerate(arch.blocks):
      where = f"block {i + 1} {b}"
      if b.name not in self.allowed_blocks:
        reasons.append(f"{where}: {b.name} is not in the {self.name} space; allowed blocks are "
                       f"{', '.join(self.allowed_blocks)}.")
      elif b.name in self.stem_only and i > 0:
        reasons.append(f"{where}: {b.name} may only be the first block (the stem) in the "
                       f"{self.name} space.")
      widths = [("out_channels", b.out_channels)]
      if b.bottleneck is not None:
        widths.append(("bottleneck_channels", b.bottleneck))
      for arg, c in widths:
        if not lo <= c <= hi:
          reasons.append(f"{where}: {arg} {c} is outside [{lo}, {hi}]; use a multiple of {mult} "
                         f"in that range.")
          sane = sane and c > 0
        elif c % mult:
          reasons.append(f"{where}: {arg} {c} is not a multiple of {mult}.")
      if b.stride not in (1, 2):
        reasons.append(f"{where}: stride {b.stride} is not 1 or 2.")
        sane = False
      if b.sub_layers < 1:
        reasons.append(f"{where}: sub_layers {b.sub_layers} must be at least 1.")
        sane = False
      if i == 0:
        if b.in_channels != self.input_channels:
          reasons.append(f"the first block {b} takes {b.in_channels} input channels; it must take "
                         f"{self.input_channels} (the RGB image).")
      elif b.in_channels != arch.blocks[i - 1].out_channels:
        reasons.append(f"{where} takes {b.in_channels} input channels, but the previous block "
                       f"outputs {arch.blocks[i - 1].out_channels}; in_channels must equal the "
                       "previous block's out_channels.")
      sane = sane and b.in_channels > 0
    if not sane:
      return reasons
    halvings = sum(1 for b in arch.blocks if b.stride == 2)
    if self.resolution >> halvings < 1:
      reasons.append(f"the structure halves the resolution {halvings} times; a {self.resolution}-pixel "
                     f"input allows at most {self.resolution.bit_length() - 1} stride-2 blocks.")
      return reasons
    if self.num_stages is not None:
      inner = sum(1 for b in arch.blocks[1:] if b.stride == 2)
      if inner + 1 != self.num_stages:
        reasons.append(f"the structure has {inner} stride-2 blocks after the first block, so "
                       f"{inner + 1} stages; the {self.name} space needs exactly {self.num_stages} "
                       f"stages ({self.num_stages - 1} stride-2 blocks after the stem).")
    if any(b.name not in self.allowed_blocks for b in arch.blocks):
      return reasons  # the counters may not know a foreign block under this convention
    layers = macro.count_layers(arch, convention=self.convention)
    if layers > self.max_layers:
      unit = "sum of sub_layers" if self.convention == "zen" else "convolution layers"
      reasons.append(f"the structure has {layers} layers ({unit}), more than the maximum "
                     f"{self.max_layers}.")
    costs = self.costs(arch)
    if self.budget_params is not None and costs["params"] > self.budget_params:
      reasons.append(f"the structure has {costs['params']:,.0f} parameters, over the budget of "
                     f"{self.budget_params:,.0f}.")
    if self.budget_flops is not None and costs["flops"] > self.budget_flops:
      reasons.append(f"the structure has {costs['flops']:,.0f} FLOPs at resolution "
                     f"{self.resolution}, over the budget of {self.budget_flops:,.0f}.")
    return reasons

  def is_valid(self, arch_or_string: Arch | str) -> bool:
    return not self.validate(arch_or_string)

  def costs(self, arch: Arch | str) -> dict:
    """The analytic proxies' input (``proxies/analytic.py``, ``proxies/maedet.py``).

    Returns:
      ``{"params", "flops", "layers"}`` from the space's counters (shortcuts included, as
      budgets are), plus ``"arch"``, ``"resolution"`` and ``"convention"``.
    """
    arch = macro.as_arch(arch)
    kw = dict(convention=self.convention)
    return {
        "params": macro.count_params(arch, self.num_classes, **kw),
        "flops": macro.count_flops(arch, self.resolution, self.num_classes, **kw),
        "layers": macro.count_layers(arch, **kw),
        "arch": arch,
        "resolution": self.resolution,
        "convention": self.convention,
    }

  def model(self, arch: Arch | str, *, no_reslink: bool = True, use_se: bool = False,
            scan: bool = False):
    """The Flax network of ``arch`` in this space (``no_reslink=True``: the proxies' form)."""
    from rznas_jax.spaces import macro_net  # Flax only when a network is wanted
    return macro_net.MacroNetwork(macro.as_arch(arch), self.num_classes, no_reslink=no_reslink,
                                  use_se=use_se, convention=self.convention, scan=scan)

  def mutate(self, arch: Arch | str, rng: np.random.Generator, num_replaces: int = 1) -> Arch:
    """Zen-NAS's random mutation with this space's rule (``macro_mutation.mutate``)."""
    return macro_mutation.mutate(arch, rng, self.mutation, num_replaces)

  def description(self) -> str:
    """A plain-text account of the space for an LLM prompt: grammar, blocks, rules, budget."""
    families = []
    for name in self.allowed_blocks:
      fam = macro.BLOCK_TYPES[name].family
      key = "k1kxk1_maedet" if fam == "k1kxk1" and self.convention == "maedet" else fam
      if key not in families:
        families.append(key)
    lines = [
        f"Search space {self.name}: a network is a string of blocks written back to back, "
        "Name(arg,...)Name(arg,...)..., followed by global average pooling and a linear "
        f"classifier ({self.num_classes} classes). Input images are "
        f"{self.resolution}×{self.resolution} RGB.",
        f"Allowed blocks: {', '.join(self.allowed_blocks)}.",
        "What the blocks compute (k = kernel size; in/out/btn = input/output/bottleneck channels):",
    ]
    lines += [f"- {_BLOCK_TEXT[f]}" for f in families]
    if self.stem_only:
      lines.append(f"- {', '.join(self.stem_only)} may only be the first block (the stem).")
    lines += [
        "Rules:",
        f"- the first block takes {self.input_channels} input channels; every other block's in "
        "equals the previous block's out;",
        f"- out and btn are multiples of {self.channel_multiple} in [{self.min_channels}, "
        f"{self.max_channels}]; stride is 1 or 2 (2 halves the resolution); sub_layers ≥ 1;",
        f"- at most {self.max_layers} layers "
        + ("(the sum of sub_layers);" if self.convention == "zen"
           else "(one per convolution: 1 per stem sub-layer, 3 per bottleneck);"),
    ]
    if self.budget_params is not None:
      lines.append(f"- at most {_human(self.budget_params)} parameters;")
    if self.budget_flops is not None:
      lines.append(f"- at most {_human(self.budget_flops)} FLOPs (multiply-accumulates) at "
                   f"resolution {self.resolution};")
    if self.num_stages is not None:
      lines.append(f"- exactly {self.num_stages - 1} stride-2 blocks after the stem "
                   f"({self.num_stages} stages).")
    lines.append(f"Initial structure: {self.initial}")
    return "\n".join(lines)


  def family_text(self, name: str) -> str:
    """The sentence that describes block ``name``'s family (as `description` lists it)."""
    fam = macro.BLOCK_TYPES[name].family
    return _BLOCK_TEXT["k1kxk1_maedet" if fam == "k1kxk1" and self.convention == "maedet" else fam]

  # --- the `Space` protocol (spaces/base.py) -----------------------------------------------------

  def configure(self, **settings: Any) -> "MacroSpace":
    """This space rebuilt with ``settings`` (`SETTINGS`; None keeps the space's own value).

    The budgets go to the space's factory when it takes them (``zen_cifar(params=...)``,
    ``mobilenet_imagenet(flops=...)``), since the factory derives the layer limit from its
    budget; a budget the factory does not take (a FLOPs budget on zen_cifar) is set on the space.
    """
    given = {**dict(self.configured), **{k: v for k, v in settings.items() if v is not None}}
    if not given or given == dict(self.configured):
      return self
    factory = SPACES[self.name]
    accepted = inspect.signature(factory).parameters
    kwargs = {k: given[k] for k in ("resolution", "num_classes", "max_layers") if k in given}
    later = {}
    for field, kwarg in (("budget_params", "params"), ("budget_flops", "flops")):
      if field in given:
        if kwarg in accepted:
          kwargs[kwarg] = given[field]
        else:
          later[field] = given[field]
    for k, v in kwargs.items():
      if v is not None and v <= 0:
        raise SpaceError(f"{k} is {v} for the {self.name} space; it must be positive.")
    return dataclasses.replace(factory(**kwargs), **later, configured=tuple(sorted(given.items())))

  def canonical(self, arch: Arch) -> str:
    return arch.structure

  def check(self, genotype: str) -> tuple[str | None, list[str]]:
    reasons = self.validate(genotype)
    if reasons:
      return None, reasons
    return macro.format_structure(macro.parse_structure(genotype)), []

  def archs(self, spec: str, seed: int) -> list[Arch]:
    """``random:N``, ``initial`` or structure strings separated by ';' or whitespace.

    ``random:N``: N distinct valid architectures from a random walk of the space's mutation from
    its initial structure, seeded by ``seed``. ``initial`` (also inside a list): the space's
    initial structure. Every architecture is validated: SpaceError naming the first bad one and
    its reasons.
    """
    text = spec.strip()
    if text.startswith("random:"):
      count = text[len("random:"):].strip()
      if not count.isdigit() or int(count) < 1:
        raise SpaceError(f"{spec!r} needs a positive count after 'random:', e.g. random:100; the "
                         f"{self.name} space cannot be enumerated.")
      from rznas_jax import macro_scoring  # pylint: disable=g-import-not-at-top  (imports JAX)
      return macro_scoring.random_archs(self, int(count), seed)
    items = [self.initial if item == "initial" else item for item in split_structures(text)]
    if not items:
      raise SpaceError(f"{spec!r} is empty; give 'initial', 'random:N' or structure strings "
                       f"separated by ';', e.g. {self.initial}.")
    archs = []
    for i, item in enumerate(items):
      where = f"structure {i + 1} of {len(items)}" if len(items) > 1 else "structure"
      shown = item if len(item) <= 300 else item[:300] + "..."
      try:
        arch = self.parse(item)
      except macro.StructureError as e:
        raise SpaceError(f"{where} {shown!r} is malformed: {' '.join(e.reasons)}") from None
      reasons = self.validate(arch)
      if reasons:
        raise SpaceError(f"{where} {shown!r} is not in the {self.name} space: {' '.join(reasons)}")
      archs.append(arch)
    return archs

  def random_population(self, n: int, rng: np.random.Generator, max_tries: int = 200) -> list[str]:
    """``n`` distinct valid structures, each a chain of random mutations of the initial one."""
    out: list[str] = []
    seen: set[str] = set()
    for _ in range(n * max_tries):
      if len(out) == n:
        return out
      current = self.initial
      for _ in range(int(rng.integers(1, self.initial_mutations + 1))):
        child = self.random_mutation(current, rng)
        if not self.validate(child):
          current = child
      if current not in seen:
        seen.add(current)
        out.append(current)
    raise SpaceError(f"found only {len(out)} distinct valid structures of {self.name} for a "
                     f"population of {n}; lower search.population or loosen the budget.")

  def random_mutation(self, genotype: str, rng: np.random.Generator) -> str:
    """Zen-NAS's mutation (one block position; the child may break the budget: check it)."""
    return macro.format_structure(self.mutate(genotype, rng, num_replaces=1))

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
    from rznas_jax.spaces import macro_net  # pylint: disable=g-import-not-at-top  (Flax)
    code = "\n\n".join([source_of(macro_net.Unit), source_of(macro_net.SuperBlock)])
    return [Operation(name, self.family_text(name), code) for name in self.allowed_blocks]

  def rules(self) -> str:
    return self.description()

  def construction_code(self) -> str:
    from rznas_jax.spaces import macro_net  # pylint: disable=g-import-not-at-top
    return "\n\n".join([source_of(macro_net.sub_layer_specs), source_of(macro_net.MacroNetwork)])

  def example(self) -> tuple[str, str, str]:
    parent = self.initial
    rng = np.random.default_rng(0)
    for _ in range(100):
      child = self.random_mutation(parent, rng)
      if child != parent and not self.validate(child):
        edits = ", ".join(self.edits(parent, child)) or "a parameter change"
        return (parent, child, f"The change ({edits}) keeps every block chained and stays within "
                "the layer and budget limits, and it gives the network more capacity where the "
                "parent was thin.")
    return parent, parent, "No valid change was found."

  def reply_expression(self):
    return reply_format.macro_genotype(self)

  def network(self, arch: Arch | str, *, num_classes: int | None = None,
              image_shape: tuple[int, int, int] | None = None, no_reslink: bool = False,
              use_se: bool = False):
    """``(module, init)``: the network of ``arch`` as it is trained (Zen-NAS shortcuts unless
    ``no_reslink``) and ``init(key)``, its PyTorch-default variables for ``image_shape``."""
    from rznas_jax.spaces import macro_net  # pylint: disable=g-import-not-at-top
    space = self.configure(num_classes=num_classes)
    module = space.model(arch, no_reslink=no_reslink, use_se=use_se)
    shape = image_shape or (self.resolution, self.resolution, 3)
    return module, lambda key: macro_net.init_variables(module, key, shape)

  def check_proxies(self, names: Sequence[str]) -> None:
    from rznas_jax import macro_scoring  # pylint: disable=g-import-not-at-top
    from rznas_jax import proxies as proxy_lib  # pylint: disable=g-import-not-at-top
    proxy_lib.check_for_space(names, tuple(self.costs(self.initial)), self.name,
                              convention=self.convention,
                              reports_blocks=macro_scoring.REPORTS_BLOCKS)

  def scorer(self, proxies: Sequence[str], *, images=None, batch_size: int = 64, seed: int = 0,
             devices: Sequence[Any] | None = None, scan: bool = False, dataset: str | None = None):
    """A `MacroScorer`; ``dataset`` names the normalisation of real images (default: the
    space's, CIFAR for zen_cifar, else ImageNet); several ``devices`` score side by side."""
    from rznas_jax import macro_scoring  # pylint: disable=g-import-not-at-top
    if dataset is not None and dataset not in macro_scoring.NORMALIZATIONS:
      raise SpaceError(f"dataset {dataset!r} is not a normalisation of real images for the "
                       f"{self.name} space; valid: {', '.join(macro_scoring.NORMALIZATIONS)}.")
    self.check_proxies(proxies)
    return macro_scoring.MacroScorer(proxies, self, images=images, batch_size=batch_size, seed=seed,
                                     scan=scan, normalization=dataset,
                                     devices=list(devices) if devices is not None else None)

  def benchmark(self, path: str | None = None):
    """None: no table of trained accuracies exists for this space (a ``path`` is an error)."""
    if path:
      raise SpaceError(f"the {self.name} space has no benchmark table (its accuracies need "
                       f"training), so benchmark {path!r} cannot be used with it.")
    return None

  def draw(self, genotype: str, path: str, title: str | None = None) -> None:
    from rznas_jax.report import drawing  # pylint: disable=g-import-not-at-top  (matplotlib)
    drawing.macro_blocks(genotype, path, title=title)


def split_structures(spec: str) -> list[str]:
  """Splits a list of structures into items at ';' and whitespace outside parentheses.

  Commas separate a block's arguments, so they cannot separate architectures; whitespace inside
  ``Name(3, 8, 1, 1)`` stays with its block.
  """
  items, current, depth = [], [], 0
  for ch in spec:
    if ch == "(":
      depth += 1
    elif ch == ")":
      depth = max(0, depth - 1)
    if depth == 0 and (ch == ";" or ch.isspace()):
      if current:
        items.append("".join(current))
      current = []
    else:
      current.append(ch)
  if current:
    items.append("".join(current))
  return items


def _human(x: float) -> str:
  """``1.23M`` / ``450M`` / ``18.8G`` with three significant digits."""
  for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
    if abs(x) >= scale:
      return f"{x / scale:.3g}{suffix}"
  return f"{x:.3g}"


def zen_cifar(params: float = 1e6, max_layers: int | None = None, num_classes: int = 100,
              resolution: int = 32) -> MacroSpace:
  """Zen-NAS's CIFAR space: params ≤ 1M with 18 layers, or 2M with 20 (Zen-NAS scripts)."""
  if max_layers is None:
    max_layers = 18 if params <= 1e6 else 20
  return MacroSpace("zen_cifar", CONV_BLOCKS + KXKX_BLOCKS + K1KXK1_BLOCKS, resolution, num_classes,
                    max_layers, budget_params=params, budget_flops=None, initial=CIFAR_INITIAL,
                    mutation=macro_mutation.XXBL,
                    normalization="cifar10" if num_classes == 10 else "cifar100")


def mobilenet_imagenet(flops: float = 450e6, max_layers: int | None = None,
                       num_classes: int = 1000, resolution: int = 224) -> MacroSpace:
  """The IDW (MobileNetV2-like) ImageNet space: 450M/600M FLOPs with 14 layers, 1000M with 16."""
  if max_layers is None:
    max_layers = 14 if flops <= 600e6 else 16
  return MacroSpace("mobilenet_imagenet", CONV_BLOCKS + IDW_BLOCKS, resolution, num_classes,
                    max_layers, budget_params=None, budget_flops=flops, initial=IMAGENET_INITIAL,
                    mutation=macro_mutation.IDW)


def maedet_coco(flops: float = 188e8, max_layers: int = 91, resolution: int = 480,
                num_classes: int = 1000) -> MacroSpace:
  """MAE-DET's detection backbone space (ResNet-50 FLOPs at 480 px, ≤ 91 layers, 5 stages).

  ``num_classes`` only sizes the classifier of the network proxies run on; MAE-DET's counters
  ignore it (a detection backbone has no classifier).
  """
  return MacroSpace("maedet_coco", ("SuperConvK3BNRELU", "SuperResK1K3K1", "SuperResK1K5K1"),
                    resolution, num_classes, max_layers, budget_params=None, budget_flops=flops,
                    initial=MAEDET_INITIAL, convention="maedet", mutation=macro_mutation.MAEDET,
                    stem_only=("SuperConvK3BNRELU",), num_stages=5)


SPACES: dict[str, Callable[..., MacroSpace]] = {
    "zen_cifar": zen_cifar,
    "mobilenet_imagenet": mobilenet_imagenet,
    "maedet_coco": maedet_coco,
}


def get_space(name: str, **overrides) -> MacroSpace:
  """The space ``name`` with keyword overrides (e.g. ``params=2e6`` or ``flops=600e6``)."""
  if name not in SPACES:
    raise ValueError(f"unknown macro space {name!r}; valid: {', '.join(SPACES)}.")
  return SPACES[name](**overrides)


def validate(arch_or_string: Arch | str, space: MacroSpace | str = "zen_cifar") -> list[str]:
  """``get_space(space).validate(arch_or_string)``: the reasons it is invalid, empty if valid."""
  if isinstance(space, str):
    space = get_space(space)
  return space.validate(arch_or_string)
