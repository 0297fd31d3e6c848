"""Every proxy against an independent NumPy reference on a tiny conv net.

The reference network below is written twice: once as a Flax Linen module that honours the proxy
contract (``base.ModelOutput``, perturbations, PyTorch-semantics BN), and once in NumPy with a
hand-written forward and backward pass (im2col convolutions, train-mode BN). The proxies run on the
Flax one; the expected values come from the NumPy one. Comparisons are in float64 (tight
tolerances); a second test runs every proxy jitted in float32.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import flax.linen as nn
import pytest

from rznas_jax import proxies
from rznas_jax.proxies import Batch, ModelOutput, UnknownProxyError
from rznas_jax.proxies.epe_nas import epe_score
from rznas_jax.proxies.zico import zico_score

BATCH, SIZE, IN_CH, WIDTH, CLASSES = 8, 8, 3, 4, 3
EPS_BN, MOMENTUM = 1e-5, 0.1
GAMMA = 1e-2  # Zen-score's mixup gamma

ALL_PROXIES = ["epe_nas", "fisher", "fisher_unweighted", "flops", "grad_norm", "grad_norm_zen", "grasp", "jacov",
               "l2_norm", "naswot", "params", "plain", "snip", "synflow", "synflow_zen", "te_nas", "zen", "zico"]
NETWORK_PROXIES = [n for n in ALL_PROXIES if n not in ("params", "flops")]


# ---------------------------------------------------------------------------------------------
# The Flax network that the proxies see.


class TorchBatchNorm(nn.Module):
  """BatchNorm2d in train mode: batch statistics, momentum 0.1, unbiased running variance."""

  @nn.compact
  def __call__(self, x):
    c = x.shape[-1]
    scale = self.param("scale", nn.initializers.ones, (c,))
    bias = self.param("bias", nn.initializers.zeros, (c,))
    running_mean = self.variable("batch_stats", "mean", lambda: jnp.zeros((c,), x.dtype))
    running_var = self.variable("batch_stats", "var", lambda: jnp.ones((c,), x.dtype))
    axes = tuple(range(x.ndim - 1))
    count = x.size // c
    mean = x.mean(axes)
    var = jnp.square(x - mean).mean(axes)
    if not self.is_initializing():
      running_mean.value = (1 - MOMENTUM) * running_mean.value + MOMENTUM * mean
      running_var.value = (1 - MOMENTUM) * running_var.value + MOMENTUM * var * count / (count - 1)
    return (x - mean) / jnp.sqrt(var + EPS_BN) * scale + bias


class TinyNet(nn.Module):
  """conv3x3 -> BN -> ReLU -> conv3x3 -> BN -> ReLU -> global average pool -> linear."""

  @nn.compact
  def __call__(self, x, bn: bool = True):
    acts, relus = {}, []
    h = x
    for i in (1, 2):
      h = nn.Conv(WIDTH, (3, 3), padding="SAME", use_bias=False, name=f"conv{i}")(h)
      h = self.perturb(f"act{i}", h)
      acts[f"act{i}"] = h
      if bn:
        h = TorchBatchNorm(name=f"bn{i}")(h)
      relus.append((h, jnp.ones((), h.dtype)))
      h = nn.relu(h)
    features = h
    logits = nn.Dense(CLASSES, name="fc")(h.mean(axis=(1, 2)))
    logits = self.perturb("act3", logits)
    acts["act3"] = logits
    return logits, features, tuple(relus), acts


MODEL = TinyNet()


# ModelOutput.activations follows the module path of the layer that produced each activation
# (fisher finds the kernel, hence the fan-in, there); TinyNet's perturbations are top-level.
ACT_LAYER = {"act1": "conv1", "act2": "conv2", "act3": "fc"}


def apply_fn(variables, images, *, bn=True):
  if "perturbations" in variables:
    variables = {**variables, "perturbations": {a: variables["perturbations"][layer]["act"]
                                                for a, layer in ACT_LAYER.items()}}
  (logits, features, relus, acts), state = MODEL.apply(variables, images, bn=bn,
                                                       mutable=["batch_stats"])
  acts = {layer: {"act": acts[a]} for a, layer in ACT_LAYER.items()}
  return ModelOutput(logits, features, relus, acts, state["batch_stats"])


# ---------------------------------------------------------------------------------------------
# The same network in NumPy, forward and backward by hand.


def np_conv(x, k):
  """SAME, stride-1 cross-correlation, NHWC x HWIO; returns the output and the patches."""
  kh, kw = k.shape[:2]
  b, h, w, _ = x.shape
  xp = np.pad(x, ((0, 0), (kh // 2, kh // 2), (kw // 2, kw // 2), (0, 0)))
  patches = np.stack([np.stack([xp[:, i:i + h, j:j + w, :] for j in range(kw)], axis=3)
                      for i in range(kh)], axis=3)  # (B, H, W, kh, kw, Cin)
  return np.einsum("bhwijc,ijco->bhwo", patches, k), patches


def np_conv_backward(dy, patches, k):
  kh, kw = k.shape[:2]
  b, h, w, _ = dy.shape
  dk = np.einsum("bhwijc,bhwo->ijco", patches, dy)
  dpatches = np.einsum("bhwo,ijco->bhwijc", dy, k)
  dxp = np.zeros((b, h + kh - 1, w + kw - 1, k.shape[2]))
  for i in range(kh):
    for j in range(kw):
      dxp[:, i:i + h, j:j + w, :] += dpatches[:, :, :, i, j, :]
  return dk, dxp[:, kh // 2:kh // 2 + h, kw // 2:kw // 2 + w, :]


def np_bn(x, scale, bias):
  axes = (0, 1, 2)
  mean, var = x.mean(axes), x.var(axes)
  xhat = (x - mean) / np.sqrt(var + EPS_BN)
  count = x.size // x.shape[-1]
  return scale * xhat + bias, (xhat, var, scale), mean, var * count / (count - 1)


def np_bn_backward(dy, cache):
  xhat, var, scale = cache
  axes = (0, 1, 2)
  dxhat = dy * scale
  dx = (dxhat - dxhat.mean(axes) - xhat * (dxhat * xhat).mean(axes)) / np.sqrt(var + EPS_BN)
  return dx, (dy * xhat).sum(axes), dy.sum(axes)


def np_forward(p, x, bn=True):
  cache = {"x": x}
  h = x
  for i in (1, 2):
    z, cache[f"patches{i}"] = np_conv(h, p[f"conv{i}"]["kernel"])
    cache[f"act{i}"] = z
    if bn:
      z, cache[f"bn{i}"], cache[f"bmean{i}"], cache[f"bvar{i}"] = np_bn(
          z, p[f"bn{i}"]["scale"], p[f"bn{i}"]["bias"])
    cache[f"relu_in{i}"] = z
    h = np.maximum(z, 0)
  cache["features"] = h
  cache["pooled"] = h.mean(axis=(1, 2))
  logits = cache["pooled"] @ p["fc"]["kernel"] + p["fc"]["bias"]
  cache["act3"] = logits
  return logits, cache


def np_backward(p, cache, dlogits, bn=True):
  """Gradients of ``sum(dlogits * logits)``: params, activations (pre-BN) and the input."""
  grads = {"fc": {"kernel": cache["pooled"].T @ dlogits, "bias": dlogits.sum(0)}}
  dacts = {"act3": dlogits}
  _, h, w, _ = cache["features"].shape
  dpooled = dlogits @ p["fc"]["kernel"].T
  dh = np.broadcast_to(dpooled[:, None, None, :] / (h * w), cache["features"].shape)
  for i in (2, 1):
    dz = dh * (cache[f"relu_in{i}"] > 0)
    if bn:
      dz, dscale, dbias = np_bn_backward(dz, cache[f"bn{i}"])
      grads[f"bn{i}"] = {"scale": dscale, "bias": dbias}
    dacts[f"act{i}"] = dz
    dk, dh = np_conv_backward(dz, cache[f"patches{i}"], p[f"conv{i}"]["kernel"])
    grads[f"conv{i}"] = {"kernel": dk}
  return grads, dacts, dh


def np_ce_grad(logits, labels):
  """d/dlogits of the mean cross-entropy."""
  e = np.exp(logits - logits.max(1, keepdims=True))
  probs = e / e.sum(1, keepdims=True)
  return (probs - np.eye(logits.shape[1])[labels]) / logits.shape[0]


def np_loss_grads(p, x, labels):
  logits, cache = np_forward(p, x)
  return np_backward(p, cache, np_ce_grad(logits, labels))


KERNELS = ("conv1", "conv2", "fc")
SCALES = ("bn1", "bn2")


def np_kernel_pairs(p, grads):
  return [(p[layer]["kernel"], grads[layer]["kernel"]) for layer in KERNELS]


def np_abs(p):
  return {layer: {k: np.abs(v) for k, v in leaves.items()} for layer, leaves in p.items()}


# ---------------------------------------------------------------------------------------------
# Reference values, one per proxy.


def ref_grad_norm(p, x, labels, eps):
  grads, _, _ = np_loss_grads(p, x, labels)
  return sum(np.linalg.norm(g) for _, g in np_kernel_pairs(p, grads))


def ref_grad_norm_zen(p, x, labels, eps):
  grads, _, _ = np_loss_grads(p, x, labels)
  return np.sqrt(sum(np.sum(g ** 2) for leaves in grads.values() for g in leaves.values()))


def ref_snip(p, x, labels, eps):
  grads, _, _ = np_loss_grads(p, x, labels)
  return sum(np.abs(w * g).sum() for w, g in np_kernel_pairs(p, grads))


def ref_grasp(p, x, labels, eps):
  """H g by a central difference of the hand-written gradient along g (kernels only)."""
  grads, _, _ = np_loss_grads(p, x, labels)
  step = 1e-5

  def shifted(sign):
    q = {layer: dict(leaves) for layer, leaves in p.items()}
    for layer in KERNELS:
      q[layer]["kernel"] = p[layer]["kernel"] + sign * step * grads[layer]["kernel"]
    return np_loss_grads(q, x, labels)[0]

  plus, minus = shifted(1), shifted(-1)
  return sum(-np.sum(p[l]["kernel"] * (plus[l]["kernel"] - minus[l]["kernel"]) / (2 * step))
             for l in KERNELS)


def ref_fisher(p, x, labels, eps, weighted=True):
  """[S]: each channel's saliency counted once per weight of that channel (fan-in times)."""
  logits, cache = np_forward(p, x)
  _, dacts, _ = np_backward(p, cache, np_ce_grad(logits, labels))
  total = 0.0
  for name, g in dacts.items():
    prod = cache[name] * g
    per_channel = prod.sum(axis=(1, 2)) if prod.ndim == 4 else prod
    fan_in = np.prod(p[ACT_LAYER[name]]["kernel"].shape[:-1]) if weighted else 1
    total += fan_in * 0.5 * (per_channel ** 2).mean(0).sum()
  return total


