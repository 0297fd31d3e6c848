"""The DARTS CIFAR network in pure JAX, with the cells as array arguments (one compile for all).

The network of Liu et al. (quark0/darts ``cnn/model.py``, ``NetworkCIFAR``): a 3x3 conv stem with
``stem_multiplier * C`` channels, then ``layers`` cells, the ones at 1/3 and 2/3 of the depth
reduction cells (stride 2, channels doubled), then global average pooling and a linear
classifier. Each cell first maps its two inputs to C channels (``ReLU-Conv1x1-BN``, or a
factorized reduce when the previous cell halved the resolution), then computes nodes 2..5 as the
sum of two ops, and concatenates them (4C channels out). The ops are those of quark0/darts
``cnn/operations.py``: a separable conv is ``ReLU-dw-pw-BN`` twice, a dilated conv
``ReLU-dw(dilation 2)-pw-BN`` once, a skip at stride 2 a factorized reduce.

`DartsSetting` says which network: `NASLIB` is the one NASLib scored its NAS-Bench-301 zero-cost
table with (automl/NASLib ``naslib/search_spaces/nasbench301/graph.py``: C = 32, 8 cells, pools
followed by a BN without affine parameters, cell ops' BN without affine parameters), `EVAL` is the
DARTS evaluation network (C = 36, 20 cells, affine BN everywhere, no BN after pools).

**The switch form.** `make_apply_fn` takes the genotype as integer arrays, not Python values:
each of a cell's eight (op, input) pairs picks its input with a dynamic index and its op with one
``jax.lax.switch``, whose untaken branches XLA:CPU does not run. One compiled function therefore
scores every genotype at the cost of that genotype alone, where a network built per genotype would
compile once per architecture. On a 2-core CPU (NASLib's setting) one gradient proxy compiles in
about 3 minutes and then runs about 3 s per genotype at batch 64 (NASWOT: 35 s, 0.6 s at batch
16), against a compile per genotype for a network built per genotype. Each pair owns the
parameters of every candidate op (the unused ones get zero gradients, so proxies that sum over
parameters see only the chosen ops), and each branch is rematerialised (``jax.checkpoint``) so that
the backward pass saves only a pair's input, not the union of every branch's intermediates. In a
reduction cell the stride of a pair depends on its input (2 from the cell's inputs, 1 from an
intermediate node), so its branches are (input kind, op).

What proxies read (``proxies.base.ModelOutput``): the logits; the pre-pooling features; every
ReLU input with a 0/1 weight (0 for the ReLUs of untaken branches, which return zeros in their
place); every conv and linear output before BN as ``activations``, perturbable through
``variables['perturbations']``, with its fan-in in ``fan_ins`` (Fisher's weighting: an op's
depthwise and pointwise convs share a pair's activation slots, so the fan-in is a value, not a
kernel shape). BN runs on batch statistics (``bn=False`` removes it, as SynFlow asks); running
statistics are not tracked (``batch_stats`` is empty): proxies score freshly initialised networks.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from rznas_jax.proxies.base import ModelOutput
from rznas_jax.spaces import darts
from rznas_jax.spaces import layers

_EPS = 1e-5  # PyTorch BatchNorm2d
_ACT_SLOTS = 4  # conv outputs a pair can produce: a separable conv has four (dw, pw, dw, pw)


@dataclasses.dataclass(frozen=True)
class DartsSetting:
  """Which DARTS network.

  Attributes:
    channels: C, the first stage's cell width (each cell outputs 4C).
    layers: cells in the network; reductions at ``layers // 3`` and ``2 * layers // 3``.
    stem_multiplier: the stem's width over C.
    num_classes: the classifier's outputs.
    resolution: input height and width.
    ops: the candidate ops (`darts.OPS_NB301`, or `darts.OPS_DARTS` with ``none``).
    pool_bn: whether a pool is followed by a BN without affine parameters (NASLib's ops).
    affine: whether the cell ops' BNs have a scale and bias.
  """
  channels: int = 32
  layers: int = 8
  stem_multiplier: int = 3
  num_classes: int = 10
  resolution: int = 32
  ops: tuple[str, ...] = darts.OPS_NB301
  pool_bn: bool = True
  affine: bool = False

  @property
  def reductions(self) -> tuple[int, int]:
    return (self.layers // 3, 2 * self.layers // 3)

  def plan(self) -> list[tuple[int, int, int, bool, bool]]:
    """Per cell ``(C_prev_prev, C_prev, C, reduction, reduction_prev)``, as NetworkCIFAR builds."""
    c_pp = c_p = self.stem_multiplier * self.channels
    c, reduction_prev, out = self.channels, False, []
    for i in range(self.layers):
      reduction = i in self.reductions
      if reduction:
        c *= 2
      out.append((c_pp, c_p, c, reduction, reduction_prev))
      reduction_prev = reduction
      c_pp, c_p = c_p, 4 * c
    return out

  @property
  def final_channels(self) -> int:
    return 4 * self.plan()[-1][2]


# NASLib's proxy-time network (the stored NAS-Bench-301 zero-cost scores) and DARTS's evaluation.
NASLIB = DartsSetting()
EVAL = DartsSetting(channels=36, layers=20, pool_bn=False, affine=True)


# --- the genotype as arrays ------------------------------------------------------------------------


def arrays(genotype: darts.Genotype, ops: Sequence[str] = darts.OPS_NB301) -> np.ndarray:
  """``int32 (2, 8, 2)``: per cell (normal, reduce) and pair, ``(op index in ops, input node)``."""
  return np.array([[(ops.index(op), node) for op, node in getattr(genotype, cell)]
                   for cell in darts.CELLS], np.int32)


# --- layers ----------------------------------------------------------------------------------------


def _bn(x, params, bn: bool):
  """Train-mode BatchNorm2d (biased batch variance); affine when ``params`` has scale and bias."""
  if not bn:
    return x
  mean = jnp.mean(x, axis=(0, 1, 2))
  var = jnp.mean(jnp.square(x - mean), axis=(0, 1, 2))
  y = (x - mean) * lax.rsqrt(var + _EPS)
  if params:
    y = y * params["scale"].astype(y.dtype) + params["bias"].astype(y.dtype)
  return y


def _pointwise(x, kernel):
  """A 1x1 conv as one matmul: (B*H*W, Cin) @ (Cin, Cout)."""
  b, h, w, c = x.shape
  return jnp.dot(x.reshape(-1, c), kernel[0, 0].astype(x.dtype)).reshape(b, h, w, -1)


def _depthwise(x, kernel, stride: int, dilation: int = 1):
  """A depthwise conv with PyTorch padding ``dilation * (k - 1) // 2`` (shifted products)."""
  kernel = kernel.astype(x.dtype)
  if dilation > 1:  # the dilated kernel: zeros between the taps
    k = kernel.shape[0]
    size = dilation * (k - 1) + 1
    kernel = jnp.zeros((size, size) + kernel.shape[2:], kernel.dtype).at[::dilation, ::dilation].set(kernel)
  return layers.depthwise_conv_shifted(x, kernel, stride)


def _windows(x, stride: int, fill: float):
  """The nine 3x3 windows (padding 1 with ``fill``) at ``stride``, and the output size."""
  b, h, w, c = x.shape
  ho, wo = (h - 1) // stride + 1, (w - 1) // stride + 1
  xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=fill)
  return [lax.slice(xp, (0, i, j, 0), (b, i + (ho - 1) * stride + 1, j + (wo - 1) * stride + 1, c),
                    (1, stride, stride, 1)) for i in range(3) for j in range(3)], (ho, wo)


