r"""NAS-Bench-201 proxy scoring against PyTorch, side by side in one run on one machine.

For grad_norm, snip, synflow, naswot, zico and AZ-NAS (its three network components,
az_expressivity, az_progressivity and az_trainability, computed and timed together), on the full
NAS-Bench-201 network (C=16, N=5, CIFAR-10 32x32) and a batch of real CIFAR-10 images:

1. **Check.** A PyTorch NAS-Bench-201 network written here (xautodl's ``TinyNetwork`` and our
   ``spaces/nb201_net.py``, module for module) and PyTorch proxies written here from the
   zero-cost-nas / ZiCo / AZ-NAS definitions and our proxies' docstrings get *our* initial
   variables (the scorer's, HWIO -> OIHW, (in, out) -> (out, in)) and *our* batch, and must give
   our scores on ``--check_cells`` cells: in float64 on both sides (``jax.enable_x64``, torch
   ``.double()``), max relative difference <= ``FLOAT64_TOLERANCE``, and the timed path itself
   (``NB201Scorer``, float32 except synflow) within float32's error of the float64 PyTorch
   scores (``FLOAT32_TOLERANCE``: 1e-3, and 5e-2 for zico, which PyTorch's own float32 misses
   by 1e-2). AZ-NAS's trainability draws Rademacher cotangents from a key; PyTorch is given the
   very tensors JAX draws (from the scorer's proxy key, as ``scoring.call_group`` derives it;
   under ``jax_enable_x64`` JAX draws other ones, so the float32 check gets those of a float32
   run). A disagreement prints the proxies and exits 1 before anything is timed.
2. **Timing.** ``--num_archs`` random cells, each proxy, ``--rounds`` interleaved rounds of
   PyTorch with a module built per cell (construct + init + score, as zero-cost-nas and NASLib run
   it), PyTorch with every module built (and initialised) before the clock starts, and our
   ``NB201Scorer`` (strategy ``switch`` on a CPU, ``masked_vmap`` on a GPU; its first call, the
   compile, is timed on its own), and, on a CPU, the same scorer on ``--workers`` worker
   processes of one core each (`rznas_jax.worker_pool`; by default one per core), each after a
   first pass that the ratios leave out (XLA:CPU sets up each switch branch's kernels on its
   first run). Best and median archs/s per side, the ratios ours / PyTorch, the 1-minute load
   average around each measurement, ``torch.get_num_threads()`` and the versions go to the table
   and to ``--out``, with how far the workers' scores are from the one-process ones.

On a machine that other jobs load, PyTorch's default threads (one per core) wait for each other
at every op: on a 2-core machine with load 4-5 it ran 10x slower than with ``--torch_threads=1``.
Compare on an idle machine, or give ``--torch_threads=1`` there and say so.

The PyTorch network is built per proxy as the reference code builds it: without BN for synflow
(zero-cost-nas ``bn=False``; as our ``apply_fn(bn=False)``, *every* BN is dropped, see
``load_variables``), in float64 for synflow, with the init the registry names (PyTorch default,
Zen-NAS's N(0, 1) for naswot, AZ-NAS's kaiming-normal fan_in for AZ-NAS).

PyTorch is an optional dependency of this benchmark alone (the library never imports it):
without it the script says so and exits 2.

    # Check + timing, every proxy, 32 cells: ~35 min on a loaded 2-core CPU (check: ~12 min).
    python benchmarks/nb201_vs_pytorch.py --torch_threads=1
    # Smoke run, ~2 min: two proxies, 4 cells, one round, a 1-cell check.
    python benchmarks/nb201_vs_pytorch.py --proxies=synflow,naswot --num_archs=4 --rounds=1 \
        --check_cells=1 --torch_threads=1 --out=/tmp/nb201_vs_pytorch_smoke.json
    python benchmarks/nb201_vs_pytorch.py --check_only     # the agreement check alone
    python benchmarks/nb201_vs_pytorch.py --device=cuda    # both on the GPU (JAX: masked_vmap)
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import platform
import statistics
import time
from typing import Any, Callable, Sequence

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

try:
  import torch
except ImportError:  # optional: main() says how to install it and exits 2
  torch = None

from rznas_jax import data as data_lib
from rznas_jax import proxies as proxy_lib
from rznas_jax import results
from rznas_jax import scorer as scorer_lib
from rznas_jax import scoring
from rznas_jax import worker_pool
from rznas_jax.proxies import network
from rznas_jax.proxies.az_nas import az_nas_components
from rznas_jax.proxies.base import Batch
from rznas_jax.spaces import nb201
from rznas_jax.spaces import nb201_net

_HERE = os.path.dirname(os.path.abspath(__file__))
_REPO = os.path.dirname(_HERE)
_DATA = os.path.join(os.path.dirname(_REPO), "shared", "data", "images",
                     "YoongiKim_CIFAR-10-images_test.DERIVED.npz")

AZ_NAS = ("az_expressivity", "az_progressivity", "az_trainability")
# What the benchmark times under each name: the registry proxies one PyTorch call computes.
MEASURED = {"grad_norm": ("grad_norm",), "snip": ("snip",), "synflow": ("synflow",),
            "naswot": ("naswot",), "zico": ("zico",), "az_nas": AZ_NAS}
FLOAT64_TOLERANCE = 1e-8  # max relative difference, our float64 scores vs PyTorch's
# The same for the timed path in float32, against PyTorch in float64: float32's own error. ZiCo
# divides by the std of two gradients and float32 resolves it poorly: on the full network
# PyTorch's own float32 zico is up to 1.3e-2 off its float64 score (ours: 1.4e-2).
FLOAT32_TOLERANCE = {"zico": 5e-2}
FLOAT32_DEFAULT_TOLERANCE = 1e-3

flags.DEFINE_list("proxies", list(MEASURED), "Proxies to check and time; az_nas means "
                  "az_expressivity, az_progressivity and az_trainability together.")
flags.DEFINE_integer("num_archs", 32, "Random cells to time.", lower_bound=1)
flags.DEFINE_integer("batch_size", 64, "Images per proxy batch (even: zico halves it).",
                     lower_bound=2)
flags.DEFINE_integer("rounds", 2, "Interleaved timing rounds (PyTorch, JAX, PyTorch, JAX, ...).",
                     lower_bound=1)
flags.DEFINE_integer("seed", 0, "Seeds the cells, our init, the batch and PyTorch's init.")
flags.DEFINE_integer("check_cells", 3, "Cells (the first timed ones) compared with PyTorch.",
                     lower_bound=1)
flags.DEFINE_enum("device", "cpu", ["cpu", "cuda"], "Where both PyTorch and JAX run.")
flags.DEFINE_enum("strategy", "auto", list(scoring.STRATEGIES),
                  "NB201Scorer strategy; auto: switch on a CPU, masked_vmap on a GPU.")
flags.DEFINE_bool("check_only", False, "Check the scores against PyTorch; time nothing.")
flags.DEFINE_bool("skip_check", False, "Time without checking the scores first.")
flags.DEFINE_string("data", _DATA, "Real CIFAR-10 images (.npz or python-pickle directory).")
flags.DEFINE_integer("channels", 16, "C of the network (16 in NAS-Bench-201; less for a quick "
                     "try).", lower_bound=1)
flags.DEFINE_integer("cells_per_stage", 5, "N of the network (5 in NAS-Bench-201).", lower_bound=1)
flags.DEFINE_integer("torch_threads", 0, "torch.set_num_threads; 0 keeps PyTorch's default (one "
                     "per core). On a loaded machine PyTorch's OpenMP threads wait for each other "
                     "at every op (a 2-core machine with load 6: 10-50x slower than 1 thread).",
                     lower_bound=0)
flags.DEFINE_bool("malloc_tuning", True, "rznas_jax.malloc.keep_freed_memory() first, as the "
                  "launchers do (process-wide, so PyTorch gets it too).")
flags.DEFINE_integer("workers", -1, "Also time our scorer on this many worker processes, each "
                     "pinned to its share of the cores (rznas_jax.worker_pool); -1: one per core "
                     "on a CPU, none on a GPU; 0: none.", lower_bound=-1)
flags.DEFINE_string("out", os.path.join(_HERE, "results", "nb201_vs_pytorch.json"), "Output JSON.")
FLAGS = flags.FLAGS


# --- the PyTorch NAS-Bench-201 network -----------------------------------------------------------

_Module = torch.nn.Module if torch is not None else object  # never instantiated without torch


def _tagged(module, *path: str):
  """``module`` marked with the path of its variables in our Flax tree (see `load_variables`)."""
  module.flax_path = path
  return module


def _batch_norm(channels: int, use_bn: bool, *path: str):
  """``BatchNorm2d`` (affine, PyTorch defaults), or an identity when the network has no BN."""
  return _tagged(torch.nn.BatchNorm2d(channels), *path) if use_bn else torch.nn.Identity()


class TorchZero(_Module):
  """xautodl's ``Zero`` (stride 1): ``x * 0``, which keeps the cell connected for autograd."""

  def forward(self, x):
    return x.mul(0.0)