def ref_fisher_unweighted(p, x, labels, eps):
  return ref_fisher(p, x, labels, eps, weighted=False)


def ref_jacov(p, x, labels, eps):
  logits, cache = np_forward(p, x)
  _, _, dx = np_backward(p, cache, np.ones_like(logits))
  v = np.linalg.eigvals(np.corrcoef(dx.reshape(len(x), -1))).real
  return -np.sum(np.log(v + 1e-5) + 1.0 / (v + 1e-5))


def ref_l2_norm(p, x, labels, eps):
  return sum(np.linalg.norm(w) for w, _ in np_kernel_pairs(p, p))


def ref_plain(p, x, labels, eps):
  grads, _, _ = np_loss_grads(p, x, labels)
  return sum(np.sum(w * g) for w, g in np_kernel_pairs(p, grads))


def epe_reference_score(jac, labels, n_classes):
  """NASLib's ``eval_score_perclass``, restated: per class in order of first appearance, stacked
  rows, ``np.corrcoef``; a one-sample class gives a 0-d corrcoef, which has no ``len``."""
  rows = {}
  for i, label in enumerate(labels):
    rows.setdefault(label, []).append(jac[i])
  per_class = {}
  for c, r in rows.items():
    corrs = np.corrcoef(np.stack(r)) if len(r) > 1 else np.corrcoef(r[0])
    s = np.sum(np.log(np.abs(corrs) + 1e-5))
    if n_classes > 100:
      if np.ndim(corrs) == 0:
        continue
      s /= len(corrs)
    per_class[c] = s
  if n_classes <= 100:
    return sum(abs(s) for s in per_class.values())
  return sum(abs(a - b) for a in per_class.values() for b in per_class.values()) / len(per_class)


