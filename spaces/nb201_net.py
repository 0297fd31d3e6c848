"""The NAS-Bench-201 network in Flax Linen, in two forms with one parameter layout.

Network (xautodl ``TinyNetwork``): stem ``Conv3x3(3->C) + BN``; three stages of N cells with C, 2C
and 4C channels, joined by ResNet basic blocks of stride 2; ``BN + ReLU``; global average pool;
linear classifier. A cell op ``nor_conv_kxk`` is ``ReLU -> Conv(k, no bias) -> BN``;
``avg_pool_3x3`` excludes padding from its counts; ``skip_connect`` is the identity and ``none``
is zero.

* The **exact** form (``arch`` given) builds only the ops of one cell: one compile per cell.
* The **masked** form (``arch=None``) takes the cell as a (6, 5) one-hot array, computes every
  candidate op on every edge and keeps the selected one with ``jnp.where``, so one compiled
  function serves all 15,625 cells and ``jax.vmap`` serves a batch of them. An unused op adds
  nothing to the output, gets a zero gradient, carries weight 0 on its ReLU input and leaves its
  BN running statistics untouched.

The exact form's variables are a subset of the masked form's (same names), so variables made once
by the masked ``init`` serve every cell in both forms.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from rznas_jax.proxies.base import ModelOutput
from rznas_jax.spaces import layers
from rznas_jax.spaces.nb201 import EDGES, NUM_EDGES, OPS, Arch

CONV_OPS = {"nor_conv_1x1": 1, "nor_conv_3x3": 3}


class Conv(nn.Module):
  """Bias-free conv with PyTorch padding and init; its output is sown and perturbable (Fisher)."""

  features: int
  kernel: int
  stride: int = 1

  @nn.compact
  def __call__(self, x):
    y = nn.Conv(self.features, (self.kernel, self.kernel), (self.stride, self.stride),
                padding=layers.torch_padding(self.kernel), use_bias=False,
                kernel_init=layers.torch_kernel_init, name="conv")(x)
    self.sow("intermediates", "act", y)
    return self.perturb("act", y)


class ReLUConvBN(nn.Module):
  """``ReLU -> Conv -> BN``; ``gate`` (0/1) marks an op that a masked cell does not use."""

  features: int
  kernel: int
  stride: int = 1
  eps: float = 1e-5

  @nn.compact
  def __call__(self, x, *, use_bn: bool = True, gate: Any = 1.0, train: bool = True):
    self.sow("intermediates", "relu", (x, jnp.asarray(gate, x.dtype)))
    y = Conv(self.features, self.kernel, self.stride, name="op")(nn.relu(x))
    if use_bn:
      y = layers.BatchNorm(self.eps, name="bn")(y, gate=gate, train=train)
    return y


class Cell(nn.Module):
  """One NAS-Bench-201 cell; exact when ``arch`` is set, masked (``ops`` one-hot) otherwise."""

  channels: int
  arch: Arch | None = None
  eps: float = 1e-5

  @nn.compact
  def __call__(self, x, ops=None, *, use_bn: bool = True, train: bool = True):
    nodes = [x]
    for node in range(1, 4):
      total = jnp.zeros_like(x)
      for e, (to, src) in enumerate(EDGES):
        if to != node:
          continue
        inp = nodes[src]
        if self.arch is not None:
          total = total + self._exact_op(self.arch.ops[e], inp, e, use_bn, train)
        else:
          total = total + self._masked_edge(ops[e], inp, e, use_bn, train)
      nodes.append(total)
    return nodes[3]

  def _exact_op(self, op, x, e, use_bn, train):
    if op == "none":
      return jnp.zeros_like(x)
    if op == "skip_connect":
      return x
    if op == "avg_pool_3x3":
      return layers.avg_pool_exclude_pad(x)
    conv = ReLUConvBN(self.channels, CONV_OPS[op], eps=self.eps, name=f"edge{e}_{op}")
    return conv(x, use_bn=use_bn, train=train)

  def _masked_edge(self, w, x, e, use_bn, train):
    zero = jnp.zeros_like(x)
    out = jnp.where(w[OPS.index("skip_connect")] > 0, x, zero)
    pool = layers.avg_pool_exclude_pad(x)
    out = out + jnp.where(w[OPS.index("avg_pool_3x3")] > 0, pool, zero)
    for op, k in CONV_OPS.items():
      gate = w[OPS.index(op)]
      conv = ReLUConvBN(self.channels, k, eps=self.eps, name=f"edge{e}_{op}")
      y = conv(x, use_bn=use_bn, gate=gate, train=train)
      out = out + jnp.where(gate > 0, y, zero)
    return out


class ResNetBlock(nn.Module):
  """xautodl ``ResNetBasicblock`` with stride 2: two ReLUConvBN plus avg-pool + 1x1 shortcut."""

  features: int
  eps: float = 1e-5

  @nn.compact
  def __call__(self, x, *, use_bn: bool = True, train: bool = True):
    conv_a = ReLUConvBN(self.features, 3, stride=2, eps=self.eps, name="conv_a")
    y = conv_a(x, use_bn=use_bn, train=train)
    y = ReLUConvBN(self.features, 3, eps=self.eps, name="conv_b")(y, use_bn=use_bn, train=train)
    b, h, w, c = x.shape
    pooled = x.reshape(b, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))
    shortcut = Conv(self.features, 1, name="shortcut")(pooled)
    return y + shortcut


class NB201Network(nn.Module):
  """The NAS-Bench-201 network; ``arch=None`` gives the masked form.

  Attributes:
    arch: the cell, or None for the masked network that takes ``ops`` as an array.
    channels: C of the first stage (16 in the benchmark).
    cells_per_stage: N (5 in the benchmark).
    num_classes: 10, 100 or 120 in the benchmark.
    eps: BN eps (PyTorch default 1e-5, as in xautodl).
  """

  arch: Arch | None = None
  channels: int = 16
  cells_per_stage: int = 5
  num_classes: int = 10
  eps: float = 1e-5

  @nn.compact
  def __call__(self, images, ops=None, *, use_bn: bool = True, train: bool = True, cuts=None):
    """Logits for ``images``; ``train=False`` normalises with the BN running statistics.

    ``cuts`` (optional): one array per block after the stem; block ``l`` then reads
    ``stop_gradient(previous block) + cuts[l-1]`` (``proxies.base``: local VJPs for AZ-NAS).
    """
    if self.arch is None and ops is None:
      raise ValueError("the masked NB201 network needs `ops`, a (6, 5) one-hot array.")
    if ops is not None:
      ops = jnp.asarray(ops)
    x = Conv(self.channels, 3, name="stem")(images)
    if use_bn:
      x = layers.BatchNorm(self.eps, name="stem_bn")(x, train=train)
    self.sow("intermediates", "blocks", x)
    block = 0

    def block_input(x):
      return x if cuts is None else jax.lax.stop_gradient(x) + cuts[block]

    c = self.channels
    for stage in range(3):
      if stage > 0:
        c *= 2
        x = ResNetBlock(c, self.eps, name=f"reduce{stage}")(block_input(x), use_bn=use_bn,
                                                            train=train)
        self.sow("intermediates", "blocks", x)
        block += 1
      for i in range(self.cells_per_stage):
        cell = Cell(c, self.arch, self.eps, name=f"stage{stage}_cell{i}")
        x = cell(block_input(x), ops, use_bn=use_bn, train=train)
        self.sow("intermediates", "blocks", x)
        block += 1
    if use_bn:
      x = layers.BatchNorm(self.eps, name="last_bn")(x, train=train)
    self.sow("intermediates", "relu", (x, jnp.ones((), x.dtype)))
    x = nn.relu(x)
    self.sow("intermediates", "features", x)
    pooled = x.mean(axis=(1, 2))
    logits = nn.Dense(self.num_classes, kernel_init=layers.torch_kernel_init,
                      bias_init=layers.torch_bias_init(c), name="classifier")(pooled)
    self.sow("intermediates", "act", logits)
    return self.perturb("act", logits)


# --- glue to the proxy contract --------------------------------------------------------------------


def _collect(tree, key):
  """Every value sown under ``key``, depth first in sorted-key order."""
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


def make_apply_fn(model: NB201Network, ops=None):
  """Wraps ``model`` into ``apply_fn(variables, images, *, bn=True) -> ModelOutput``.

  Args:
    model: an NB201Network (exact or masked).
    ops: the (6, 5) one-hot cell for the masked form (may be a traced array under ``vmap``).
  """

  def apply_fn(variables, images, *, bn: bool = True) -> ModelOutput:
    cuts = variables.get("block_cuts")
    variables = {k: v for k, v in variables.items() if k != "block_cuts"}
    logits, state = model.apply(variables, images, ops, use_bn=bn, cuts=cuts,
                                mutable=["batch_stats", "intermediates"])
    inter = state["intermediates"]
    return ModelOutput(
        logits=logits,
        features=_collect(inter, "features")[0],
        relu_inputs=tuple(_collect(inter, "relu")),
        activations=_acts_like_perturbations(inter),
        batch_stats=state.get("batch_stats", {}),
        blocks=tuple(inter["blocks"]),
    )

  return apply_fn


def init_variables(model: NB201Network, key: jax.Array, image_shape=(32, 32, 3)) -> dict:
  """PyTorch-default initial variables (``params``, ``batch_stats``) of ``model``.

  Conv and linear kernels are U(+-1/sqrt(fan_in)) (kaiming-uniform with a=sqrt(5)), the
  classifier bias U(+-1/sqrt(fan_in)), BN scale 1 and bias 0, running mean 0 and variance 1. The
  tree comes from ``jax.eval_shape`` of ``model.init`` (tracing only) and the values from NumPy,
  which avoids compiling the network's initialiser op by op. For the masked form this creates every
  op's parameters; they serve every cell.
  """
  images = jax.ShapeDtypeStruct((2, *image_shape), jnp.float32)
  ops = None if model.arch is not None else jax.ShapeDtypeStruct((NUM_EDGES, len(OPS)), jnp.float32)
  shapes = jax.eval_shape(model.init, jax.random.key(0), images, ops)
  rng = np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel())
  fan_in = shapes["params"]["classifier"]["kernel"].shape[0]

  def fill(path, leaf):
    name = path[-1].key
    collection = path[0].key
    if collection == "batch_stats":
      return jnp.ones(leaf.shape, leaf.dtype) if name == "var" else jnp.zeros(leaf.shape, leaf.dtype)
    if name == "kernel":
      bound = 1.0 / np.sqrt(np.prod(leaf.shape[:-1]))
      return jnp.asarray(rng.uniform(-bound, bound, leaf.shape).astype(np.float32))
    if name == "scale":
      return jnp.ones(leaf.shape, leaf.dtype)
    if name == "bias" and path[-2].key == "classifier":
      bound = 1.0 / np.sqrt(fan_in)
      return jnp.asarray(rng.uniform(-bound, bound, leaf.shape).astype(np.float32))
    return jnp.zeros(leaf.shape, leaf.dtype)

  kept = {k: v for k, v in shapes.items() if k in ("params", "batch_stats")}
  return jax.tree_util.tree_map_with_path(fill, kept)


def subset_for(arch: Arch, variables: dict, template: dict) -> dict:
  """The part of masked-form ``variables`` that the exact network of ``arch`` uses.

  ``template`` is any variable tree of the exact network (e.g. from ``jax.eval_shape``).
  """

  def pick(src, tmpl):
    return {k: pick(src[k], v) if isinstance(v, dict) else src[k] for k, v in tmpl.items()}

  return {col: pick(variables[col], tmpl) for col, tmpl in template.items()}
