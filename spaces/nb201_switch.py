"""The NAS-Bench-201 network as pure JAX with one ``lax.switch`` per edge: the fast form on a CPU.

The masked network (``nb201_net``) computes all five candidate ops on every edge. Here each edge
picks its op with ``jax.lax.switch(op_indices[e], ...)``, and XLA:CPU executes only the taken
branch, so one compiled function scores every one of the 15,625 cells at the cost of that cell
alone. It reads exactly the masked network's variables and returns the same ``ModelOutput``
(logits, features, ReLU inputs with their 0/1 weights, activations, running statistics) for the
same cell. Under ``jax.vmap`` over cells a switch becomes a select of every branch: there, use the
masked network.

What makes it fast on XLA:CPU (measurements in docs/scoring.md, XLA:CPU):

* Each switched edge is a ``jax.custom_vjp`` that saves only its input, the pre-BN conv output and
  the op index, and runs a second ``lax.switch`` in its backward pass. Differentiating through the
  switch instead would save (and zero-fill) the union of every branch's residuals. The edge also
  adds the node's running sum inside its branch, which saves a pass over the activation. For
  second derivatives, which do differentiate the edge's own switches, every branch is
  rematerialised (``jax.checkpoint``) for the same reason.
* Every convolution (``conv2d``) has a custom VJP made of forward, standard-layout convolutions and
  matmuls: XLA:CPU runs JAX's own conv transposes as naive loops inside a conditional, and its
  weight gradient slowly everywhere. float64 convolutions (SynFlow) never reach the fast library,
  so they are shifted matmuls.
* Average pooling is shifted adds; ``none`` multiplies by zero.

Every custom rule is written with differentiable ``jnp``/``lax`` ops, so reverse-mode derivatives
of any order work (GraSP's Hessian-gradient product is reverse over reverse), as does ``vmap`` of a
pullback (TE-NAS). Forward mode (``jax.jvp``, ``jax.jacfwd``, ``jax.hessian``) does not: JAX cannot
push tangents through a ``custom_vjp``.

Example:
  >>> apply_fn = make_apply_fn(setting, jnp.asarray(arch.op_indices))
  >>> out = apply_fn(variables, images)      # variables from nb201_net.init_variables(masked)
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax
from jax.custom_derivatives import SymbolicZero

from rznas_jax.proxies.base import ApplyFn, ModelOutput
from rznas_jax.spaces import layers
from rznas_jax.spaces import nb201_net
from rznas_jax.spaces.nb201 import EDGES, NUM_EDGES, OPS

_NONE, _SKIP, _CONV1, _CONV3, _POOL = (OPS.index(op) for op in
                                       ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3",
                                        "avg_pool_3x3"))
# The conv ops of an edge: (masked-network module name, op index, kernel size).
_CONV_OPS = (("nor_conv_1x1", _CONV1, 1), ("nor_conv_3x3", _CONV3, 3))
_TAGS = ("1", "3")  # suffix of each conv op's entries in an edge's weight dict
_DIMS = ("NHWC", "HWIO", "NHWC")
_MOMENTUM = 0.1  # PyTorch BatchNorm2d
_EPS = 1e-5


# --- convolutions ------------------------------------------------------------------------------


def _conv_shifted_matmuls(x: jax.Array, kernel: jax.Array, stride: int) -> jax.Array:
  """``kernel``-sized conv with PyTorch padding as a sum of k*k shifted (B*H*W, Cin) @ (Cin, Cout)."""
  k = kernel.shape[0]
  p = (k - 1) // 2
  b, h, w, c = x.shape
  ho, wo = (h + 2 * p - k) // stride + 1, (w + 2 * p - k) // stride + 1
  xp = jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0))) if p else x
  out = None
  for i in range(k):
    for j in range(k):
      patch = lax.slice(xp, (0, i, j, 0), (b, i + (ho - 1) * stride + 1, j + (wo - 1) * stride + 1, c),
                        (1, stride, stride, 1))
      term = jnp.dot(patch.reshape(-1, c), kernel[i, j])
      out = term if out is None else out + term
  return out.reshape(b, ho, wo, kernel.shape[-1])


def _conv_forward(x: jax.Array, kernel: jax.Array, stride: int) -> jax.Array:
  """The convolution itself: in float32 the library one (the masked network's own op, so the same
  numbers); in float64 shifted matmuls, because XLA:CPU runs float64 convolutions as naive loops."""
  if x.dtype == jnp.float64:
    return _conv_shifted_matmuls(x, kernel, stride)
  return lax.conv_general_dilated(x, kernel, (stride, stride), layers.torch_padding(kernel.shape[0]),
                                  dimension_numbers=_DIMS)


def _conv_weight_grad(x: jax.Array, g: jax.Array, k: int, stride: int) -> jax.Array:
  """Gradient of ``sum(g * conv2d(x, W, stride))`` w.r.t. the (k, k, Cin, Cout) kernel W.

  A 1x1 kernel is one matmul. A float32 stride-1 kernel is `_weight_grad_conv`. Otherwise
  (float64, or stride 2) one matmul per tap, ``x_tap (Cin, B*Ho*Wo) @ g (B*Ho*Wo, Cout)``, with
  each tap sliced from x in channel-major layout.
  """
  b, h, w, cin = x.shape
  _, ho, wo, cout = g.shape
  if k == 1 and stride == 1:
    return lax.dot_general(x.reshape(-1, cin), g.reshape(-1, cout),
                           (((0,), (0,)), ((), ()))).reshape(1, 1, cin, cout)
  if stride == 1 and x.dtype == jnp.float32:
    return _weight_grad_conv(x, g)
  g = g.reshape(-1, cout)
  p = (k - 1) // 2
  xt = jnp.pad(jnp.transpose(x, (3, 0, 1, 2)), ((0, 0), (0, 0), (p, p), (p, p)))
  taps = [jnp.dot(lax.slice(xt, (0, 0, i, j),
                            (cin, b, i + (ho - 1) * stride + 1, j + (wo - 1) * stride + 1),
                            (1, 1, stride, stride)).reshape(cin, -1), g)
          for i in range(k) for j in range(k)]
  return jnp.stack(taps).reshape(k, k, cin, cout)


@jax.custom_vjp
def _weight_grad_conv(x: jax.Array, g: jax.Array) -> jax.Array:
  """The weight gradient of a stride-1 3x3 `conv2d` as one forward convolution.

  The images become the channels: x as (Cin, H+2, W+2, B) convolved with g as an (H, W, B, Cout)
  kernel gives (Cin, 3, 3, Cout). XLA:CPU runs that in its convolution library, while the nine tap
  matmuls first copy nine strided slices of x: on the full-size network this took grad_norm from
  2.62 to 3.06 archs/s here (docs/scoring.md). The function is bilinear, and its VJP is two
  `conv2d` calls, so GraSP's second derivatives stay in the fast library too (through JAX's
  transpose of this convolution they ran 3x slower inside a branch).
  """
  xc = jnp.pad(jnp.transpose(x, (3, 1, 2, 0)), ((0, 0), (1, 1), (1, 1), (0, 0)))
  out = lax.conv_general_dilated(xc, jnp.transpose(g, (1, 2, 0, 3)), (1, 1), "VALID",
                                 dimension_numbers=_DIMS)
  return jnp.transpose(out, (1, 2, 0, 3))


def _weight_grad_conv_fwd(x, g):
  return _weight_grad_conv(x, g), (x, g)


def _weight_grad_conv_bwd(res, d_kernel):
  x, g = res  # d/dx: correlate g with the flipped kernel (as conv2d's input gradient); d/dg: conv
  return (conv2d(g, jnp.transpose(d_kernel[::-1, ::-1], (0, 1, 3, 2)), 1),
          conv2d(x, d_kernel, 1))


_weight_grad_conv.defvjp(_weight_grad_conv_fwd, _weight_grad_conv_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def conv2d(x: jax.Array, kernel: jax.Array, stride: int = 1) -> jax.Array:
  """PyTorch ``Conv2d(padding=(k-1)//2, bias=False)``, NHWC/HWIO, with a VJP fast on XLA:CPU.

  The VJP is made of forward, standard-layout ops only: the input gradient of a stride-1 conv is
  this conv again (flipped kernel, channels swapped), the weight gradient one matmul per tap.
  XLA:CPU runs those in its fast libraries anywhere, while JAX's own conv transposes run as naive
  loops inside a ``lax.switch`` branch or a loop body. (The input gradient of a stride-2 conv is
  JAX's own: those convs sit at top level, where XLA handles it well.) The rule is differentiable,
  so second derivatives work.

  Args:
    x: (B, H, W, Cin).
    kernel: (k, k, Cin, Cout), k odd.
    stride: 1 or 2; static.

  Returns:
    (B, Ho, Wo, Cout).
  """
  return _conv_forward(x, kernel, stride)


def _conv2d_fwd(x, kernel, stride):
  needs = {name: () for name, a in (("x", x), ("kernel", kernel)) if a.perturbed}
  return _conv_forward(x.value, kernel.value, stride), (x.value, kernel.value, needs)


def _conv2d_bwd(stride, res, g):
  x, kernel, needs = res
  if isinstance(g, SymbolicZero):
    return None, None
  dx = dk = None
  if "x" in needs:
    if stride == 1:  # correlation with the flipped kernel, in/out channels swapped
      dx = conv2d(g, jnp.transpose(kernel[::-1, ::-1], (0, 1, 3, 2)), 1)
    else:  # only at top level (reduction blocks), where XLA's transposed conv is fast
      dx = jax.vjp(lambda x: _conv_forward(x, kernel, stride), x)[1](g)[0]
  if "kernel" in needs:
    dk = _conv_weight_grad(x, g, kernel.shape[0], stride)
  return dx, dk


conv2d.defvjp(_conv2d_fwd, _conv2d_bwd, symbolic_zeros=True)


def _avg_pool_transpose(g: jax.Array) -> jax.Array:
  """VJP of ``layers.avg_pool_exclude_pad`` (3x3, stride 1): a box sum of ``g / count``."""
  h, w = g.shape[1], g.shape[2]
  ones = jnp.pad(jnp.ones((h, w), g.dtype), ((1, 1), (1, 1)))
  count = sum(ones[i:i + h, j:j + w] for i in range(3) for j in range(3))
  gp = jnp.pad(g / count[None, :, :, None], ((0, 0), (1, 1), (1, 1), (0, 0)))
  return sum(gp[:, i:i + h, j:j + w, :] for i in range(3) for j in range(3))


# --- batch norm --------------------------------------------------------------------------------


def _moments(y: jax.Array) -> tuple[jax.Array, jax.Array]:
  mean = jnp.mean(y, (0, 1, 2))
  return mean, jnp.mean(jnp.square(y - mean), (0, 1, 2))


def _normalize(y, mean, var, scale, bias, eps):
  return (y - mean) * lax.rsqrt(var + eps) * scale.astype(y.dtype) + bias.astype(y.dtype)


def _updated_stats(stats: dict, mean: jax.Array, var: jax.Array, n: int, gate: Any = 1.0) -> dict:
  """PyTorch running statistics after one batch; ``gate`` 0 leaves them as they were (as the masked
  network does for an unused op)."""
  m = _MOMENTUM * gate
  unbiased = var * (n / max(n - 1, 1))
  new_mean = stats["mean"] + m * (lax.stop_gradient(mean).astype(stats["mean"].dtype) - stats["mean"])
  new_var = stats["var"] + m * (lax.stop_gradient(unbiased).astype(stats["var"].dtype) - stats["var"])
  return {"mean": new_mean, "var": new_var}


def _batch_norm(y, params, stats, eps):
  mean, var = _moments(y)
  out = _normalize(y, mean, var, params["scale"], params["bias"], eps)
  return out, _updated_stats(stats, mean, var, y.size // y.shape[-1])


# --- one switched edge -------------------------------------------------------------------------


def _remat(branches):
  """Each branch under ``jax.checkpoint``, for derivatives of the edge's own rules.

  First-order derivatives never differentiate these switches (the custom VJP supplies them), so
  this changes nothing there. GraSP differentiates them once more (reverse over reverse), and
  reverse mode through a ``lax.switch`` saves the union of every branch's residuals, zero-filled.
  Rematerialised branches save only their inputs, which all branches share, and recompute the
  taken branch: on the full-size network GraSP's temporaries fell from 4.7 GB to 1.2 GB and it
  ran 2.2x faster, with bit-identical scores.
  """
  return [jax.checkpoint(b) for b in branches]


def _edge(bn: bool, eps: float):
  """The custom-VJP edge ``(op, x, total, w) -> (total + op(x), y, mean, var)`` for one BN setting.

  ``total`` is the sum of the node's earlier edges (None for its first edge): adding it inside the
  branch saves a pass over the activation per edge. ``w`` holds the kernels ``k1``/``k3`` of the
  two conv ops, their BN ``s1, b1, s3, b3`` when ``bn``, and their pre-BN perturbations ``p1``/``p3``
  when the caller has them. ``y`` is the pre-BN output of the chosen conv (zeros for the other ops),
  ``mean``/``var`` its batch moments (zeros without a conv or BN): they feed the running statistics
  and are not differentiable, so callers must ``stop_gradient`` them.

  The forward pass saves only ``x``, ``y`` (with BN) and the op; the backward pass is a second
  ``lax.switch`` over the ops, and computes only the cotangents that are asked for.
  """
  tags = dict(zip((_CONV1, _CONV3), _TAGS))

  def forward(op, x, total, w):
    def finish(out, y=None, mean=None, var=None):
      out = out if total is None else total + out
      y = jnp.zeros_like(x) if y is None else y
      zero = jnp.zeros(x.shape[-1:], x.dtype)
      return out, y, zero if mean is None else mean, zero if var is None else var

    def conv_op(tag):
      def branch(x, w):
        y = conv2d(jax.nn.relu(x), w["k" + tag], 1)
        if "p" + tag in w:
          y = y + w["p" + tag]
        if not bn:
          return finish(y, y)
        mean, var = _moments(y)
        return finish(_normalize(y, mean, var, w["s" + tag], w["b" + tag], eps), y, mean, var)
      return branch

    branches = [None] * len(OPS)
    branches[_NONE] = lambda x, w: finish(x * 0)
    branches[_SKIP] = lambda x, w: finish(x)
    branches[_POOL] = lambda x, w: finish(layers.avg_pool_exclude_pad(x))
    for index, tag in tags.items():
      branches[index] = conv_op(tag)
    return lax.switch(op, _remat(branches), x, w)

  @jax.custom_vjp
  def edge(op, x, total, w):
    return forward(op, x, total, w)

  def fwd(op, x, total, w):
    w_values = {k: v.value for k, v in w.items()}
    outs = forward(op.value, x.value, None if total is None else total.value, w_values)
    needs = {k: () for k, v in w.items() if v.perturbed}
    if x.perturbed:
      needs["x"] = ()
    if total is not None and total.perturbed:
      needs["total"] = ()
    _, y, mean, var = outs
    saved = (y, mean, var) if bn else ()  # without BN the backward pass needs no activation but x
    return outs, (op.value, x.value, saved, w_values, needs)

  def bwd(res, cts):
    op, x, saved, w, needs = res
    g_out, g_y = cts[0], cts[1]
    d_total = g_out if "total" in needs and not isinstance(g_out, SymbolicZero) else None
    if isinstance(g_out, SymbolicZero) and isinstance(g_y, SymbolicZero):
      return None, None, None, {k: None for k in w}
    g_out = jnp.zeros_like(x) if isinstance(g_out, SymbolicZero) else g_out
    extra = {} if isinstance(g_y, SymbolicZero) else {"g_y": g_y}
    wanted = [k for k in w if k in needs]

    def zeros(w, skip=()):
      return {k: jnp.zeros_like(w[k]) for k in wanted if k not in skip}

    def cheap(vjp):
      return lambda g, extra, x, saved, w: ((vjp(g) if "x" in needs else None), zeros(w))

    def conv_back(tag, k):
      def branch(g, extra, x, saved, w):
        grads = {}
        if bn:
          y, mean, var = saved
          rstd = lax.rsqrt(var + eps)
          y_hat = (y - mean) * rstd
          grads["b" + tag] = jnp.sum(g, (0, 1, 2)).astype(w["b" + tag].dtype)
          grads["s" + tag] = jnp.sum(g * y_hat, (0, 1, 2)).astype(w["s" + tag].dtype)
          d_hat = g * w["s" + tag].astype(y.dtype)
          dy = rstd * (d_hat - jnp.mean(d_hat, (0, 1, 2)) - y_hat * jnp.mean(d_hat * y_hat, (0, 1, 2)))
        else:
          dy = g
        if "g_y" in extra:
          dy = dy + extra["g_y"]
        grads["p" + tag] = dy
        if "k" + tag in needs:
          grads["k" + tag] = _conv_weight_grad(jax.nn.relu(x), dy, k, 1)
        dx = None
        if "x" in needs:  # the conv's input gradient, through the ReLU
          flipped = jnp.transpose(w["k" + tag][::-1, ::-1], (0, 1, 3, 2))
          dx = conv2d(dy, flipped, 1) * (x > 0).astype(x.dtype)
        own = {name: grads[name] for name in wanted if name in grads}
        return dx, {**own, **zeros(w, skip=own)}
      return branch

    branches = [None] * len(OPS)
    branches[_NONE] = cheap(lambda g: g * 0)
    branches[_SKIP] = cheap(lambda g: g)
    branches[_POOL] = cheap(_avg_pool_transpose)
    for (_, index, k), tag in zip(_CONV_OPS, _TAGS):
      branches[index] = conv_back(tag, k)
    dx, dw = lax.switch(op, _remat(branches), g_out, extra, x, saved, w)
    return None, dx, d_total, {k: dw.get(k) for k in w}

  edge.defvjp(fwd, bwd, symbolic_zeros=True)
  return edge


# --- the network -------------------------------------------------------------------------------


def _nested(tree: dict, path: tuple[str, ...]) -> dict:
  for k in path:
    tree = tree.setdefault(k, {})
  return tree


def _get(tree: dict | None, *path: str) -> Any:
  for k in path:
    tree = None if tree is None else tree.get(k)
  return tree


def _conv_layer(x, params, perturbations, name, stride=1):
  """A masked-network ``Conv`` module ``name``: the conv, plus its perturbation if given."""
  y = conv2d(x, params[name]["conv"]["kernel"], stride)
  if perturbations is not None:
    y = y + perturbations[name]["act"]
  return y


class _Forward:
  """One forward pass; gathers the ReLU inputs, activations and running statistics as it goes.

  ``relus`` is nested like the masked network's ``intermediates`` so that ``nb201_net._collect``
  orders the ReLU inputs identically; ``acts`` is nested like its ``perturbations``.
  """

  def __init__(self, variables: dict, bn: bool, eps: float):
    self.params = variables["params"]
    self.perturbations = variables.get("perturbations")
    self.stats_in = variables.get("batch_stats") or {}
    # New dicts, same leaves: the BN layers of this pass replace theirs.
    self.stats_out = jax.tree.map(lambda a: a, self.stats_in) if bn else self.stats_in
    self.bn, self.eps = bn, eps
    self.relus: dict = {}
    self.acts: dict = {}
    self.edge = _edge(bn, eps)

  def _old_stats(self, path, c):
    return _get(self.stats_in, *path) or {"mean": jnp.zeros((c,), jnp.float32),
                                          "var": jnp.ones((c,), jnp.float32)}

  def batch_norm(self, y, path):
    out, new = _batch_norm(y, _get(self.params, *path), self._old_stats(path, y.shape[-1]), self.eps)
    _nested(self.stats_out, path[:-1])[path[-1]] = new
    return out

  def conv(self, x, path, stride=1):
    """The masked network's ``Conv`` module at ``path``."""
    y = _conv_layer(x, _get(self.params, *path[:-1]), _get(self.perturbations, *path[:-1]), path[-1],
                    stride)
    _nested(self.acts, path)["act"] = y
    return y

  def relu_conv_bn(self, x, path, stride=1):
    _nested(self.relus, path)["relu"] = ((x, jnp.asarray(1.0, x.dtype)),)
    y = self.conv(jax.nn.relu(x), path + ("op",), stride)
    return self.batch_norm(y, path + ("bn",)) if self.bn else y

  def reduction(self, x, name):
    """xautodl ``ResNetBasicblock``, stride 2."""
    y = self.relu_conv_bn(x, (name, "conv_a"), stride=2)
    y = self.relu_conv_bn(y, (name, "conv_b"))
    b, h, w, c = x.shape
    pooled = x.reshape(b, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))
    return y + self.conv(pooled, (name, "shortcut"))

  def cell(self, x, name, op_indices):
    nodes = [x]
    for node in range(1, 4):
      total = None  # the edges into `node`, summed in the masked network's order
      for e, (to, src) in enumerate(EDGES):
        if to == node:
          total = self._edge(nodes[src], total, name, e, op_indices[e])
      nodes.append(total)
    return nodes[3]

  def _edge(self, x, total, cell, e, op):
    names = {tag: f"edge{e}_{module}" for (module, _, _), tag in zip(_CONV_OPS, _TAGS)}
    w = {}
    for tag, module in names.items():
      w["k" + tag] = self.params[cell][module]["op"]["conv"]["kernel"]
      if self.bn:
        w["s" + tag] = self.params[cell][module]["bn"]["scale"]
        w["b" + tag] = self.params[cell][module]["bn"]["bias"]
      if self.perturbations is not None:
        w["p" + tag] = self.perturbations[cell][module]["op"]["act"]
    out, y, mean, var = self.edge(op, x, total, w)
    mean, var = lax.stop_gradient(mean), lax.stop_gradient(var)
    n = x.size // x.shape[-1]
    for (_, index, _), tag in zip(_CONV_OPS, _TAGS):
      path = (cell, names[tag])
      gate = (op == index).astype(x.dtype)
      _nested(self.relus, path)["relu"] = ((x, gate),)
      # Unused ops' activations are zeros; their gradient is zero in the masked form as well.
      _nested(self.acts, path + ("op",))["act"] = y * gate
      if self.bn:
        bn_path = path + ("bn",)
        old = self._old_stats(bn_path, x.shape[-1])
        _nested(self.stats_out, path)["bn"] = _updated_stats(old, mean, var, n,
                                                             gate.astype(old["mean"].dtype))
    return out

  def head(self, x):
    if self.bn:
      x = self.batch_norm(x, ("last_bn",))
    self.relus["relu"] = ((x, jnp.ones((), x.dtype)),)
    features = jax.nn.relu(x)
    pooled = features.mean(axis=(1, 2))
    dense = self.params["classifier"]
    logits = jnp.dot(pooled, dense["kernel"].astype(pooled.dtype)) + dense["bias"].astype(pooled.dtype)
    if self.perturbations is not None:
      logits = logits + self.perturbations["act"]
    self.acts["act"] = logits
    return features, logits


def make_apply_fn(setting: Any, op_indices: jax.Array) -> ApplyFn:
  """``apply_fn(variables, images, *, bn=True) -> ModelOutput`` for one cell, chosen by an array.

  Args:
    setting: the network, e.g. a ``scoring.NB201Setting``; only ``cells_per_stage`` is read (the
      widths and the number of classes come from the variables).
    op_indices: (6,) int array, each edge's index into ``nb201.OPS``; may be traced, so one
      compiled function serves every cell.

  Returns:
    A function with the proxy contract of ``proxies.base``. It takes the masked network's
    variables (``nb201_net.init_variables(NB201Network(None, ...))``) and returns the same
    ``ModelOutput`` as ``nb201_net.make_apply_fn(masked, one_hot)``: ReLU inputs in the same order
    with the same weights, running statistics updated only for the ops the cell uses, and
    activations of the unused ops set to zero (their gradient is zero in both forms).

  Raises:
    ValueError: if ``op_indices`` does not have shape (6,).
  """
  op_indices = _checked(op_indices)
  cells_per_stage = int(setting.cells_per_stage)
  eps = float(getattr(setting, "eps", _EPS))

  def apply_fn(variables: dict, images: jax.Array, *, bn: bool = True) -> ModelOutput:
    net = _Forward(variables, bn, eps)
    cuts = variables.get("block_cuts")
    x = net.conv(images, ("stem",))
    if bn:
      x = net.batch_norm(x, ("stem_bn",))
    blocks = [x]

    def block_input(x):  # see proxies.base: cuts make each block's VJP local
      return x if cuts is None else lax.stop_gradient(x) + cuts[len(blocks) - 1]

    for stage in range(3):
      if stage > 0:
        x = net.reduction(block_input(x), f"reduce{stage}")
        blocks.append(x)
      for i in range(cells_per_stage):
        x = net.cell(block_input(x), f"stage{stage}_cell{i}", op_indices)
        blocks.append(x)
    features, logits = net.head(x)
    return ModelOutput(
        logits=logits,
        features=features,
        relu_inputs=tuple(nb201_net._collect(net.relus, "relu")),  # pylint: disable=protected-access
        activations=net.acts,
        batch_stats=net.stats_out,
        blocks=tuple(blocks),
    )

  return apply_fn


def apply_cell(variables: dict, x: jax.Array, op_indices: jax.Array, *, bn: bool = True,
               eps: float = _EPS) -> tuple[jax.Array, dict]:
  """One cell of the switch network, the counterpart of a masked ``nb201_net.Cell``.

  Args:
    variables: the variables of one masked cell (``params``, ``batch_stats``, optionally
      ``perturbations``), e.g. ``{c: v["stage0_cell0"] for c, v in network_variables.items()}``.
    x: the cell input, NHWC.
    op_indices: (6,) int array of op indices into ``nb201.OPS``; may be traced.
    bn: BN after each conv op, in train mode.
    eps: BN eps.

  Returns:
    The cell output and the cell's running statistics after this batch.

  Raises:
    ValueError: if ``op_indices`` does not have shape (6,).
  """
  net = _Forward({name: {"cell": tree} for name, tree in variables.items()}, bn, eps)
  out = net.cell(x, "cell", _checked(op_indices))
  return out, net.stats_out.get("cell", {})


def _checked(op_indices: jax.Array) -> jax.Array:
  op_indices = jnp.asarray(op_indices)
  if op_indices.shape != (NUM_EDGES,):
    raise ValueError(f"op_indices must have shape ({NUM_EDGES},), one op index per edge; got "
                     f"shape {op_indices.shape}.")
  return op_indices.astype(jnp.int32)