def ref_epe_nas(p, x, labels, eps):
  logits, cache = np_forward(p, x)
  _, _, dx = np_backward(p, cache, np.ones_like(logits))
  return epe_reference_score(dx.reshape(len(x), -1), labels, logits.shape[-1])


def ref_synflow(p, x, labels, eps):
  q = np_abs(p)
  ones = np.ones((1,) + x.shape[1:])
  logits, cache = np_forward(q, ones, bn=False)
  grads, _, _ = np_backward(q, cache, np.ones_like(logits), bn=False)
  return sum(np.abs(w * g).sum() for w, g in np_kernel_pairs(q, grads))


def ref_synflow_zen(p, x, labels, eps):
  q = np_abs(p)
  ones = np.ones((1,) + x.shape[1:])
  logits, cache = np_forward(q, ones, bn=True)
  grads, _, _ = np_backward(q, cache, np.ones_like(logits), bn=True)
  # Zen-NAS: torch weight (out, in, kh, kw): sum over dims 1..3, mean over dim 0; then negate.
  return -sum(np.abs(w * g).sum(axis=tuple(range(w.ndim - 1))).mean()
              for w, g in np_kernel_pairs(q, grads))


def ref_naswot(p, x, labels, eps):
  _, cache = np_forward(p, x)
  k = np.zeros((len(x), len(x)))
  for i in (1, 2):
    c = (cache[f"relu_in{i}"].reshape(len(x), -1) > 0).astype(np.float64)
    k += c @ c.T + (1 - c) @ (1 - c).T
  return np.linalg.slogdet(k)[1]


