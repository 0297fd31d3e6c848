"""Macro (Zen-NAS MasterNet) networks in Flax Linen, honouring the proxy contract of proxies/base.py.

``MacroNetwork(arch, num_classes, no_reslink)`` builds the blocks of an `Arch` (expansions in
``spaces/macro.py`` and Zen-NAS PlainNet), then global average pooling and a linear classifier.
Every conv is bias-free with PyTorch padding ``(k-1)//2`` and PyTorch's default init, every BN has
eps 1e-3 and PyTorch train-mode semantics (``layers.BatchNorm``), as in ``Masternet.py``.

``no_reslink=True`` (the default, and what every proxy evaluation in Zen-NAS and ZiCo uses)
drops the shortcut wrappers and their projections, leaving ``inner; ReLU``. With
``no_reslink=False`` the Zen-NAS shortcuts are built: ``ResBlockProj`` (always a
``Conv1x1(stride, bias) + BN`` projection) for a block's first unit, ``ResBlock`` (projection only
when strided or when the channels change, identity otherwise) for the rest. Under
``convention="maedet"`` a ``SuperResK1KXK1`` sub-layer is one tinynas ``ResK1KXK1`` bottleneck
whose shortcut is a 2×2 average pool when strided, then a bias-free ``Conv1x1 + BN`` when the
channels change or in the first bottleneck of a block.

What the network reports to proxies (``make_apply_fn`` -> ``ModelOutput``): the input of every
ReLU of the reference's ``RELU`` blocks (not the ReLU inside SE, which NASWOT's hooks do not see),
every conv and linear output as a perturbable ``act``, and the output of the last block, before
pooling, as ``features``.

**Repeated sub-layers and one kernel per leaf.** Sub-layers 1..L-1 of a block are identical, so
with ``scan=True`` they run as one ``nn.scan`` over stacked weights: one traced body per block
instead of L-1, which bounds compile time for deep blocks. The per-layer proxies (GradNorm's
per-layer norms, ZiCo, Zen's SynFlow, Fisher) need one leaf per layer, so the *variables* always
use the unrolled layout (``block03/layer02/unit0/conv1/conv/kernel``): ``init_variables`` returns
it in both modes, and in scan mode ``make_apply_fn`` stacks ``layer01..`` into ``tail`` on the way
in and unstacks the returned ``batch_stats`` and ``intermediates`` on the way out. Gradients taken
through ``apply_fn`` therefore arrive per layer, and a proxy cannot tell the two modes apart
except by speed. Leave ``scan=False`` (the default) for scoring on a CPU: XLA:CPU runs backward
convolutions inside loop bodies slowly (docs/scoring.md, XLA:CPU).

**Depthwise convolutions on a CPU** (``depthwise_form``): XLA:CPU runs a grouped convolution and
its gradients as naive loops, so on the CPU a depthwise conv is computed as the sum of K*K
shifted, per-channel-scaled copies of its input (``layers.DepthwiseConv``: the same parameters,
init and sum, with derivatives of the same shape). On a 2-core CPU this ran grad_norm on a 224 px
MobileNetV2-space network at batch 64 in 10 s instead of 78 s (compile 11 s instead of 8 s, the
same temporary memory); scores agree to float32 rounding.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from rznas_jax.proxies.base import ModelOutput
from rznas_jax.spaces import layers
from rznas_jax.spaces import macro
from rznas_jax.spaces.macro import Arch, Block

SHORTCUTS = ("none", "identity", "proj", "pool", "pool_proj")
# How a depthwise conv is computed: "grouped" (``nn.Conv`` with ``feature_group_count``),
# "shifted" (``layers.DepthwiseConv``: the same parameters and sum, as K*K shifted products, which
# XLA:CPU fuses, where it runs grouped convolutions as naive loops), or "auto": shifted on the CPU,
# grouped elsewhere. Read when a network is traced.
DEPTHWISE_FORMS = ("auto", "grouped", "shifted")
depthwise_form = "auto"


def _shifted_depthwise() -> bool:
  """Whether ``depthwise_form`` (and, for "auto", the default backend) asks for the shifted form."""
  if depthwise_form not in DEPTHWISE_FORMS:
    raise ValueError(f"macro_net.depthwise_form is {depthwise_form!r}; valid: {', '.join(DEPTHWISE_FORMS)}.")
  if depthwise_form == "auto":
    return jax.default_backend() == "cpu"
  return depthwise_form == "shifted"


_SCANNED_COLLECTIONS = ("params", "batch_stats", "intermediates", "perturbations")


@dataclasses.dataclass(frozen=True)
class UnitSpec:
  """One residual unit (or one plain conv layer): static and hashable.

  Attributes:
    convs: ``(features, kernel, stride, depthwise)`` of each conv; BN after each, ReLU between.
    shortcut: ``"none"`` (no_reslink or a plain conv layer), ``"identity"``, ``"proj"`` (Zen-NAS:
      ``Conv1x1(stride, bias) + BN``), ``"pool"`` (2×2 average pool) or ``"pool_proj"`` (MAE-DET:
      average pool when strided, then a bias-free ``Conv1x1 + BN``).
    stride: the unit's stride (that of its strided conv).
    use_se: an SE module after the ReLU of the second-last conv.
  """

  convs: tuple[tuple[int, int, int, bool], ...]
  shortcut: str = "none"
  stride: int = 1
  use_se: bool = False


def sub_layer_specs(block: Block, *, convention: str = "zen", no_reslink: bool = True,
                    use_se: bool = False) -> tuple[tuple[UnitSpec, ...], ...]:
  """The units of each sub-layer of ``block``: one tuple per sub-layer (METHOD.md §4.1).

  Sub-layers 1..L-1 are equal by construction (same channels, stride 1), which is what lets
  ``scan=True`` stack them.
  """
  if convention not in macro.CONVENTIONS:
    raise ValueError(f"unknown convention {convention!r}; valid: {', '.join(macro.CONVENTIONS)}.")
  k, out, btn, fam = block.kernel, block.out_channels, block.bottleneck, block.family
  specs = []
  last, s = block.in_channels, block.stride
  for i in range(block.sub_layers):
    if fam == "conv":
      specs.append((UnitSpec(((out, k, s, False),), "none", s),))
    elif convention == "maedet":
      if fam != "k1kxk1":
        raise ValueError(f"the MAE-DET convention has no {block.name}; it builds SuperConv and "
                         "SuperResK1KXK1 blocks only.")
      if no_reslink:
        short = "none"
      elif last != out or i == 0:
        short = "pool_proj"
      else:
        short = "pool" if s == 2 else "identity"
      specs.append((UnitSpec(((btn, 1, 1, False), (btn, k, s, False), (out, 1, 1, False)), short, s),))
    else:
      def shortcut(first, cin, cout, stride):
        if no_reslink:
          return "none"
        return "proj" if first or stride > 1 or cin != cout else "identity"

      se = use_se
      if fam == "kxkx":
        specs.append((UnitSpec(((btn, k, s, False), (out, k, 1, False)),
                               shortcut(i == 0, last, out, s), s, se),))
      elif fam == "k1kxk1":
        first = UnitSpec(((btn, 1, 1, False), (btn, k, s, False), (out, 1, 1, False)),
                         shortcut(i == 0, last, out, s), s, se)
        second = UnitSpec(((btn, 1, 1, False), (btn, k, 1, False), (out, 1, 1, False)),
                          shortcut(False, out, out, 1), 1, se)
        specs.append((first, second))
      else:  # idw: the first inverted bottleneck ends at btn channels, the second at out
        dw1, dw2 = macro.idw_widths(block)
        first = UnitSpec(((dw1, 1, 1, False), (dw1, k, s, True), (btn, 1, 1, False)),
                         shortcut(i == 0, last, btn, s), s, se)
        second = UnitSpec(((dw2, 1, 1, False), (dw2, k, 1, True), (out, 1, 1, False)),
                          shortcut(False, btn, out, 1), 1, se)
        specs.append((first, second))
    last, s = out, 1
  return tuple(specs)


class Conv(nn.Module):
  """A conv with PyTorch padding and init; its output is sown and perturbable (``act``)."""

  features: int
  kernel: int
  stride: int = 1
  depthwise: bool = False
  use_bias: bool = False

  @nn.compact
  def __call__(self, x):
    groups = x.shape[-1] if self.depthwise else 1
    fan_in = x.shape[-1] // groups * self.kernel * self.kernel
    if self.depthwise and self.features == x.shape[-1] and _shifted_depthwise():
      y = layers.DepthwiseConv(self.kernel, self.stride, self.use_bias,
                               layers.torch_bias_init(fan_in), name="conv")(x)
    else:
      y = nn.Conv(self.features, (self.kernel, self.kernel), (self.stride, self.stride),
                  padding=layers.torch_padding(self.kernel), feature_group_count=groups,
                  use_bias=self.use_bias, kernel_init=layers.torch_kernel_init,
                  bias_init=layers.torch_bias_init(fan_in), name="conv")(x)
    self.sow("intermediates", "act", y)
    return self.perturb("act", y)


def _avg_pool2(x):
  """PyTorch ``AvgPool2d(2, 2)`` (floor mode), NHWC."""
  b, h, w, c = x.shape
  x = x[:, :h // 2 * 2, :w // 2 * 2, :]
  return x.reshape(b, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))


class SE(nn.Module):
  """Zen-NAS ``SE(C)``: ``GAP -> Conv1x1(C->se) -> BN -> ReLU -> Conv1x1(se->C) -> BN -> sigmoid``."""

  eps: float = 1e-3
  use_bn: bool = True
  train: bool = True  # False: BN uses its running statistics

  @nn.compact
  def __call__(self, x):
    c = x.shape[-1]
    se = max(1, int(round(c * 0.25)))
    g = jnp.mean(x, axis=(1, 2), keepdims=True)
    g = Conv(se, 1, name="conv0")(g)
    if self.use_bn:
      g = layers.BatchNorm(self.eps, name="bn0")(g, train=self.train)
    g = Conv(c, 1, name="conv1")(nn.relu(g))
    if self.use_bn:
      g = layers.BatchNorm(self.eps, name="bn1")(g, train=self.train)
    return x * nn.sigmoid(g)


class Unit(nn.Module):
  """One `UnitSpec`: ``conv BN (ReLU conv BN)*`` + shortcut, then the sown, final ReLU."""

  spec: UnitSpec
  eps: float = 1e-3
  use_bn: bool = True
  train: bool = True

  @nn.compact
  def __call__(self, x):
    y, n = x, len(self.spec.convs)
    for i, (features, kernel, stride, depthwise) in enumerate(self.spec.convs):
      y = Conv(features, kernel, stride, depthwise, name=f"conv{i}")(y)
      if self.use_bn:
        y = layers.BatchNorm(self.eps, name=f"bn{i}")(y, train=self.train)
      if i < n - 1:
        self.sow("intermediates", "relu", (y, jnp.ones((), y.dtype)))
        y = nn.relu(y)
        if self.spec.use_se and i == n - 2:
          y = SE(self.eps, self.use_bn, self.train, name="se")(y)
    short = self.spec.shortcut
    if short == "identity":
      y = y + x
    elif short == "pool":
      y = y + _avg_pool2(x)
    elif short in ("proj", "pool_proj"):
      zen = short == "proj"
      sc = x if zen or self.spec.stride == 1 else _avg_pool2(x)
      sc = Conv(y.shape[-1], 1, self.spec.stride if zen else 1, use_bias=zen, name="proj")(sc)
      if self.use_bn:
        sc = layers.BatchNorm(self.eps, name="proj_bn")(sc, train=self.train)
      y = y + sc
    self.sow("intermediates", "relu", (y, jnp.ones((), y.dtype)))
    return nn.relu(y)


class SubLayer(nn.Module):
  """The units of one sub-layer; ``scan_form`` gives the ``(carry, out)`` signature of nn.scan."""

  units: tuple[UnitSpec, ...]
  eps: float = 1e-3
  use_bn: bool = True
  scan_form: bool = False
  train: bool = True

  @nn.compact
  def __call__(self, x, _=None):
    for u, spec in enumerate(self.units):
      x = Unit(spec, self.eps, self.use_bn, self.train, name=f"unit{u}")(x)
    return (x, None) if self.scan_form else x


def _layer_name(j: int) -> str:
  return f"layer{j:02d}"


def _block_name(i: int) -> str:
  return f"block{i:02d}"


class SuperBlock(nn.Module):
  """One super-block: sub-layer 0, then sub-layers 1..L-1 unrolled or as one ``nn.scan``."""

  layers_: tuple[tuple[UnitSpec, ...], ...]
  eps: float = 1e-3
  use_bn: bool = True
  scan: bool = False
  train: bool = True

  @nn.compact
  def __call__(self, x):
    x = SubLayer(self.layers_[0], self.eps, self.use_bn, train=self.train, name=_layer_name(0))(x)
    tail = self.layers_[1:]
    if self.scan and _scannable(self.layers_):
      body = nn.scan(SubLayer, variable_axes={c: 0 for c in _SCANNED_COLLECTIONS},
                     split_rngs={"params": True}, length=len(tail))
      x, _ = body(tail[0], self.eps, self.use_bn, True, self.train, name="tail")(x)
    else:
      for j, spec in enumerate(tail, start=1):
        x = SubLayer(spec, self.eps, self.use_bn, train=self.train, name=_layer_name(j))(x)
    return x


def _scannable(layer_specs) -> bool:
  tail = layer_specs[1:]
  return len(tail) >= 2 and all(t == tail[0] for t in tail)


class MacroNetwork(nn.Module):
  """A Zen-NAS MasterNet: the blocks of ``arch``, global average pooling, a linear classifier.

  Attributes:
    arch: the architecture (hashable, so the module is a valid static argument).
    num_classes: classifier width.
    no_reslink: drop shortcuts (the proxies' setting, the default); False builds them.
    eps: BN eps (1e-3 in MasterNet).
    use_se: add the training-time SE modules (``--use_se`` in ZiCo's scripts; ``zen`` only,
      MAE-DET's bottlenecks have none).
    convention: ``"zen"`` or ``"maedet"``, as in ``spaces/macro.py``.
    scan: run identical sub-layers as one ``nn.scan`` (see the module docstring); the variables
      keep the unrolled layout only through ``make_apply_fn`` / ``init_variables``.

  Example:
    >>> net = MacroNetwork(Arch.parse("SuperConvK3BNRELU(3,8,1,1)SuperConvK1BNRELU(8,16,1,1)"), 10)
    >>> variables = init_variables(net, jax.random.key(0), (8, 8, 3))
    >>> make_apply_fn(net)(variables, jnp.zeros((2, 8, 8, 3))).features.shape
    (2, 8, 8, 16)
  """

  arch: Arch
  num_classes: int
  no_reslink: bool = True
  eps: float = 1e-3
  use_se: bool = False
  convention: str = "zen"
  scan: bool = False

  def block_specs(self) -> list[tuple[tuple[UnitSpec, ...], ...]]:
    return [sub_layer_specs(b, convention=self.convention, no_reslink=self.no_reslink,
                            use_se=self.use_se) for b in self.arch.blocks]

  @nn.compact
  def __call__(self, images, *, use_bn: bool = True, train: bool = True):
    """Logits for ``images``; ``train=False`` normalises with the BN running statistics."""
    x = images
    for i, specs in enumerate(self.block_specs()):
      x = SuperBlock(specs, self.eps, use_bn, self.scan, train, name=_block_name(i))(x)
    self.sow("intermediates", "features", x)
    pooled = x.mean(axis=(1, 2))
    logits = nn.Dense(self.num_classes, kernel_init=layers.torch_kernel_init,
                      bias_init=layers.torch_bias_init(x.shape[-1]), name="classifier")(pooled)
    self.sow("intermediates", "act", logits)
    return self.perturb("act", logits)


# --- the unrolled <-> scanned variable layouts -----------------------------------------------------


def _scanned_blocks(model: MacroNetwork) -> dict[str, int]:
  """Block name -> number of sub-layers, for the blocks that ``model`` runs as a scan."""
  if not model.scan:
    return {}
  return {_block_name(i): len(specs) for i, specs in enumerate(model.block_specs())
          if _scannable(specs)}


def _stack_tree(tree: Any, scanned: dict[str, int]) -> Any:
  """Unrolled layout -> scanned layout (``layer01..layer{L-1}`` stacked into ``tail``)."""
  if not scanned or not isinstance(tree, dict):
    return tree
  out = dict(tree)
  for name, n in scanned.items():
    if name not in tree:
      continue
    sub = dict(tree[name])
    parts = [sub.pop(_layer_name(j)) for j in range(1, n) if _layer_name(j) in sub]
    if parts:
      sub["tail"] = jax.tree.map(lambda *xs: jnp.stack(xs), *parts)
    out[name] = sub
  return out


def _take(a, i):
  if isinstance(a, jax.ShapeDtypeStruct):
    return jax.ShapeDtypeStruct(a.shape[1:], a.dtype)
  return a[i]


def _unstack_tree(tree: Any, scanned: dict[str, int]) -> Any:
  """Scanned layout -> unrolled layout."""
  if not scanned or not isinstance(tree, dict):
    return tree
  out = dict(tree)
  for name, n in scanned.items():
    if name not in tree or "tail" not in tree[name]:
      continue
    sub = dict(tree[name])
    tail = sub.pop("tail")
    for j in range(1, n):
      sub[_layer_name(j)] = jax.tree.map(lambda a, j=j: _take(a, j - 1), tail)
    out[name] = sub
  return out


def to_scanned_layout(model: MacroNetwork, variables: dict) -> dict:
  """Unrolled-layout variables in the layout ``model.apply`` expects (identity unless scan)."""
  scanned = _scanned_blocks(model)
  return {col: _stack_tree(tree, scanned) for col, tree in variables.items()}


def to_unrolled_layout(model: MacroNetwork, variables: dict) -> dict:
  """The inverse of `to_scanned_layout`: one leaf per layer."""
  scanned = _scanned_blocks(model)
  return {col: _unstack_tree(tree, scanned) for col, tree in variables.items()}


# --- glue to the proxy contract --------------------------------------------------------------------


def _collect(tree, key):
  """Every value sown under ``key``, depth first in sorted-key order (network order)."""
  found = []

  def walk(node):
    for k in sorted(node):
      v = node[k]
      if k == key:
        found.extend(v)
      elif isinstance(v, dict):
        walk(v)

  walk(tree)
  return found


def _acts_like_perturbations(tree):
  """The ``act`` intermediates with the nesting of the ``perturbations`` collection."""
  out = {}
  for k, v in tree.items():
    if k == "act":
      out[k] = v[0]
    elif isinstance(v, dict):
      sub = _acts_like_perturbations(v)
      if sub:
        out[k] = sub
  return out


def make_apply_fn(model: MacroNetwork):
  """Wraps ``model`` into ``apply_fn(variables, images, *, bn=True) -> ModelOutput``.

  ``variables`` are in the unrolled layout in both modes (see the module docstring); so are the
  returned ``batch_stats`` and ``activations``.
  """
  scanned = _scanned_blocks(model)

  def apply_fn(variables, images, *, bn: bool = True) -> ModelOutput:
    inputs = {col: _stack_tree(tree, scanned) for col, tree in variables.items()}
    logits, state = model.apply(inputs, images, use_bn=bn, mutable=["batch_stats", "intermediates"])
    inter = _unstack_tree(state["intermediates"], scanned)
    return ModelOutput(
        logits=logits,
        features=_collect(inter, "features")[0],
        relu_inputs=tuple(_collect(inter, "relu")),
        activations=_acts_like_perturbations(inter),
        batch_stats=_unstack_tree(state.get("batch_stats", {}), scanned),
    )

  return apply_fn


_CHUNK = 1 << 18  # the one uniform draw shape, compiled once per process and reused by every net


def _uniform_stream(key: jax.Array, n: int, xp) -> Any:
  """``n`` draws from U(-1, 1): fixed-size chunks keyed by ``fold_in(key, i)``, concatenated."""
  chunks = [jax.random.uniform(jax.random.fold_in(key, i), (_CHUNK,), jnp.float32, -1.0, 1.0)
            for i in range(max(1, -(-n // _CHUNK)))]
  if xp is np:
    chunks = [np.asarray(c) for c in chunks]
  return xp.concatenate(chunks)[:n]


def _leaf_kinds(tree: Any, prefix=()) -> list[tuple[tuple[str, ...], Any, str, float]]:
  """``(path, shape struct, kind, bound)`` per ``params`` leaf, in sorted path order.

  A module holding a ``kernel`` is a conv or linear layer: kernel and bias ~ U(±1/sqrt(fan_in)),
  fan_in = the product of the kernel's axes but the last (PyTorch's kaiming-uniform with
  a=sqrt(5), ``layers.torch_kernel_init``). Any other ``scale``/``bias`` belongs to a BN: 1, 0.
  """
  out = []
  bound = 1.0 / np.sqrt(float(np.prod(tree["kernel"].shape[:-1]))) if "kernel" in tree else 0.0
  for name in sorted(tree):
    leaf = tree[name]
    if isinstance(leaf, dict):
      out += _leaf_kinds(leaf, prefix + (name,))
    elif "kernel" in tree and name in ("kernel", "bias"):
      out.append((prefix + (name,), leaf, "uniform", bound))
    else:
      out.append((prefix + (name,), leaf, "ones" if name == "scale" else "zeros", 0.0))
  return out


def _set_path(tree: dict, path: tuple[str, ...], value) -> None:
  for k in path[:-1]:
    tree = tree.setdefault(k, {})
  tree[path[-1]] = value


def init_variables(model: MacroNetwork, key: jax.Array, image_shape=(32, 32, 3)) -> dict:
  """PyTorch-default initial variables (``params``, ``batch_stats``), in the unrolled layout.

  Weights and biases ~ U(±1/sqrt(fan_in)) (kaiming-uniform with a=sqrt(5)), BN scale 1 and bias
  0, running mean 0 and variance 1: the distributions of ``model.init``. The shapes come from
  ``jax.eval_shape`` and every uniform value from one stream of fixed-size draws, so no init
  program is compiled per architecture (on XLA:CPU that compile took far longer than scoring
  the network). Works with a concrete key and under ``jit``/``vmap`` alike, with the same values
  for the same key (to float32 rounding: XLA may fuse the scaling); they differ from
  ``model.init``'s own draw.
  """
  images = jax.ShapeDtypeStruct((2, *image_shape), jnp.float32)
  shapes = jax.eval_shape(lambda k, x: model.init(k, x), jax.random.key(0), images)
  shapes = to_unrolled_layout(model, {k: v for k, v in shapes.items() if k in ("params", "batch_stats")})
  xp = jnp if isinstance(key, jax.core.Tracer) else np
  kinds = _leaf_kinds(shapes["params"])
  n = sum(int(np.prod(s.shape)) for _, s, kind, _ in kinds if kind == "uniform")
  stream = _uniform_stream(key, n, xp)
  params, offset = {}, 0
  for path, s, kind, bound in kinds:
    size = int(np.prod(s.shape))
    if kind == "uniform":
      value = (stream[offset:offset + size] * bound).reshape(s.shape).astype(s.dtype)
      offset += size
    else:
      value = (xp.ones if kind == "ones" else xp.zeros)(s.shape, s.dtype)
    _set_path(params, path, jnp.asarray(value) if xp is np else value)
  variables = {"params": params}
  if "batch_stats" in shapes:
    variables["batch_stats"] = jax.tree_util.tree_map_with_path(
        lambda path, s: jnp.asarray((xp.ones if path[-1].key == "var" else xp.zeros)(s.shape, s.dtype)),
        shapes["batch_stats"])
  return variables