def _max_pool(x, stride: int):
  wins, _ = _windows(x, stride, -jnp.inf)
  out = wins[0]
  for win in wins[1:]:
    out = jnp.maximum(out, win)
  return out


def _avg_pool(x, stride: int):
  """3x3 average pool, padding 1, ``count_include_pad=False``."""
  wins, _ = _windows(x, stride, 0.0)
  ones, _ = _windows(jnp.ones((1,) + x.shape[1:3] + (1,), x.dtype), stride, 0.0)
  return sum(wins) / sum(ones)


# --- parameters ------------------------------------------------------------------------------------


def _bn_shapes(c: int, affine: bool) -> dict:
  return {"scale": (c,), "bias": (c,)} if affine else {}


def _op_shapes(op: str, c: int, affine: bool, stride_two: bool) -> dict:
  """Parameter shapes of one candidate op at width ``c``."""
  def sep(k):
    return {"dw1": {"kernel": (k, k, 1, c)}, "pw1": {"kernel": (1, 1, c, c)},
            "bn1": _bn_shapes(c, affine), "dw2": {"kernel": (k, k, 1, c)},
            "pw2": {"kernel": (1, 1, c, c)}, "bn2": _bn_shapes(c, affine)}

  def dil(k):
    return {"dw": {"kernel": (k, k, 1, c)}, "pw": {"kernel": (1, 1, c, c)}, "bn": _bn_shapes(c, affine)}

  if op == "skip_connect":
    return _reduce_shapes(c, c, affine) if stride_two else {}
  if op.startswith("sep_conv"):
    return sep(int(op[-1]))
  if op.startswith("dil_conv"):
    return dil(int(op[-1]))
  return {}  # none, pools (their BN has no parameters)