def ref_zen(p, x, labels, eps):
  """Closed form of the running variance after two train-mode passes from var = 1."""
  _, clean = np_forward(p, x)
  _, mixed = np_forward(p, x + GAMMA * eps)
  delta = np.abs(clean["features"] - mixed["features"]).sum(axis=(1, 2, 3)).mean()
  bn_scaling = 0.0
  for i in (1, 2):
    running_var = 0.81 + 0.09 * clean[f"bvar{i}"] + 0.1 * mixed[f"bvar{i}"]
    bn_scaling += np.log(np.sqrt(running_var.mean()))
  return np.log(delta) + bn_scaling


def ref_zico(p, x, labels, eps, accumulate=False):
  half = len(x) // 2
  recorded = []
  for part in (slice(0, half), slice(half, None)):
    grads, _, _ = np_loss_grads(p, x[part], labels[part])
    recorded.append([grads[layer]["kernel"] for layer in KERNELS])
  if accumulate:
    recorded[1] = [a + b for a, b in zip(recorded[0], recorded[1])]
  score = 0.0
  for layer in zip(*recorded):
    g = np.stack([a.reshape(-1) for a in layer])
    std = g.std(axis=0)
    keep = np.nonzero(std)[0]
    total = np.sum(np.abs(g).mean(axis=0)[keep] / std[keep])
    if total != 0:
      score += np.log(total)
  return score