class TorchReLUConvBN(_Module):
  """xautodl's ``ReLUConvBN``: ReLU -> Conv(k, stride, padding (k-1)//2, no bias) -> BN."""

  def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, use_bn: bool, path):
    super().__init__()
    self.relu = torch.nn.ReLU()
    self.conv = _tagged(torch.nn.Conv2d(c_in, c_out, kernel, stride, (kernel - 1) // 2, bias=False),
                        *path, "op", "conv")
    self.bn = _batch_norm(c_out, use_bn, *path, "bn")

  def forward(self, x):
    return self.bn(self.conv(self.relu(x)))


class TorchCell(_Module):
  """xautodl's ``InferCell`` of one NAS-Bench-201 cell: node j sums its edges' ops."""

  def __init__(self, arch: nb201.Arch, channels: int, use_bn: bool, name: str):
    super().__init__()
    ops = []
    for e, op in enumerate(arch.ops):
      if op in nb201_net.CONV_OPS:
        ops.append(TorchReLUConvBN(channels, channels, nb201_net.CONV_OPS[op], 1, use_bn,
                                   (name, f"edge{e}_{op}")))
      elif op == "avg_pool_3x3":
        ops.append(torch.nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False))
      elif op == "skip_connect":
        ops.append(torch.nn.Identity())
      else:
        ops.append(TorchZero())
    self.ops = torch.nn.ModuleList(ops)

  def forward(self, x):
    nodes = [x]
    for node in range(1, 4):
      nodes.append(sum(self.ops[e](nodes[src]) for e, (to, src) in enumerate(nb201.EDGES)
                       if to == node))
    return nodes[3]


class TorchResNetBlock(_Module):
  """xautodl's ``ResNetBasicblock``, stride 2: two ReLUConvBN + (2x2 avg pool, 1x1 conv)."""

  def __init__(self, c_in: int, c_out: int, use_bn: bool, name: str):
    super().__init__()
    self.conv_a = TorchReLUConvBN(c_in, c_out, 3, 2, use_bn, (name, "conv_a"))
    self.conv_b = TorchReLUConvBN(c_out, c_out, 3, 1, use_bn, (name, "conv_b"))
    self.downsample = torch.nn.Sequential(
        torch.nn.AvgPool2d(kernel_size=2, stride=2, padding=0),
        _tagged(torch.nn.Conv2d(c_in, c_out, 1, bias=False), name, "shortcut", "conv"))

  def forward(self, x):
    return self.conv_b(self.conv_a(x)) + self.downsample(x)