def _reduce_shapes(c_in: int, c_out: int, affine: bool = True) -> dict:
  """A factorized reduce: two 1x1 convs to c_out/2 channels each, BN."""
  return {"conv_1": {"kernel": (1, 1, c_in, c_out // 2)}, "conv_2": {"kernel": (1, 1, c_in, c_out // 2)},
          "bn": _bn_shapes(c_out, affine)}


def _relu_conv_bn_shapes(c_in: int, c_out: int) -> dict:
  return {"conv": {"kernel": (1, 1, c_in, c_out)}, "bn": _bn_shapes(c_out, True)}


def param_shapes(setting: DartsSetting, genotype: darts.Genotype | None = None) -> dict:
  """The ``params`` tree's shapes: with ``genotype``, only its ops (the network as trained);
  without, every candidate op of every pair (the switch form)."""
  stem = setting.stem_multiplier * setting.channels
  tree: dict = {"stem": {"conv": {"kernel": (3, 3, 3, stem)}, "bn": _bn_shapes(stem, True)}}
  for i, (c_pp, c_p, c, reduction, reduction_prev) in enumerate(setting.plan()):
    cell = {"pre0": _reduce_shapes(c_pp, c) if reduction_prev else _relu_conv_bn_shapes(c_pp, c),
            "pre1": _relu_conv_bn_shapes(c_p, c)}
    pairs = getattr(genotype, "reduce" if reduction else "normal") if genotype is not None else None
    for j in range(darts.PAIRS_PER_CELL):
      if pairs is None:
        cell[f"pair{j}"] = {op: _op_shapes(op, c, setting.affine, reduction) for op in setting.ops}
      else:
        op, node = pairs[j]
        cell[f"pair{j}"] = {op: _op_shapes(op, c, setting.affine, reduction and node < 2)}
    tree[f"cell{i}"] = cell
  tree["classifier"] = {"kernel": (setting.final_channels, setting.num_classes),
                        "bias": (setting.num_classes,)}
  return tree


def _prune(tree: dict) -> dict:
  """``tree`` without empty sub-dicts (ops without parameters)."""
  out = {}
  for k, v in tree.items():
    if isinstance(v, dict):
      v = _prune(v)
      if v:
        out[k] = v
    else:
      out[k] = v
  return out


def init_params(setting: DartsSetting, key: jax.Array, genotype: darts.Genotype | None = None) -> dict:
  """PyTorch-default parameters: conv and linear weights and the linear bias U(+-1/sqrt(fan_in))
  (fan_in: the kernel's dimensions but the last), BN scale 1 and bias 0; drawn with NumPy from
  ``key`` in sorted path order, so the same key gives the same values for any genotype."""
  rng = np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel())
  shapes = _prune(param_shapes(setting, genotype))
  classifier_fan_in = setting.final_channels

  def fill(path, shape):
    names = [getattr(k, "key", None) for k in path]
    draw = rng.uniform(-1.0, 1.0, shape)
    if names[-1] == "kernel":
      return jnp.asarray((draw / math.sqrt(math.prod(shape[:-1]))).astype(np.float32))
    if names[-1] == "bias" and names[0] == "classifier":
      return jnp.asarray((draw / math.sqrt(classifier_fan_in)).astype(np.float32))
    return jnp.asarray(np.full(shape, 1.0 if names[-1] == "scale" else 0.0, np.float32))

  return jax.tree_util.tree_map_with_path(fill, shapes, is_leaf=lambda x: isinstance(x, tuple))


# --- the forward pass ------------------------------------------------------------------------------


def _apply_op(op: str, x, p: dict, stride: int, setting: DartsSetting, bn: bool, pert: Sequence | None):
  """One op: ``(y, [ReLU input at the input's size], [ReLU input at the output's size],
  [(conv output, fan-in)])``; conv output j gets ``pert[j]`` added (Fisher's perturbation)."""
  relus_in, relus_mid, acts = [], [], []

  def conv_out(y, fan_in):
    acts.append((y, fan_in))
    p = None if pert is None else pert[len(acts) - 1]
    return y if p is None else y + p.astype(y.dtype)

  if op == "none":
    y = jnp.zeros_like(x[:, ::stride, ::stride])
  elif op in ("max_pool_3x3", "avg_pool_3x3"):
    y = (_max_pool if op == "max_pool_3x3" else _avg_pool)(x, stride)
    if setting.pool_bn:
      y = _bn(y, {}, bn)
  elif op == "skip_connect":
    if stride == 1:
      y = x
    else:
      relus_in.append(x)
      r = jax.nn.relu(x)
      y = jnp.concatenate([_pointwise(r[:, ::2, ::2], p["conv_1"]["kernel"]),
                           _pointwise(r[:, 1::2, 1::2], p["conv_2"]["kernel"])], axis=-1)
      y = _bn(conv_out(y, x.shape[-1]), p.get("bn"), bn)
  elif op.startswith("sep_conv"):
    k, c = int(op[-1]), x.shape[-1]
    relus_in.append(x)
    y = conv_out(_depthwise(jax.nn.relu(x), p["dw1"]["kernel"], stride), k * k)
    y = _bn(conv_out(_pointwise(y, p["pw1"]["kernel"]), c), p.get("bn1"), bn)
    relus_mid.append(y)
    y = conv_out(_depthwise(jax.nn.relu(y), p["dw2"]["kernel"], 1), k * k)
    y = _bn(conv_out(_pointwise(y, p["pw2"]["kernel"]), c), p.get("bn2"), bn)
  elif op.startswith("dil_conv"):
    k, c = int(op[-1]), x.shape[-1]
    relus_in.append(x)
    y = conv_out(_depthwise(jax.nn.relu(x), p["dw"]["kernel"], stride, 2), k * k)
    y = _bn(conv_out(_pointwise(y, p["pw"]["kernel"]), c), p.get("bn"), bn)
  else:
    raise ValueError(f"unknown DARTS op {op!r}.")
  return y, relus_in, relus_mid, acts


class _Record:
  """ReLU inputs (with 0/1 weights), conv outputs and their fan-ins, in network order."""

  def __init__(self, perturbations: dict | None):
    self.perturbations = perturbations
    self.relus: list[tuple[jax.Array, Any]] = []
    self.acts: dict = {}
    self.fan_ins: dict = {}

  def pert(self, *path: str):
    node = self.perturbations
    for name in path:
      node = None if node is None else node.get(name)
    return node

  def store(self, path: tuple[str, ...], y, fan_in) -> None:
    """Records the activation ``y`` at ``path`` with its fan-in."""
    node_a, node_f = self.acts, self.fan_ins
    for name in path[:-1]:
      node_a, node_f = node_a.setdefault(name, {}), node_f.setdefault(name, {})
    node_a[path[-1]], node_f[path[-1]] = y, jnp.asarray(fan_in, jnp.float32)

  def act(self, y, path: tuple[str, ...], fan_in):
    """`store`, then the perturbation at ``path`` (if any) added to ``y``."""
    self.store(path, y, fan_in)
    p = self.pert(*path)
    return y if p is None else y + p.astype(y.dtype)

  def relu(self, x, weight=None):
    self.relus.append((x, jnp.ones((), x.dtype) if weight is None else weight))
    return jax.nn.relu(x)


def _preprocess(rec: _Record, x, p: dict, path: tuple[str, ...], reduce: bool, bn: bool):
  """ReLU-Conv1x1-BN, or a factorized reduce (ReLU, two shifted 1x1 stride-2 convs, BN)."""
  r = rec.relu(x)
  if reduce:
    y = jnp.concatenate([_pointwise(r[:, ::2, ::2], p["conv_1"]["kernel"]),
                         _pointwise(r[:, 1::2, 1::2], p["conv_2"]["kernel"])], axis=-1)
  else:
    y = _pointwise(r, p["conv"]["kernel"])
  return _bn(rec.act(y, path + ("conv",), x.shape[-1]), p["bn"], bn)


def _switched_pair(setting: DartsSetting, groups, op_index, node_index, p: dict, perts, bn: bool):
  """One (op, input) pair of the switch form: ``(y, ReLU inputs with weights, conv outputs,
  their fan-ins)``, each list of fixed length whatever the branch.

  ``groups``: the candidate inputs by size, ``[(stacked array (n, B, H, W, C), stride, first node
  number), ...]`` (one group in a normal cell; in a reduction cell the two cell inputs at stride 2,
  then the intermediate nodes at stride 1). ``node_index`` is the input node, ``op_index`` the op.
  """
  ops = setting.ops
  xs, kind = [], jnp.zeros((), jnp.int32)
  for g, (stack, _, first) in enumerate(groups):
    local = jnp.clip(node_index - first, 0, stack.shape[0] - 1)
    xs.append(lax.dynamic_index_in_dim(stack, local, keepdims=False))
    if g:
      kind = kind + (node_index >= first).astype(jnp.int32)
  stride = groups[0][1]
  x0 = xs[0]
  out_shape = x0.shape[:1] + tuple(s // stride for s in x0.shape[1:3]) + x0.shape[3:]

  def branch(g, op, xs, p, perts):
    y, r_in, r_mid, acts = _apply_op(op, xs[g], p.get(op, {}), groups[g][1], setting, bn, perts)
    one = jnp.ones((), x0.dtype)
    relus = [(r_in[0], one) if (r_in and h == g) else (jnp.zeros_like(xs[h]), 0 * one)
             for h in range(len(groups))]
    relus.append((r_mid[0], one) if r_mid else (jnp.zeros(out_shape, x0.dtype), 0 * one))
    outs = [acts[j][0] if j < len(acts) else jnp.zeros(out_shape, x0.dtype) for j in range(_ACT_SLOTS)]
    fans = [jnp.asarray(acts[j][1] if j < len(acts) else 0.0, jnp.float32) for j in range(_ACT_SLOTS)]
    return y, relus, outs, fans

  branches = [jax.checkpoint(lambda xs, p, perts, g=g, op=op: branch(g, op, xs, p, perts))
              for g in range(len(groups)) for op in ops]
  return lax.switch(kind * len(ops) + op_index, branches, xs, p, perts)


def _switched_cell(rec: _Record, setting: DartsSetting, a, b, reduction: bool, cell_arrays,
                   p: dict, name: str, bn: bool):
  """The four nodes of a cell in the switch form, unrolled (one switch per pair)."""
  inputs = jnp.stack([a, b])
  nodes = []
  for k in range(darts.NUM_NODES):
    if reduction:
      groups = [(inputs, 2, 0)] + ([(jnp.stack(nodes), 1, 2)] if nodes else [])
    else:
      groups = [(jnp.stack([a, b] + nodes), 1, 0)]
    total = None
    for j in (2 * k, 2 * k + 1):
      pert = rec.pert(name, f"pair{j}")
      perts = None if pert is None else [pert[f"a{m}"] for m in range(_ACT_SLOTS)]
      y, relus, acts, fans = _switched_pair(setting, groups, cell_arrays[j, 0], cell_arrays[j, 1],
                                            p[f"pair{j}"], perts, bn)
      rec.relus.extend((x, w) for x, w in relus)
      for m in range(_ACT_SLOTS):
        rec.store((name, f"pair{j}", f"a{m}"), acts[m], fans[m])
      total = y if total is None else total + y
    nodes.append(total)
  return jnp.concatenate(nodes, axis=-1)


def _fixed_pair(rec: _Record, setting: DartsSetting, classes, op: str, node: int, p: dict,
                path: tuple[str, ...], bn: bool):
  """One (op, input) pair of a network built for one genotype: the op alone."""
  firsts = np.cumsum([0] + [len(c) for c, _ in classes])[:-1]
  g = max(i for i in range(len(classes)) if firsts[i] <= node)
  pert = rec.pert(*path)
  perts = None if pert is None else [pert.get(f"a{j}") for j in range(_ACT_SLOTS)]
  y, r_in, r_mid, acts = _apply_op(op, classes[g][0][node - firsts[g]], p.get(op, {}),
                                   classes[g][1], setting, bn, perts)
  for r in r_in + r_mid:
    rec.relus.append((r, jnp.ones((), r.dtype)))
  for j, (a, fan_in) in enumerate(acts):
    rec.store(path + (f"a{j}",), a, fan_in)
  return y


def forward(setting: DartsSetting, genotype, variables: dict, images: jax.Array, *, bn: bool = True):
  """The network's `ModelOutput` for ``images`` (NHWC).

  ``genotype`` is either a `darts.Genotype` (the network of that genotype: ``variables`` hold its
  ops only, `param_shapes` with the genotype) or the int array of `arrays` (the switch form:
  ``variables`` hold every candidate op).
  """
  params = variables["params"]
  rec = _Record(variables.get("perturbations"))
  switched = not isinstance(genotype, darts.Genotype)
  x = lax.conv_general_dilated(images, params["stem"]["conv"]["kernel"].astype(images.dtype), (1, 1),
                               ((1, 1), (1, 1)), dimension_numbers=("NHWC", "HWIO", "NHWC"))
  x = _bn(rec.act(x, ("stem", "conv"), 27), params["stem"]["bn"], bn)
  s0 = s1 = x
  for i, (_, _, _, reduction, reduction_prev) in enumerate(setting.plan()):
    name = f"cell{i}"
    p = params[name]
    a = _preprocess(rec, s0, p["pre0"], (name, "pre0"), reduction_prev, bn)
    b = _preprocess(rec, s1, p["pre1"], (name, "pre1"), False, bn)
    cell = 1 if reduction else 0
    if switched:
      s0, s1 = s1, _switched_cell(rec, setting, a, b, reduction, genotype[cell], p, name, bn)
      continue
    nodes = []
    for k in range(darts.NUM_NODES):
      classes = [([a, b], 2)] + ([(list(nodes), 1)] if nodes else []) if reduction else [([a, b] + nodes, 1)]
      total = None
      for j in (2 * k, 2 * k + 1):
        op, node = getattr(genotype, darts.CELLS[cell])[j]
        y = _fixed_pair(rec, setting, classes, op, node, p.get(f"pair{j}", {}), (name, f"pair{j}"), bn)
        total = y if total is None else total + y
      nodes.append(total)
    s0, s1 = s1, jnp.concatenate(nodes, axis=-1)
  pooled = jnp.mean(s1, axis=(1, 2))
  logits = pooled @ params["classifier"]["kernel"].astype(pooled.dtype) + params["classifier"]["bias"].astype(pooled.dtype)
  logits = rec.act(logits, ("classifier",), setting.final_channels)
  return ModelOutput(logits=logits, features=s1, relu_inputs=tuple(rec.relus), activations=rec.acts,
                     batch_stats={}, fan_ins=rec.fan_ins)


def make_apply_fn(setting: DartsSetting, genotype):
  """``apply_fn(variables, images, *, bn=True) -> ModelOutput`` (`forward`) for proxies."""
  def apply_fn(variables: dict, images: jax.Array, *, bn: bool = True) -> ModelOutput:
    return forward(setting, genotype, variables, images, bn=bn)
  return apply_fn


# --- exact counters --------------------------------------------------------------------------------


def count_params(setting: DartsSetting, genotype: darts.Genotype) -> int:
  """Parameters of the network of ``genotype``: stem, preprocessing, the chosen ops (factorized
  reduces for skips on a reduction cell's inputs), affine BNs, classifier; no auxiliary head."""
  shapes = jax.tree.leaves(_prune(param_shapes(setting, genotype)), is_leaf=lambda x: isinstance(x, tuple))
  return int(sum(math.prod(s) for s in shapes))


def count_flops(setting: DartsSetting, genotype: darts.Genotype) -> int:
  """Multiply-accumulates of one image's forward pass through the convs and the classifier
  (pools, BNs, ReLUs and additions not counted)."""
  r = setting.resolution
  stem = setting.stem_multiplier * setting.channels
  total = r * r * 27 * stem
  r_pp = r_p = r
  for c_pp, c_p, c, reduction, reduction_prev in setting.plan():
    r0 = r_pp // 2 if reduction_prev else r_pp  # preprocess0's output size (= r_p)
    total += r0 * r0 * c_pp * c + r_p * r_p * c_p * c
    out = (r_p - 1) // 2 + 1 if reduction else r_p
    for op, node in getattr(genotype, "reduce" if reduction else "normal"):
      hw = out * out
      if op.startswith("sep_conv"):
        k = int(op[-1])
        total += 2 * hw * (k * k * c + c * c)
      elif op.startswith("dil_conv"):
        k = int(op[-1])
        total += hw * (k * k * c + c * c)
      elif op == "skip_connect" and reduction and node < 2:
        total += hw * c * c
    r_pp, r_p = r_p, out
  return int(total + setting.final_channels * setting.num_classes)


# --- the scorer ------------------------------------------------------------------------------------


class DartsScorer:
  """Scores DARTS genotypes with registered proxies: one compile per proxy, for every genotype.

  A `rznas_jax.scorer.Scorer`. The network is `forward`'s switch form in the space's setting
  (NASLib's NAS-Bench-301 proxy network by default), in train mode, initialised as each proxy
  asks from the seed alone, on the real batch (CIFAR-10 normalisation) when images are given and
  the proxy wants real data, else a Gaussian batch; batches, keys, inits and the float64 cast are
  the shared core's (`scorer.ProxyInputs`). Analytic proxies read `DartsSpace.costs`.

  Args:
    proxies: registry names (AZ-NAS's block proxies are refused: the DARTS network does not
      report a chain of blocks).
    space: a `darts.DartsSpace`.
    images: real 32x32 images of CIFAR-10's classes, or None.
    batch_size, seed: as `scorer.ProxyInputs`.
    devices: genotype i runs on device i mod D; None: the default device.
    compiler_options: XLA options for every compile.
  """

  def __init__(self, proxies: Sequence[str], space, *, images=None, batch_size: int = 64,
               seed: int = 0, devices: Sequence[jax.Device] | None = None,
               compiler_options: dict | None = None):
    from rznas_jax import proxies as proxy_lib  # pylint: disable=g-import-not-at-top
    from rznas_jax import scorer as scorer_lib  # pylint: disable=g-import-not-at-top
    self._proxy_lib, self._core = proxy_lib, scorer_lib
    self.space = space
    self.setting = space.setting()
    self.proxies = tuple(proxies)
    self.specs = [proxy_lib.get(p) for p in self.proxies]
    proxy_lib.check_for_space(self.proxies, space.COST_KEYS, space.name, reports_blocks=False)
    if batch_size < 1:
      raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
    self.batch_size, self.seed = batch_size, seed
    self.strategy = "switch"
    self.compiler_options = dict(compiler_options) if compiler_options else None
    self._placed = bool(devices)
    self.devices = list(devices) if devices else [scorer_lib.default_device()]
    self.last_devices: list[str] = []
    self.compile_seconds: dict[str, float] = {}
    self._fns: dict = {}
    self._base: dict | None = None
    self._inputs = scorer_lib.ProxyInputs(
        batch_size=batch_size, resolution=self.setting.resolution,
        num_classes=self.setting.num_classes, seed=seed, images=images, normalization="cifar10",
        network="the darts network", labels_hint="; give CIFAR-10 images")

  def inputs(self, proxy: str) -> tuple[dict, Any, jax.Array]:
    """``(variables, batch, key)`` of ``proxy``: the same for every genotype."""
    spec = self._proxy_lib.get(proxy)
    if self._base is None:
      self._base = {"params": init_params(self.setting, self._inputs.init_key), "batch_stats": {}}
    variables = self._inputs.initialise(self._base, spec.init)
    variables, batch = self._inputs.cast(spec, variables, self._inputs.batch(spec))
    return variables, batch, self._inputs.key(spec)

  def compiled(self, proxy: str, variables, batch, key, genes, device=None):
    cache_key = (proxy, None if device is None else device.id)
    if cache_key not in self._fns:
      spec = self._proxy_lib.get(proxy)
      setting = self.setting

      def one(variables, images, labels, key, genes):
        from rznas_jax.proxies.base import Batch  # pylint: disable=g-import-not-at-top
        return spec.fn(make_apply_fn(setting, genes), variables, Batch(images, labels), key)

      start = time.perf_counter()
      self._fns[cache_key] = jax.jit(one).lower(variables, batch.images, batch.labels, key,
                                                genes).compile(self.compiler_options)
      self.compile_seconds[proxy] = self.compile_seconds.get(proxy, 0.0) + time.perf_counter() - start
    return self._fns[cache_key]

  def score(self, archs: Sequence[Any], progress=None) -> dict[str, np.ndarray]:
    """``{proxy: float64 array in the order of archs}``; genotypes are validated first (a
    DartsGenotypeError names the first bad one). ``progress(count, proxy)`` after each genotype."""
    archs = [self.space.valid(a) for a in archs]
    texts = [a.genotype for a in archs]
    distinct = list(dict.fromkeys(texts))
    rows = {t: np.array([i for i, u in enumerate(texts) if u == t]) for t in distinct}
    genotypes = {a.genotype: a for a in archs}
    pending = self._core.PendingScores(len(archs))
    for spec in self.specs:
      if spec.kind == self._proxy_lib.ANALYTIC:
        pending.add(spec.name, slice(None), self._core.score_analytic(spec, self.space.costs, archs))
        if progress:
          progress(len(archs), spec.name)
        continue
      if progress:
        progress(0, spec.name)
      with self._core.precision(spec):
        variables, batch, key = self.inputs(spec.name)
        placed = {}
        for i, text in enumerate(distinct):
          device = self.devices[i % len(self.devices)] if self._placed else None
          if device not in placed:
            placed[device] = (jax.device_put((variables, batch, key), device) if device is not None
                              else (variables, batch, key))
          v, b, k = placed[device]
          genes = jnp.asarray(arrays(genotypes[text], self.setting.ops))
          if device is not None:
            genes = jax.device_put(genes, device)
          fn = self.compiled(spec.name, v, b, k, genes, device)
          value = fn(v, b.images, b.labels, k, genes)
          pending.add(spec.name, rows[text], value)
          if progress:
            jax.block_until_ready(value)
            progress(len(rows[text]), spec.name)
    if any(spec.kind == self._proxy_lib.NETWORK for spec in self.specs):
      where = {t: self._core.device_name(self.devices[i % len(self.devices)]) for i, t in enumerate(distinct)}
      self.last_devices = [where[t] for t in texts]
    else:
      self.last_devices = ["host"] * len(archs)
    return pending.fetch(self.proxies)


# --- the network as trained (Flax) ------------------------------------------------------------------


def _kernel(module, name: str, shape: tuple[int, ...]):
  """A conv kernel parameter of a Flax ``module`` with PyTorch's default init."""
  return module.param(name, layers.torch_kernel_init, shape)


def _make_training_module():
  import flax.linen as nn  # pylint: disable=g-import-not-at-top

  class DartsNetwork(nn.Module):
    """The network of one genotype as DARTS trains it (quark0/darts ``NetworkCIFAR``): BN with
    running statistics (PyTorch semantics, `layers.BatchNorm`), optional auxiliary head after the
    second reduction cell (``AuxiliaryHeadCIFAR``; its logits are sown as
    ``intermediates/aux_logits`` in train mode, weighted by ``aux_weight`` in the loss) and drop
    path (each non-identity op's output dropped per example with probability ``drop_path``, kept
    ones scaled by 1/(1-p), in train mode; DARTS ramps p linearly over the epochs, here it is
    constant). ``__call__(images, train=True)`` gives the logits."""

    setting: DartsSetting
    genotype: darts.Genotype
    auxiliary: bool = False
    drop_path: float = 0.0
    aux_weight: float = 0.0

    def _bn(self, y, name, train):
      return layers.BatchNorm(name=name)(y, train=train)

    def _op(self, op, x, stride, path, train):
      c = x.shape[-1]
      if op == "none":
        return jnp.zeros_like(x[:, ::stride, ::stride]), False
      if op in ("max_pool_3x3", "avg_pool_3x3"):
        return (_max_pool if op == "max_pool_3x3" else _avg_pool)(x, stride), False
      if op == "skip_connect":
        if stride == 1:
          return x, True
        r = jax.nn.relu(x)
        y = jnp.concatenate([_pointwise(r[:, ::2, ::2], _kernel(self, f"{path}_conv_1", (1, 1, c, c // 2))),
                             _pointwise(r[:, 1::2, 1::2], _kernel(self, f"{path}_conv_2", (1, 1, c, c // 2)))], -1)
        return self._bn(y, f"{path}_bn", train), False
      k = int(op[-1])
      if op.startswith("sep_conv"):
        y = _depthwise(jax.nn.relu(x), _kernel(self, f"{path}_dw1", (k, k, 1, c)), stride)
        y = self._bn(_pointwise(y, _kernel(self, f"{path}_pw1", (1, 1, c, c))), f"{path}_bn1", train)
        y = _depthwise(jax.nn.relu(y), _kernel(self, f"{path}_dw2", (k, k, 1, c)), 1)
        return self._bn(_pointwise(y, _kernel(self, f"{path}_pw2", (1, 1, c, c))), f"{path}_bn2", train), False
      y = _depthwise(jax.nn.relu(x), _kernel(self, f"{path}_dw", (k, k, 1, c)), stride, 2)
      return self._bn(_pointwise(y, _kernel(self, f"{path}_pw", (1, 1, c, c))), f"{path}_bn", train), False

    def _dropped(self, y, train):
      if not train or self.drop_path <= 0:
        return y
      keep = 1.0 - self.drop_path
      mask = jax.random.bernoulli(self.make_rng("dropout"), keep, (y.shape[0], 1, 1, 1))
      return y * mask.astype(y.dtype) / keep

    @nn.compact
    def __call__(self, images, train: bool = True):
      s = self.setting
      x = lax.conv_general_dilated(images, _kernel(self, "stem_conv", (3, 3, 3, s.stem_multiplier * s.channels)),
                                   (1, 1), ((1, 1), (1, 1)), dimension_numbers=("NHWC", "HWIO", "NHWC"))
      s0 = s1 = self._bn(x, "stem_bn", train)
      for i, (c_pp, c_p, c, reduction, reduction_prev) in enumerate(s.plan()):
        r0 = jax.nn.relu(s0)
        if reduction_prev:
          a = jnp.concatenate([_pointwise(r0[:, ::2, ::2], _kernel(self, f"cell{i}_pre0_conv_1", (1, 1, c_pp, c // 2))),
                               _pointwise(r0[:, 1::2, 1::2], _kernel(self, f"cell{i}_pre0_conv_2", (1, 1, c_pp, c // 2)))], -1)
        else:
          a = _pointwise(r0, _kernel(self, f"cell{i}_pre0_conv", (1, 1, c_pp, c)))
        a = self._bn(a, f"cell{i}_pre0_bn", train)
        b = self._bn(_pointwise(jax.nn.relu(s1), _kernel(self, f"cell{i}_pre1_conv", (1, 1, c_p, c))),
                     f"cell{i}_pre1_bn", train)
        states = [a, b]
        pairs = getattr(self.genotype, "reduce" if reduction else "normal")
        for k in range(darts.NUM_NODES):
          total = None
          for j in (2 * k, 2 * k + 1):
            op, node = pairs[j]
            stride = 2 if reduction and node < 2 else 1
            y, identity = self._op(op, states[node], stride, f"cell{i}_pair{j}", train)
            y = y if identity else self._dropped(y, train)
            total = y if total is None else total + y
          states.append(total)
        s0, s1 = s1, jnp.concatenate(states[2:], axis=-1)
        if self.auxiliary and train and i == s.reductions[1]:
          h = _avg_pool5(jax.nn.relu(s1))
          h = jax.nn.relu(self._bn(_pointwise(h, _kernel(self, "aux_conv1", (1, 1, h.shape[-1], 128))), "aux_bn1", train))
          h = lax.conv_general_dilated(h, _kernel(self, "aux_conv2", (2, 2, 128, 768)), (1, 1), "VALID",
                                       dimension_numbers=("NHWC", "HWIO", "NHWC"))
          h = jax.nn.relu(self._bn(h, "aux_bn2", train)).reshape(h.shape[0], -1)
          aux = nn.Dense(s.num_classes, kernel_init=layers.torch_kernel_init,
                         bias_init=layers.torch_bias_init(h.shape[-1]), name="aux_classifier")(h)
          self.sow("intermediates", "aux_logits", aux)
      pooled = jnp.mean(s1, axis=(1, 2))
      return nn.Dense(s.num_classes, kernel_init=layers.torch_kernel_init,
                      bias_init=layers.torch_bias_init(pooled.shape[-1]), name="classifier")(pooled)

  return DartsNetwork


def _avg_pool5(x):
  """``AvgPool2d(5, stride=3, padding=0)`` of the auxiliary head (8x8 -> 2x2), NHWC."""
  b, h, w, c = x.shape
  ho, wo = (h - 5) // 3 + 1, (w - 5) // 3 + 1
  out = sum(lax.slice(x, (0, i, j, 0), (b, i + (ho - 1) * 3 + 1, j + (wo - 1) * 3 + 1, c), (1, 3, 3, 1))
            for i in range(5) for j in range(5))
  return out / 25.0


def __getattr__(name):  # the Flax class is made on first use (this module stays Flax-free)
  if name == "DartsNetwork":
    cls = _make_training_module()
    globals()["DartsNetwork"] = cls
    return cls
  raise AttributeError(name)


@functools.lru_cache(maxsize=8)
def _jitted_init(module, image_shape: tuple[int, ...]):
  images = jnp.zeros((2,) + image_shape, jnp.float32)
  return jax.jit(lambda k: module.init({"params": k, "dropout": k}, images, train=True))


def init_training_variables(module, key: jax.Array, image_shape=(32, 32, 3)) -> dict:
  """``module.init`` on a batch of two images (train mode, so the auxiliary head is made):
  PyTorch-default weights, BN 1/0, running 0/1. Compiled once per (module, image shape)."""
  variables = _jitted_init(module, tuple(image_shape))(key)
  return {k: v for k, v in variables.items() if k in ("params", "batch_stats")}