def ref_te_nas(p, x, labels, eps):
  logits, cache = np_forward(p, x)
  rows = []
  for i in range(len(x)):
    seed = np.zeros_like(logits)
    seed[i] = 1.0
    grads, _, _ = np_backward(p, cache, seed)
    rows.append(np.concatenate([grads[l]["kernel"].ravel() for l in KERNELS]
                               + [grads[l]["scale"].ravel() for l in SCALES]))
  g = np.stack(rows)
  v = np.linalg.eigvalsh(g @ g.T)
  return -(v[-1] / v[0])


REFERENCES = {
    "grad_norm": ref_grad_norm, "grad_norm_zen": ref_grad_norm_zen, "snip": ref_snip,
    "grasp": ref_grasp, "fisher": ref_fisher, "fisher_unweighted": ref_fisher_unweighted, "jacov": ref_jacov, "synflow": ref_synflow,
    "synflow_zen": ref_synflow_zen, "naswot": ref_naswot, "zen": ref_zen, "zico": ref_zico,
    "te_nas": ref_te_nas, "l2_norm": ref_l2_norm, "plain": ref_plain, "epe_nas": ref_epe_nas,
}


# ---------------------------------------------------------------------------------------------
# Fixtures: one set of weights and one batch, as NumPy float64.


@pytest.fixture(scope="module")
def weights():
  rng = np.random.default_rng(0)
  p = {
      "conv1": {"kernel": rng.normal(size=(3, 3, IN_CH, WIDTH))},
      "conv2": {"kernel": rng.normal(size=(3, 3, WIDTH, WIDTH))},
      "fc": {"kernel": rng.normal(size=(WIDTH, CLASSES)), "bias": 0.1 * rng.normal(size=CLASSES)},
  }
  for layer in SCALES:
    p[layer] = {"scale": 1 + 0.2 * rng.normal(size=WIDTH), "bias": 0.2 * rng.normal(size=WIDTH)}
  x = rng.normal(size=(BATCH, SIZE, SIZE, IN_CH))
  labels = rng.integers(0, CLASSES, size=BATCH)
  return p, x, labels


def to_jax(p, x, labels, dtype, unused_layers=False):
  """Flax variables and a batch; ``unused_layers`` adds what a masked network's unused op holds:
  a kernel and a BN that the forward pass never reads (zero gradients, untouched statistics)."""
  params = jax.tree.map(lambda a: jnp.asarray(a, dtype), p)
  stats = {layer: {"mean": jnp.zeros(WIDTH, dtype), "var": jnp.ones(WIDTH, dtype)}
           for layer in SCALES}
  if unused_layers:
    rng = np.random.default_rng(1)
    params["unused_conv"] = {"kernel": jnp.asarray(rng.normal(size=(3, 3, WIDTH, WIDTH)), dtype)}
    params["unused_bn"] = {"scale": jnp.ones(WIDTH, dtype), "bias": jnp.zeros(WIDTH, dtype)}
    stats["unused_bn"] = {"mean": jnp.zeros(WIDTH, dtype), "var": jnp.ones(WIDTH, dtype)}
  variables = {"params": params, "batch_stats": stats}
  return variables, Batch(jnp.asarray(x, dtype), jnp.asarray(labels, jnp.int32))


KEY = jax.random.key(42)
# XLA's LLVM optimisations take most of this file's time on a tiny graph and change no result.
_FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}
_COMPILED = {}