class TorchNB201(_Module):
  """xautodl's ``TinyNetwork`` for one cell, NCHW; ``use_bn=False`` drops every BN (synflow).

  Every conv, BN and linear layer carries ``flax_path``, the path of its variables in
  ``nb201_net.NB201Network``'s tree, so `load_variables` can copy ours in.
  """

  def __init__(self, arch: nb201.Arch, channels: int = 16, cells_per_stage: int = 5,
               num_classes: int = 10, use_bn: bool = True):
    super().__init__()
    self.stem = torch.nn.Sequential(
        _tagged(torch.nn.Conv2d(3, channels, 3, padding=1, bias=False), "stem", "conv"),
        _batch_norm(channels, use_bn, "stem_bn"))
    cells, c = [], channels
    for stage in range(3):
      if stage:
        cells.append(TorchResNetBlock(c, 2 * c, use_bn, f"reduce{stage}"))
        c *= 2
      cells.extend(TorchCell(arch, c, use_bn, f"stage{stage}_cell{i}")
                   for i in range(cells_per_stage))
    self.cells = torch.nn.ModuleList(cells)
    self.lastact = torch.nn.Sequential(_batch_norm(c, use_bn, "last_bn"), torch.nn.ReLU())
    self.global_pooling = torch.nn.AdaptiveAvgPool2d(1)
    self.classifier = _tagged(torch.nn.Linear(c, num_classes), "classifier")

  def block_outputs(self, images) -> list:
    """The stem's output, then every cell's and reduction block's (AZ-NAS's feature list)."""
    x = self.stem(images)
    out = [x]
    for cell in self.cells:
      x = cell(x)
      out.append(x)
    return out

  def forward(self, images):
    x = self.lastact(self.block_outputs(images)[-1])
    return self.classifier(self.global_pooling(x).flatten(1))


def _weighted_layers(net) -> list:
  """Every Conv2d and Linear: the layers zero-cost-nas's ``get_layer_metric_array`` visits."""
  return [m for m in net.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]


def load_variables(net, variables: dict) -> None:
  """Copies our Flax variables (params and running statistics) into ``net``.

  Conv kernels go HWIO -> OIHW, the classifier (in, out) -> (out, in). With ``use_bn=False`` the
  BN variables are not copied: our ``apply_fn(bn=False)`` skips every BN as well, including the
  reduction blocks' (zero-cost-nas's NAS201Model keeps those two blocks' BNs in its bn=False copy).

  Raises:
    ValueError: if a parameter of ``net`` has no counterpart in ``variables``.
  """
  params, stats = variables["params"], variables.get("batch_stats", {})

  def node(tree, path):
    for key in path:
      tree = tree[key]
    return tree

  def tensor(value, axes=None):
    value = np.asarray(value)
    return torch.from_numpy(np.array(value if axes is None else value.transpose(axes), order="C"))

  loaded = set()
  with torch.no_grad():
    for module in net.modules():
      path = getattr(module, "flax_path", None)
      if path is None:
        continue
      p = node(params, path)
      if isinstance(module, torch.nn.Conv2d):
        module.weight.copy_(tensor(p["kernel"], (3, 2, 0, 1)))
      elif isinstance(module, torch.nn.Linear):
        module.weight.copy_(tensor(p["kernel"], (1, 0)))
        module.bias.copy_(tensor(p["bias"]))
      else:
        module.weight.copy_(tensor(p["scale"]))
        module.bias.copy_(tensor(p["bias"]))
        s = node(stats, path)
        module.running_mean.copy_(tensor(s["mean"]))
        module.running_var.copy_(tensor(s["var"]))
      loaded.update(id(t) for t in module.parameters(recurse=False))
  missing = [name for name, t in net.named_parameters() if id(t) not in loaded]
  if missing:
    raise ValueError(f"no Flax variables were copied into {', '.join(missing)}.")


def initialise(net, init: str) -> None:
  """The init a registered proxy asks for (`proxies.base.INITS`), the reference code's way.

  ``pytorch``: the default init of construction; ``gaussian``: Zen-NAS's
  ``network_weight_gaussian_init`` (weights N(0, 1)); ``kaiming``: AZ-NAS's
  ``kaiming_normal_fanin_init``. Both replace biases by 0 and BN weights/biases by 1/0.
  """
  if init == "pytorch":
    return
  with torch.no_grad():
    for m in net.modules():
      if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
        if init == "gaussian":
          torch.nn.init.normal_(m.weight)
        else:
          torch.nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
        if m.bias is not None:
          torch.nn.init.zeros_(m.bias)
      elif isinstance(m, torch.nn.BatchNorm2d):
        torch.nn.init.ones_(m.weight)
        torch.nn.init.zeros_(m.bias)


# --- the PyTorch proxies -------------------------------------------------------------------------
# Each is fn(net, images, labels, cotangents=None) -> {registry name: score}, NCHW tensors, the
# network in train mode (BN normalises with the batch statistics), as zero-cost-nas runs them.


def _loss_backward(net, images, labels) -> None:
  net.zero_grad()
  torch.nn.functional.cross_entropy(net(images), labels).backward()


def _summed(values) -> float:
  """The sum of scalar tensors as one float (one device-to-host copy); 0 for none."""
  with torch.no_grad():
    values = list(values)
    return float(torch.stack(values).sum()) if values else 0.0


def torch_grad_norm(net, images, labels, cotangents=None) -> dict:
  """zero-cost-nas ``grad_norm``: ``sum_l ||dL/dW_l||``, conv and linear weights, mean CE."""
  del cotangents
  _loss_backward(net, images, labels)
  return {"grad_norm": _summed(m.weight.grad.norm() for m in _weighted_layers(net)
                               if m.weight.grad is not None)}