def score(name, variables, batch, key=KEY, fn=None, apply=apply_fn):
  """The proxy's score, jitted (apply_fn static); one compilation per function and input types."""
  fn = fn or proxies.get(name).fn
  signature = jax.tree.map(lambda a: (a.shape, a.dtype), (variables, batch))
  cache_key = (fn, apply, str(signature), jax.config.jax_enable_x64)
  if cache_key not in _COMPILED:
    lowered = jax.jit(fn, static_argnums=0).lower(apply, variables, batch, key)
    _COMPILED[cache_key] = lowered.compile(_FAST_COMPILE)
  return float(_COMPILED[cache_key](variables, batch, key))


def zen_noise(x, dtype):
  """The eps that ``zen`` draws from KEY (its docstring states how)."""
  return np.asarray(jax.random.normal(KEY, x.shape, dtype), np.float64)


def as_float32(a):
  return np.asarray(np.asarray(a, np.float32), np.float64)


# ---------------------------------------------------------------------------------------------
# Tests.


def test_registry_lists_every_proxy():
  assert set(ALL_PROXIES) <= set(proxies.names())  # other modules may register more (maedet)
  for name in ALL_PROXIES:
    spec = proxies.get(name)
    assert spec.name == name and spec.source and spec.fn.__doc__


def test_registry_settings():
  settings = {n: (proxies.get(n).init, proxies.get(n).data, proxies.get(n).dtype)
              for n in ALL_PROXIES}
  assert settings["synflow"][2] == settings["synflow_zen"][2] == "float64"
  for name in ("grad_norm_zen", "synflow_zen", "zen", "te_nas", "naswot"):
    assert settings[name][:2] == ("gaussian", "gaussian"), name
  for name in ("grad_norm", "snip", "grasp", "fisher", "jacov", "zico", "l2_norm", "plain", "epe_nas"):
    assert settings[name][:2] == ("pytorch", "real"), name
  assert settings["params"][1] == settings["flops"][1] == "none"


def test_unknown_proxy_names_the_valid_ones():
  with pytest.raises(UnknownProxyError) as err:
    proxies.get("gradnorm")
  message = str(err.value)
  assert "'gradnorm'" in message
  for name in ALL_PROXIES:
    assert name in message


def test_analytic_proxies_return_the_counters():
  costs = {"params": 1234, "flops": 5678}
  assert proxies.get("params").fn(costs) == 1234.0
  assert proxies.get("flops").fn(costs) == 5678.0


def test_analytic_proxies_are_their_own_kind():
  assert proxies.analytic_names() == ["flops", "maedet", "params"]
  assert set(proxies.network_names()) == set(proxies.names()) - {"flops", "maedet", "params"}
  assert proxies.names() == sorted(proxies.analytic_names() + proxies.network_names())
  assert {n: proxies.get(n).costs for n in proxies.analytic_names()} == {
      "flops": ("flops",), "maedet": ("arch",), "params": ("params",)}
  assert proxies.get("maedet").convention == "maedet" and proxies.get("params").convention is None
  assert all(proxies.get(n).kind == proxies.NETWORK and not proxies.get(n).costs
             for n in proxies.network_names())


def test_registration_of_each_kind(monkeypatch):
  from rznas_jax.proxies import base  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(base, "_REGISTRY", dict(base._REGISTRY))  # pylint: disable=protected-access
  depth = base.register_analytic("depth", costs=("layers",), source="here")(lambda c: float(c["layers"]))
  assert proxies.get("depth").kind == proxies.ANALYTIC and proxies.get("depth").fn is depth
  assert proxies.get("depth").fn({"layers": 7}) == 7.0 and "depth" in proxies.names()
  with pytest.raises(ValueError, match="must name the cost entries it reads"):
    base.register_analytic("constant", costs=())
  with pytest.raises(ValueError, match="'depth' is registered twice"):
    base.register_analytic("depth", costs=("layers",))(lambda c: 0.0)
  with pytest.raises(ValueError, match="reads no costs"):
    base.register("net", costs=("params",))
  with pytest.raises(ValueError, match="data must be 'real', 'gaussian' or 'none', got 'fake'"):
    base.register("net", data="fake")


NB201_COSTS = ("params", "flops")
MACRO_COSTS = ("params", "flops", "layers", "arch", "resolution", "convention")


@pytest.mark.parametrize("names, costs, space, kw, message", [
    (["synflow", "maedet"], NB201_COSTS, "nb201", {},
     "proxy 'maedet' reads the cost 'arch', which the nb201 space does not provide (it counts "
     "params, flops); in nb201 use a network proxy or the analytic proxies flops, params."),
    (["maedet"], MACRO_COSTS, "zen_cifar", {"convention": "zen"},
     "proxy 'maedet' is defined only for spaces that count blocks in the maedet convention "
     "(maedet_coco), and the zen_cifar space uses the zen convention; in zen_cifar use a network "
     "proxy or the analytic proxies flops, params."),
    (["params"], (), "bare", {},
     "proxy 'params' reads the cost 'params', which the bare space does not provide (it counts "
     "nothing); in bare use a network proxy (no analytic proxy applies)."),
    (["zen", "az_expressivity"], MACRO_COSTS, "zen_cifar", {"convention": "zen", "reports_blocks": False},
     "proxy 'az_expressivity' reads every block's output, which the zen_cifar networks do not "
     "report yet; in zen_cifar use one of epe_nas, fisher, fisher_unweighted, grad_norm, "
     "grad_norm_zen, grasp, jacov, l2_norm, naswot, plain, snip, synflow, synflow_zen, te_nas, zen, "
     "zico (or an aggregate of them)."),
])
def test_check_for_space_refuses_with_one_sentence(names, costs, space, kw, message):
  with pytest.raises(proxies.ProxySpaceError) as err:
    proxies.check_for_space(names, costs, space, **kw)
  assert str(err.value) == message and isinstance(err.value, ValueError)


def test_check_for_space_passes_what_the_space_serves():
  proxies.check_for_space(proxies.network_names() + ["params", "flops"], NB201_COSTS, "nb201")
  proxies.check_for_space(["maedet", "params", "zen"], MACRO_COSTS, "maedet_coco", convention="maedet",
                          reports_blocks=False)
  proxies.check_for_space([], (), "anything")
  with pytest.raises(UnknownProxyError, match="unknown proxy 'gradnorm'"):
    proxies.check_for_space(["gradnorm"], NB201_COSTS, "nb201")


@pytest.mark.parametrize("name", NETWORK_PROXIES)
def test_matches_numpy_reference_float64(name, weights):
  p, x, labels = weights
  with jax.enable_x64(True):
    variables, batch = to_jax(p, x, labels, jnp.float64)
    got = score(name, variables, batch)
    eps = zen_noise(x, jnp.float64)
  rtol = 1e-6 if name == "grasp" else 1e-9  # grasp's reference is a finite difference
  np.testing.assert_allclose(got, REFERENCES[name](p, x, labels, eps), rtol=rtol)


FLOAT32_PROXIES = [n for n in NETWORK_PROXIES if proxies.get(n).dtype == "float32"]


@pytest.mark.parametrize("name", FLOAT32_PROXIES)
def test_float32_jit_with_unused_layers(name, weights):
  """jit in float32, same key => same score, and an unused op's layers change nothing."""
  p, x, labels = weights
  variables, batch = to_jax(p, x, labels, jnp.float32, unused_layers=True)
  first = score(name, variables, batch)
  assert first == score(name, variables, batch)
  expected = REFERENCES[name](jax.tree.map(as_float32, p), as_float32(x), labels,
                              zen_noise(x, jnp.float32))
  np.testing.assert_allclose(first, expected, rtol=2e-3)


@pytest.mark.parametrize("name", ["synflow", "synflow_zen"])
def test_synflow_with_unused_layers(name, weights):
  p, x, labels = weights
  with jax.enable_x64(True):
    variables, batch = to_jax(p, x, labels, jnp.float64, unused_layers=True)
    got = score(name, variables, batch)
  np.testing.assert_allclose(got, REFERENCES[name](p, x, labels, None), rtol=1e-9)