def torch_snip(net, images, labels, cotangents=None) -> dict:
  """zero-cost-nas ``snip``: ``sum |dL/dmask|`` at mask = 1, which is ``sum |W * dL/dW|``."""
  del cotangents
  _loss_backward(net, images, labels)
  return {"snip": _summed((m.weight * m.weight.grad).abs().sum() for m in _weighted_layers(net)
                          if m.weight.grad is not None)}


def torch_synflow(net, images, labels, cotangents=None) -> dict:
  """zero-cost-nas ``synflow``: |every state tensor|, float64, one input of ones, R = sum(logits).

  ``sum |W * dR/dW|`` over conv and linear weights; the signs are restored afterwards. The network
  is built without BN (``use_bn=False``), as the ``bn=False`` copy zero-cost-nas makes.
  """
  del labels, cotangents
  net.double()
  with torch.no_grad():
    state = [t for t in net.state_dict().values() if t.is_floating_point()]
    signs = [torch.sign(t) for t in state]
    for t in state:
      t.abs_()
  net.zero_grad()
  ones = torch.ones((1, *images.shape[1:]), dtype=torch.float64, device=images.device)
  net(ones).sum().backward()
  score = _summed((m.weight * m.weight.grad).abs().sum() for m in _weighted_layers(net)
                  if m.weight.grad is not None)
  with torch.no_grad():
    for t, s in zip(state, signs):
      t.mul_(s)
  return {"synflow": score}


def torch_naswot(net, images, labels, cotangents=None) -> dict:
  """NASWOT as Zen-NAS computes it: ``log|det K|``, K summed over every ReLU's input codes.

  ``K += c c^T + (1-c)(1-c)^T`` for the binary code ``c = x > 0`` of each ``nn.ReLU``'s input
  (forward hooks); the codes in the images' dtype (exact integers), ``slogdet`` in float64.
  """
  del labels, cotangents
  n = images.shape[0]
  kernel = torch.zeros((n, n), dtype=torch.float64, device=images.device)

  def hook(module, inputs, output):
    del module, output
    codes = (inputs[0].reshape(n, -1) > 0).to(images.dtype)
    kernel.add_(codes @ codes.T + (1 - codes) @ (1 - codes).T)

  handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, torch.nn.ReLU)]
  try:
    with torch.no_grad():
      net(images)
  finally:
    for h in handles:
      h.remove()
  return {"naswot": float(torch.linalg.slogdet(kernel)[1])}


def torch_zico(net, images, labels, cotangents=None) -> dict:
  """ZiCo's ``getzico`` + ``caculate_zico`` on 2 halves of the batch, per-half gradients.

  Per conv/linear layer: ``log(sum_w mean|g_w| / std(g_w))`` over the elements with std != 0 (std
  with ddof 0, over the two halves' gradients), summed over the layers whose inner sum is not 0.
  ``zero_grad`` runs before each half (our default; the released code accumulates instead).
  """
  del cotangents
  half = images.shape[0] // 2
  layers = _weighted_layers(net)
  per_half = []
  for part in (slice(0, half), slice(half, 2 * half)):
    _loss_backward(net, images[part], labels[part])
    per_half.append([None if m.weight.grad is None else m.weight.grad.detach().flatten().clone()
                     for m in layers])
  terms = []
  for grads in zip(*per_half):
    if any(g is None for g in grads):  # a conv nothing reads: all-zero gradients, skipped
      continue
    g = torch.stack(grads)
    std = g.std(dim=0, correction=0)
    nonzero = std != 0
    total = (g.abs().mean(dim=0)[nonzero] / std[nonzero]).sum()
    terms.append(torch.where(total != 0, torch.log(total), torch.zeros_like(total)))
  return {"zico": _summed(terms)}


def _channel_entropy(feature):
  """AZ-NAS's expressivity of one feature map: entropy of its channel covariance's spectrum."""
  c = feature.shape[1]
  x = feature.permute(0, 2, 3, 1).reshape(-1, c)
  x = x - x.mean(dim=0, keepdim=True)
  sigma = x.T @ x / x.shape[0]
  p = torch.linalg.eigvalsh(sigma)
  p = p / p.sum()
  return -(p * torch.log(p + 1e-8)).sum()