def test_synflow_zen_is_negative_and_synflow_positive(weights):
  p, x, labels = weights
  with jax.enable_x64(True):
    variables, batch = to_jax(p, x, labels, jnp.float64)
    assert score("synflow", variables, batch) > 0 > score("synflow_zen", variables, batch)


def test_zen_uses_the_key(weights):
  variables, batch = to_jax(*weights, jnp.float32, unused_layers=True)
  assert score("zen", variables, batch, jax.random.key(1)) != score("zen", variables, batch)


def test_zen_chains_running_statistics(weights):
  """Reading the running variance of the second pass alone (0.9 + 0.1 v2) gives another value."""
  p, x, labels = weights
  with jax.enable_x64(True):
    variables, batch = to_jax(p, x, labels, jnp.float64)
    got = score("zen", variables, batch)
    eps = zen_noise(x, jnp.float64)
  _, clean = np_forward(p, x)
  _, mixed = np_forward(p, x + GAMMA * eps)
  delta = np.abs(clean["features"] - mixed["features"]).sum(axis=(1, 2, 3)).mean()
  unchained = np.log(delta) + sum(np.log(np.sqrt((0.9 + 0.1 * mixed[f"bvar{i}"]).mean()))
                                  for i in (1, 2))
  assert abs(got - unchained) > 1e-6


def zico_accumulated(apply, variables, batch, key):
  return zico_score(apply, variables, batch, key, accumulate_grads=True)


def test_zico_accumulated_variant_matches_released_code(weights):
  p, x, labels = weights
  with jax.enable_x64(True):
    variables, batch = to_jax(p, x, labels, jnp.float64)
    got = score("zico", variables, batch, fn=zico_accumulated)
  np.testing.assert_allclose(got, ref_zico(p, x, labels, None, accumulate=True), rtol=1e-9)
  assert abs(got - ref_zico(p, x, labels, None)) > 1e-6


@pytest.mark.parametrize("n_classes", [10, 120])
def test_epe_score_matches_the_reference_per_class_rule(n_classes):
  """Both of EPE-NAS's branches (<= 100 classes: sum |s_c|; more: pairwise differences of
  per-sample s_c), with one-sample classes, in float64 against the restated NASLib code."""
  rng = np.random.default_rng(3)
  jac = rng.normal(size=(24, 50))
  jac[1] = 0.6 * jac[0] + 0.4 * jac[1]  # one strongly correlated pair
  labels = np.concatenate([[0, 0, 0, 5, 5, 7], rng.integers(0, n_classes, size=18)])
  with jax.enable_x64(True):
    got = float(epe_score(jnp.asarray(jac), jnp.asarray(labels), n_classes))
  np.testing.assert_allclose(got, epe_reference_score(jac, labels, n_classes), rtol=1e-10)


def test_zico_rejects_an_odd_batch(weights):
  variables, batch = to_jax(*weights, jnp.float32)
  odd = Batch(batch.images[:5], batch.labels[:5])
  with pytest.raises(ValueError, match="even, got 5"):
    proxies.get("zico").fn(apply_fn, variables, odd, KEY)


def apply_with_dead_relu(variables, images, *, bn=True):
  out = apply_fn(variables, images, bn=bn)
  noise = jax.random.normal(jax.random.key(7), (images.shape[0], 5, 5, 2), images.dtype)
  return out._replace(relu_inputs=out.relu_inputs + ((noise, jnp.zeros((), images.dtype)),))


def test_naswot_ignores_relus_with_weight_zero(weights):
  variables, batch = to_jax(*weights, jnp.float32, unused_layers=True)
  assert score("naswot", variables, batch, apply=apply_with_dead_relu) == score(
      "naswot", variables, batch)