def torch_az_nas(net, images, labels, cotangents=None) -> dict:
  """AZ-NAS ``compute_az_nas_score``: expressivity, progressivity, trainability.

  Entropies of the block outputs (``TorchNB201.block_outputs``); for each block, from the last,
  ``g_in = autograd.grad(f_out, f_in, g_out)`` with a Rademacher ``g_out`` (or
  ``cotangents[l-1]``, NCHW, when given), -inf for an identity block, pixel-unshuffle where the
  block halves the resolution, ``s`` the largest singular value of ``g_in^T g_out / (B*H*W)``,
  score ``-s - 1/(s + 1e-6) + 2``; trainability is their mean. NaN becomes -inf.
  """
  del labels
  features = net.block_outputs(images)
  entropies = torch.stack([_channel_entropy(f.detach()) for f in features])
  scores = []
  for i in reversed(range(1, len(features))):
    f_out, f_in = features[i], features[i - 1]
    if cotangents is None:
      g_out = (torch.bernoulli(torch.full_like(f_out, 0.5)) - 0.5) * 2
    else:
      g_out = cotangents[i - 1]
    g_in = torch.autograd.grad(f_out, f_in, g_out, retain_graph=False)[0]
    if g_in.shape == g_out.shape and torch.equal(g_in, g_out):
      scores.append(torch.full((), -math.inf, dtype=g_out.dtype, device=g_out.device))
      continue
    if g_in.shape[2:] != g_out.shape[2:]:
      g_in = torch.nn.functional.pixel_unshuffle(g_in, g_in.shape[2] // g_out.shape[2])
    rows = g_out.shape[0] * g_out.shape[2] * g_out.shape[3]
    g_out = g_out.permute(0, 2, 3, 1).reshape(rows, -1)
    g_in = g_in.permute(0, 2, 3, 1).reshape(rows, -1)
    s = torch.linalg.svdvals(g_in.T @ g_out / rows).max()
    scores.append(-s - 1.0 / (s + 1e-6) + 2.0)
  values = torch.stack([entropies.sum(), (entropies[1:] - entropies[:-1]).min(),
                        torch.stack(scores).mean()]).tolist()
  return {name: -math.inf if math.isnan(v) else v for name, v in zip(AZ_NAS, values)}


@dataclasses.dataclass(frozen=True)
class TorchProxy:
  """A PyTorch proxy and the network it runs on."""

  fn: Callable[..., dict]
  use_bn: bool = True


TORCH_PROXIES = {
    "grad_norm": TorchProxy(torch_grad_norm),
    "snip": TorchProxy(torch_snip),
    "synflow": TorchProxy(torch_synflow, use_bn=False),
    "naswot": TorchProxy(torch_naswot),
    "zico": TorchProxy(torch_zico),
    "az_nas": TorchProxy(torch_az_nas),
}


def build_torch_network(measured: str, arch: nb201.Arch, setting: scoring.NB201Setting,
                        device: str, variables: dict | None = None, dtype=None):
  """The PyTorch network ``measured`` runs on: built, initialised, moved to ``device``.

  ``variables`` (ours) replace the init; ``dtype`` defaults to the proxy's registered dtype.
  """
  spec = proxy_lib.get(MEASURED[measured][0])
  net = TorchNB201(arch, setting.channels, setting.cells_per_stage, setting.num_classes,
                   use_bn=TORCH_PROXIES[measured].use_bn)
  if variables is None:
    initialise(net, spec.init)
  else:
    load_variables(net, variables)
  if dtype is None:
    dtype = torch.float64 if spec.dtype == "float64" else torch.float32
  return net.to(device=device, dtype=dtype)


def torch_batch(batch: Batch, dtype, device) -> tuple:
  """Our NHWC batch as NCHW PyTorch tensors."""
  images = torch.from_numpy(np.array(np.asarray(batch.images).transpose(0, 3, 1, 2), order="C"))
  labels = torch.from_numpy(np.array(batch.labels, np.int64))
  return images.to(device=device, dtype=dtype), labels.to(device)


# --- the check -----------------------------------------------------------------------------------


def proxy_inputs(setting: scoring.NB201Setting, images: data_lib.ImageSet | None, batch_size: int,
                 seed: int) -> scorer_lib.ProxyInputs:
  """The batches and keys of ``NB201Scorer(setting, images=, batch_size=, seed=)``, made alike."""
  return scorer_lib.ProxyInputs(batch_size=batch_size, resolution=setting.resolution,
                                num_classes=setting.num_classes, seed=seed, images=images,
                                normalization=setting.dataset, network=setting.dataset,
                                size_remedy="another dataset")


def _apply_maker(setting: scoring.NB201Setting, strategy: str):
  """``cell -> apply_fn`` of the network form ``strategy`` scores with (one cell per call)."""
  if strategy == "switch":
    from rznas_jax.spaces import nb201_switch  # pylint: disable=g-import-not-at-top
    return lambda cell: nb201_switch.make_apply_fn(setting, cell)
  model = setting.model(None)
  return lambda cell: nb201_net.make_apply_fn(model, cell)


def _cell_array(arch: nb201.Arch, strategy: str) -> np.ndarray:
  return np.asarray(arch.op_indices, np.int32) if strategy == "switch" else arch.one_hot()


def jax_float64_scores(names: Sequence[str], setting: scoring.NB201Setting, strategy: str,
                       variables: dict, batch: Batch, key: jax.Array, archs: Sequence[nb201.Arch],
                       device: jax.Device, compiler_options: dict | None = None
                       ) -> dict[str, np.ndarray]:
  """Our float64 scores of ``archs`` for the registry proxies ``names``, as the scorer runs them.

  ``scoring.call_group`` on the network form of ``strategy`` (``switch``, else the masked
  network), all ``names`` in one jitted function, one call per cell, no dead-edge pruning;
  ``variables`` and ``batch`` serve every name, and ``key`` is the scorer's proxy key.
  """
  specs = tuple(proxy_lib.get(n) for n in names)
  make_apply = _apply_maker(setting, strategy)

  def one(variables, images, labels, key, cell):
    return scoring.call_group(specs, make_apply(cell), variables, Batch(images, labels), key)

  with jax.enable_x64(True):
    variables, images, key = jax.device_put(
        (network.cast(variables, jnp.float64), jnp.asarray(batch.images, jnp.float64), key), device)
    labels = jax.device_put(batch.labels, device)
    fn = jax.jit(one, compiler_options=compiler_options)
    rows = [jax.device_get(fn(variables, images, labels, key,
                              jax.device_put(_cell_array(a, strategy), device))) for a in archs]
  return {spec.name: np.array([float(row[i]) for row in rows]) for i, spec in enumerate(specs)}


def block_shapes(setting: scoring.NB201Setting, batch_size: int) -> list[tuple[int, ...]]:
  """NHWC shapes of the NB201 block outputs AZ-NAS reads: the stem, then every cell and block."""
  r, c = setting.resolution, setting.channels
  shapes = [(batch_size, r, r, c)]
  for stage in range(3):
    if stage:
      r, c = r // 2, 2 * c
      shapes.append((batch_size, r, r, c))
    shapes += [(batch_size, r, r, c)] * setting.cells_per_stage
  return shapes


def az_cotangents(setting: scoring.NB201Setting, batch_size: int, proxy_key: jax.Array,
                  x64: bool) -> list[np.ndarray]:
  """The Rademacher cotangents ``az_nas_components`` draws in ``NB201Scorer`` (NHWC).

  Its key is ``call_group``'s for a joint function; under ``jax_enable_x64`` (``x64``) JAX's
  ``bernoulli`` draws float64 uniforms, so the signs differ from those of a float32 run.
  """
  key = scorer_lib.proxy_key(proxy_key, az_nas_components.__name__)
  shapes = block_shapes(setting, batch_size)[1:]
  with jax.enable_x64(x64):
    dtype = jnp.float64 if x64 else jnp.float32
    keys = jax.random.split(key, len(shapes))
    return [np.asarray(jax.random.rademacher(k, s, dtype)) for k, s in zip(keys, shapes)]


def torch_scores(measured: str, setting: scoring.NB201Setting, variables: dict, batch: Batch,
                 archs: Sequence[nb201.Arch], device: str,
                 cotangents: Sequence[np.ndarray] | None = None) -> dict[str, np.ndarray]:
  """PyTorch's float64 scores of ``archs`` on our ``variables`` and ``batch``."""
  images, labels = torch_batch(batch, torch.float64, device)
  if cotangents is not None:
    cotangents = [torch.from_numpy(np.array(g.transpose(0, 3, 1, 2), order="C")).to(
        device=device, dtype=torch.float64) for g in cotangents]
  rows = []
  for arch in archs:
    net = build_torch_network(measured, arch, setting, device, variables, torch.float64)
    rows.append(TORCH_PROXIES[measured].fn(net, images, labels, cotangents=cotangents))
  return {name: np.array([row[name] for row in rows]) for name in MEASURED[measured]}


def max_relative_difference(ours: Sequence[float], theirs: Sequence[float]) -> float:
  """``max |a - b| / max(|a|, |b|)`` over the cells; equal values (two -inf too) count 0."""
  a, b = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
  same = (a == b) | (np.isnan(a) & np.isnan(b))
  with np.errstate(invalid="ignore", divide="ignore"):
    diff = np.abs(a - b) / np.maximum(np.maximum(np.abs(a), np.abs(b)), 1e-300)
  return float(np.max(np.where(same, 0.0, np.nan_to_num(diff, nan=np.inf)), initial=0.0))


def check_proxy(measured: str, scorer: scoring.NB201Scorer, inputs: scorer_lib.ProxyInputs,
                archs: Sequence[nb201.Arch], strategy: str, jax_device: jax.Device,
                torch_device: str) -> dict[str, Any]:
  """Our scores of ``archs`` against PyTorch's on the same variables and batch.

  Two comparisons: float64 on both sides (`jax_float64_scores`), and the timed path
  (``scorer.score``, whose first call compiles) against PyTorch in float64.
  """
  names = MEASURED[measured]
  spec = proxy_lib.get(names[0])
  variables, batch = scorer.variables(spec.init), inputs.batch(spec)
  setting, size = scorer.setting, inputs.batch_size
  az = measured == "az_nas"
  start = time.perf_counter()
  theirs = torch_scores(measured, setting, variables, batch, archs, torch_device,
                        az_cotangents(setting, size, inputs.proxy_key, x64=True) if az else None)
  torch_seconds = time.perf_counter() - start
  start = time.perf_counter()
  ours = jax_float64_scores(names, setting, strategy, variables, batch, inputs.proxy_key, archs,
                            jax_device)
  jax_seconds = time.perf_counter() - start
  timed = scorer.score(archs)
  theirs_for_timed = theirs
  if az:
    theirs_for_timed = torch_scores(measured, setting, variables, batch, archs, torch_device,
                                    az_cotangents(setting, size, inputs.proxy_key, x64=False))
  rows = {}
  for name in names:
    rows[name] = {
        "float64_max_relative_difference": max_relative_difference(ours[name], theirs[name]),
        "scorer_max_relative_difference": max_relative_difference(timed[name],
                                                                  theirs_for_timed[name]),
        "ours_float64": ours[name], "pytorch_float64": theirs[name], "ours_scorer": timed[name],
        "pytorch_for_scorer": theirs_for_timed[name],
    }
    tol = (FLOAT64_TOLERANCE if spec.dtype == "float64"
           else FLOAT32_TOLERANCE.get(name, FLOAT32_DEFAULT_TOLERANCE))
    rows[name]["scorer_tolerance"] = tol
    rows[name]["ok"] = bool(rows[name]["float64_max_relative_difference"] <= FLOAT64_TOLERANCE
                            and rows[name]["scorer_max_relative_difference"] <= tol)
  return {"archs": [a.genotype for a in archs], "components": rows,
          "seconds": {"pytorch_float64": torch_seconds, "ours_float64": jax_seconds}}


# --- timing --------------------------------------------------------------------------------------


def _timed(fn: Callable[[], Any]) -> dict[str, float]:
  load = os.getloadavg()[0]
  start = time.perf_counter()
  fn()
  seconds = time.perf_counter() - start
  return {"seconds": seconds, "load_before": load, "load_after": os.getloadavg()[0]}


def time_proxy(measured: str, scorer: scoring.NB201Scorer, inputs: scorer_lib.ProxyInputs,
               archs: Sequence[nb201.Arch], rounds: int, torch_device: str,
               pool: worker_pool.WorkerPoolScorer | None = None
               ) -> tuple[dict[str, dict], dict[str, list], dict[str, Any]]:
  """A first pass, then ``rounds`` x (PyTorch built per cell, PyTorch prebuilt, ours, and ours on
  the worker ``pool`` when given), ``archs``; also how far the pool's scores are from ours.

  The first pass of the prebuilt modules and of ours is timed apart (``first``): on XLA:CPU the
  first run of each ``lax.switch`` branch sets up its library kernels once per process, and
  PyTorch's oneDNN creates its kernels for each new shape; a search of many cells sees neither.
  """
  spec = proxy_lib.get(MEASURED[measured][0])
  setting, proxy = scorer.setting, TORCH_PROXIES[measured]
  dtype = torch.float64 if spec.dtype == "float64" else torch.float32
  images, labels = torch_batch(inputs.batch(spec), dtype, torch_device)
  prebuilt = [build_torch_network(measured, a, setting, torch_device) for a in archs]

  def built_per_cell():
    for arch in archs:
      proxy.fn(build_torch_network(measured, arch, setting, torch_device), images, labels)

  def already_built():
    for net in prebuilt:
      proxy.fn(net, images, labels)

  sides = "PyTorch prebuilt, ours" + (", ours on the workers" if pool else "")
  print(f"  first pass: {sides}", flush=True)
  first = {"pytorch_prebuilt": _timed(already_built), "ours": _timed(lambda: scorer.score(archs))}
  agreement = {}
  if pool is not None:  # its first pass includes each worker's compile
    first["ours_workers"] = _timed(lambda: pool.score(archs))
    ours, theirs = scorer.score(archs), pool.score(archs)
    agreement = {name: max_relative_difference(theirs[name], ours[name]) for name in ours}
  passes = {"pytorch_built_per_cell": [], "pytorch_prebuilt": [], "ours": []}
  if pool is not None:
    passes["ours_workers"] = []
  for r in range(rounds):
    print(f"  round {r + 1}/{rounds}: PyTorch built per cell, {sides}", flush=True)
    passes["pytorch_built_per_cell"].append(_timed(built_per_cell))
    passes["pytorch_prebuilt"].append(_timed(already_built))
    passes["ours"].append(_timed(lambda: scorer.score(archs)))
    if pool is not None:
      passes["ours_workers"].append(_timed(lambda: pool.score(archs)))
  return first, passes, agreement


def summarise(measured: str, first: dict[str, dict], passes: dict[str, list], num_archs: int,
              compile_seconds: float) -> dict[str, Any]:
  """One proxy's row: archs/s per side (best and median pass), ratios ours / PyTorch, load range."""
  rates = {side: {"first_pass": num_archs / p["seconds"]} for side, p in first.items()}
  for side, timed in passes.items():
    seconds = [p["seconds"] for p in timed]
    rates.setdefault(side, {}).update(best=num_archs / min(seconds),
                                      median=num_archs / statistics.median(seconds))
  ours_sides = [side for side in ("ours", "ours_workers") if side in rates]
  ratios = {f"{ours}_to_{side}": {k: rates[ours][k] / rates[side][k] for k in ("best", "median")}
            for ours in ours_sides for side in ("pytorch_built_per_cell", "pytorch_prebuilt")}
  loads = [x for timed in passes.values() for p in timed
           for x in (p["load_before"], p["load_after"])]
  return {"proxy": measured, "components": list(MEASURED[measured]), "first_pass": first,
          "passes": passes, "archs_per_second": rates, "ratios": ratios,
          "compile_seconds": compile_seconds, "load_average_range": [min(loads), max(loads)]}


def print_check(checks: dict[str, dict]) -> None:
  """The check as a markdown table: max relative differences from PyTorch per proxy."""
  print("\nmax relative difference from PyTorch (float64), and tolerance\n")
  print("| proxy | ours, float64 | ours, timed path | timed path's tolerance | cells |")
  print("|---|---|---|---|---|")
  for check in checks.values():
    for name, row in check["components"].items():
      flag = "" if row["ok"] else " **DISAGREES**"
      print(f"| {name} | {row['float64_max_relative_difference']:.1e} "
            f"| {row['scorer_max_relative_difference']:.1e} | {row['scorer_tolerance']:g} "
            f"| {len(check['archs'])} |{flag}")
  print(f"(float64 tolerance {FLOAT64_TOLERANCE:g}; the timed path is float32 but for synflow)")


def print_table(rows: list[dict], device: str, workers: int = 0) -> None:
  """The timing as a markdown table: best archs/s per side, the ratios, the load range."""
  print(f"\narchs/s on {device} (best of the rounds; medians in the JSON)\n")
  pool = [f"ours, {workers} workers", f"{workers} workers / built"] if workers else []
  header = (["proxy", "PyTorch, built per cell", "PyTorch, prebuilt", "ours", "ours, first pass",
             "ours compile s", "ours / built", "ours / prebuilt"] + pool + ["load 1-min"])
  print("| " + " | ".join(header) + " |")
  print("|" + "---|" * len(header))
  for row in rows:
    r, q = row["archs_per_second"], row["ratios"]
    cells = [row["proxy"], f"{r['pytorch_built_per_cell']['best']:.2f}",
             f"{r['pytorch_prebuilt']['best']:.2f}", f"{r['ours']['best']:.2f}",
             f"{r['ours']['first_pass']:.2f}", f"{row['compile_seconds']:.1f}",
             f"{q['ours_to_pytorch_built_per_cell']['best']:.2f}",
             f"{q['ours_to_pytorch_prebuilt']['best']:.2f}"]
    if workers:
      cells += [f"{r['ours_workers']['best']:.2f}",
                f"{q['ours_workers_to_pytorch_built_per_cell']['best']:.2f}"]
    cells.append(f"{row['load_average_range'][0]:.1f}-{row['load_average_range'][1]:.1f}")
    print("| " + " | ".join(cells) + " |")


# --- main ----------------------------------------------------------------------------------------


def _devices(device: str) -> tuple[jax.Device, str]:
  """The JAX device and the torch device string for ``--device``."""
  try:
    jax_device = jax.devices("cpu" if device == "cpu" else "gpu")[0]
  except RuntimeError:
    raise app.UsageError(f"--device={device}, but JAX sees no such device; its devices are "
                         f"{', '.join(str(d) for d in jax.devices())}.") from None
  if device == "cuda" and not torch.cuda.is_available():
    raise app.UsageError("--device=cuda, but PyTorch sees no CUDA device; use --device=cpu.")
  return jax_device, device


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {argv[1:]}")
  if torch is None:
    print("PyTorch is not installed; pip install torch to run this benchmark.")
    return 2
  bad = [p for p in FLAGS.proxies if p not in MEASURED]
  if bad:
    raise app.UsageError(f"unknown proxy {bad[0]!r} in --proxies; valid: {', '.join(MEASURED)}.")
  if FLAGS.check_only and FLAGS.skip_check:
    raise app.UsageError("--check_only and --skip_check exclude each other; give one.")
  if "zico" in FLAGS.proxies and FLAGS.batch_size % 2:
    raise app.UsageError(f"zico halves the batch; --batch_size must be even, got "
                         f"{FLAGS.batch_size}.")
  if FLAGS.malloc_tuning:
    from rznas_jax import malloc  # pylint: disable=g-import-not-at-top
    malloc.keep_freed_memory()
  jax_device, torch_device = _devices(FLAGS.device)
  strategy = FLAGS.strategy
  if strategy == "auto":
    strategy = "switch" if FLAGS.device == "cpu" else "masked_vmap"
  images = data_lib.load_images(FLAGS.data)
  setting = scoring.NB201Setting("cifar10", FLAGS.channels, FLAGS.cells_per_stage)
  archs = nb201.random_archs(FLAGS.num_archs, seed=FLAGS.seed)
  inputs = proxy_inputs(setting, images, FLAGS.batch_size, FLAGS.seed)
  torch.manual_seed(FLAGS.seed)
  if FLAGS.torch_threads:
    torch.set_num_threads(FLAGS.torch_threads)
  scorers = {p: scoring.NB201Scorer(list(MEASURED[p]), setting, images=images,
                                    batch_size=FLAGS.batch_size, seed=FLAGS.seed, strategy=strategy,
                                    devices=[jax_device]) for p in FLAGS.proxies}
  workers = FLAGS.workers
  if workers < 0:
    workers = len(worker_pool.available_cpus()) if FLAGS.device == "cpu" else 0
  if workers and FLAGS.device != "cpu":
    raise app.UsageError(f"--workers={workers} pins processes to CPU cores; use it with "
                         "--device=cpu (or give --workers=0).")
  if workers > len(worker_pool.available_cpus()):
    raise app.UsageError(f"--workers={workers} exceeds the {len(worker_pool.available_cpus())} "
                         "CPU cores this process may use.")
  report: dict[str, Any] = {
      "settings": {k: FLAGS[k].value for k in ("proxies", "num_archs", "batch_size", "rounds",
                                                "seed", "check_cells", "device", "channels",
                                                "cells_per_stage", "torch_threads", "malloc_tuning",
                                                "data")},
      "workers": workers,
      "strategy": strategy,
      "network": dataclasses.asdict(setting),
      "versions": {"jax": jax.__version__, "torch": torch.__version__, "numpy": np.__version__,
                   "python": platform.python_version()},
      "torch_num_threads": torch.get_num_threads(),
      "cpu_count": os.cpu_count(),
      "jax_device": str(jax_device),
      "tolerances": {"float64": FLOAT64_TOLERANCE, "timed_path_float32": FLOAT32_TOLERANCE,
                     "timed_path_float32_default": FLOAT32_DEFAULT_TOLERANCE},
      "archs": [a.genotype for a in archs],
  }
  print(f"jax {jax.__version__} on {jax_device}, strategy {strategy}; torch {torch.__version__} on "
        f"{torch_device}, {torch.get_num_threads()} threads", flush=True)

  compile_seconds = {}
  if not FLAGS.skip_check:
    checks = {}
    for p in FLAGS.proxies:
      print(f"checking {p} on {FLAGS.check_cells} cells", flush=True)
      checks[p] = check_proxy(p, scorers[p], inputs, archs[:FLAGS.check_cells], strategy,
                              jax_device, torch_device)
      compile_seconds[p] = sum(scorers[p].compile_seconds.values())
    report["check"] = checks
    print_check(checks)
    failed = [name for c in checks.values() for name, row in c["components"].items()
              if not row["ok"]]
    if failed:
      results.write_json(FLAGS.out, report)
      print(f"\nFAILED: our scores disagree with PyTorch's for {', '.join(failed)} (see the table "
            f"and {FLAGS.out}); nothing was timed.")
      return 1
  if FLAGS.check_only:
    results.write_json(FLAGS.out, report)
    print(f"wrote {FLAGS.out}")
    return 0

  rows = []
  for p in FLAGS.proxies:
    if p not in compile_seconds:
      start = time.perf_counter()
      scorers[p].score(archs[:1])
      compile_seconds[p] = sum(scorers[p].compile_seconds.values()) or time.perf_counter() - start
    print(f"timing {p} on {len(archs)} cells", flush=True)
    pool = None
    if workers:  # started here, so only one proxy's workers hold memory at a time
      build = functools.partial(scoring.NB201Scorer, list(MEASURED[p]), setting, images=images,
                                batch_size=FLAGS.batch_size, seed=FLAGS.seed, strategy=strategy)
      pool = worker_pool.WorkerPoolScorer(build, workers, malloc_tuning=FLAGS.malloc_tuning)
    try:
      first, passes, agreement = time_proxy(p, scorers[p], inputs, archs, FLAGS.rounds,
                                            torch_device, pool)
    finally:
      if pool is not None:
        pool.close()
    rows.append(summarise(p, first, passes, len(archs), compile_seconds[p]))
    if pool is not None:
      rows[-1].update(workers=workers, worker_cpus=pool.cpu_shares,
                      workers_max_relative_difference_from_ours=agreement,
                      workers_compile_seconds=dict(pool.compile_seconds))
    report["timing"] = rows
    results.write_json(FLAGS.out, report)  # after every proxy: a long run can be read as it goes
  print_table(rows, f"{FLAGS.device} (jax {jax_device}, torch {torch.get_num_threads()} threads)",
              workers)
  print(f"\nwrote {FLAGS.out}")
  return 0


if __name__ == "__main__":
  app.run(main)
