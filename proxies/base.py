"""The contract between networks and zero-cost proxies, and the proxy registry.

A proxy is a pure function ``score = proxy(apply_fn, variables, batch, key)``; higher is better.

``apply_fn(variables, images, *, bn=True) -> ModelOutput`` runs the network in train mode (batch
statistics, as a freshly built PyTorch model that nobody called ``.eval()`` on). ``variables`` is a
Flax variable dict: ``params`` (conv and linear weights are leaves named ``kernel``; BN has
``scale``/``bias``; the classifier has ``bias``), ``batch_stats`` (running ``mean``/``var``) and,
optionally, ``perturbations``: a pytree with the structure of ``ModelOutput.activations`` that is
added to those activations, so that its gradient is the gradient of the loss with respect to them,
and, optionally, ``block_cuts``: a tuple with one array per block but the first, shaped like that
block's input. With cuts, block ``l`` reads ``stop_gradient(blocks[l-1]) + block_cuts[l-1]``, so
the gradient of ``sum_l <blocks[l], g_l>`` with respect to ``block_cuts[l-1]`` is the local VJP of
block ``l`` alone (AZ-NAS's trainability); the forward values are unchanged.

Every network form (exact, masked, the CPU switch form) honours the same contract, including the
rule that an op a cell does not use contributes exactly nothing: zero to the logits, zero gradient
to its weights, a zero weight on its ReLU inputs, and running statistics left untouched.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple, Protocol, Sequence

import jax


class ModelOutput(NamedTuple):
  """What a network returns to a proxy.

  Attributes:
    logits: (B, num_classes).
    features: (B, H, W, C) output of the last layer before global pooling (Zen-score reads it).
    relu_inputs: tuple of ``(x, weight)``: the input of every ReLU and a scalar 0/1 weight that is
      0 when the ReLU belongs to an unused op of a masked network (NASWOT reads the codes ``x > 0``).
    activations: pytree of every conv and linear output, before BN (Fisher reads it together with
      the gradient through ``variables['perturbations']``).
    batch_stats: the running statistics after this forward pass, PyTorch semantics (momentum 0.1,
      unbiased variance in the running update); unused BN layers keep their old values.
    blocks: the feature maps AZ-NAS reads, in network order: NB201, the stem output (after its BN)
      and each cell's and reduction block's output (18 maps at full size); macro networks, each
      unit's output. Empty for a network that does not report them.
  """

  logits: jax.Array
  features: jax.Array
  relu_inputs: tuple[tuple[jax.Array, jax.Array], ...]
  activations: Any
  batch_stats: Any
  blocks: tuple[jax.Array, ...] = ()


class ApplyFn(Protocol):

  def __call__(self, variables: dict, images: jax.Array, *, bn: bool = True) -> ModelOutput:
    ...


class Batch(NamedTuple):
  """Images (B, H, W, 3) float32, NHWC, and integer labels (B,)."""

  images: jax.Array
  labels: jax.Array


ProxyFn = Callable[[ApplyFn, dict, Batch, jax.Array], jax.Array]


@dataclasses.dataclass(frozen=True)
class ProxySpec:
  """A registered proxy and the setting it was defined with.

  Attributes:
    name: registry name, e.g. ``"synflow"`` or ``"synflow_zen"``.
    fn: the proxy function.
    init: weight initialisation it expects: ``"pytorch"`` (PyTorch's default, kaiming-uniform
      with a=sqrt(5)), ``"gaussian"`` (N(0, 1) weights, zero biases, as in Zen-NAS) or
      ``"kaiming"`` (kaiming-normal, fan_in, ReLU gain: N(0, 2/fan_in) weights, zero biases, BN
      1/0, as in AZ-NAS).
    data: ``"real"`` (a batch of real images with labels), ``"gaussian"`` (N(0,1) images, random
      labels) or ``"none"`` (analytic, no network is run).
    dtype: ``"float32"`` or ``"float64"``.
    source: the code it follows, for docs and run records.
    dead_edge_exact: the score is unchanged when a layer whose output never reaches the logits is
      removed (its gradients are exactly zero and nothing else reads it), so a scorer may drop
      such layers (NB201's dead edges, `nb201.prune_dead_edges`). False for proxies that read
      every ReLU or BN (naswot, zen) or normalise per layer (zico, te_nas).
    joint: for a proxy that is one entry of a function computing several proxies together
      (AZ-NAS's three from one forward and one backward pass), that function, which returns
      ``{name: score}``; a harness scoring several of its proxies calls it once, with the key
      ``fold_in(key, crc32(joint.__name__))``.
    costs: for an analytic proxy (``data="none"``), the cost entries it reads (``"params"``,
      ``"flops"``, ``"arch"``), so that a space lacking one is refused up front.
  """

  name: str
  fn: ProxyFn
  init: str = "pytorch"
  data: str = "real"
  dtype: str = "float32"
  source: str = ""
  dead_edge_exact: bool = False
  joint: Callable[..., dict] | None = None
  costs: tuple[str, ...] = ()


_REGISTRY: dict[str, ProxySpec] = {}
INITS = ("pytorch", "gaussian", "kaiming")


def register(name: str, *, init: str = "pytorch", data: str = "real", dtype: str = "float32",
             source: str = "", dead_edge_exact: bool = False, joint: Callable[..., dict] | None = None,
             costs: tuple[str, ...] = ()) -> Callable[[ProxyFn], ProxyFn]:
  """Decorator that registers a proxy function under ``name``."""
  if init not in INITS:
    raise ValueError(f"init must be one of {', '.join(INITS)}, got {init!r}.")
  if data not in ("real", "gaussian", "none"):
    raise ValueError(f"data must be 'real', 'gaussian' or 'none', got {data!r}.")

  def wrap(fn: ProxyFn) -> ProxyFn:
    if name in _REGISTRY:
      raise ValueError(f"proxy {name!r} is registered twice.")
    _REGISTRY[name] = ProxySpec(name, fn, init, data, dtype, source, dead_edge_exact, joint,
                                tuple(costs))
    return fn

  return wrap


class UnknownProxyError(KeyError):

  def __str__(self) -> str:
    return str(self.args[0])


def get(name: str) -> ProxySpec:
  """The registered proxy ``name``; raises UnknownProxyError listing the valid names."""
  if name not in _REGISTRY:
    raise UnknownProxyError(f"unknown proxy {name!r}; valid proxies are {', '.join(sorted(_REGISTRY))}.")
  return _REGISTRY[name]


def check_costs(spec: ProxySpec, available: Sequence[str], space: str) -> None:
  """Raises ValueError when analytic proxy ``spec`` reads a cost that ``space`` does not count."""
  missing = [c for c in spec.costs if c not in available]
  if missing:
    raise ValueError(f"proxy {spec.name!r} reads the cost {missing[0]!r}, which the {space} space "
                     f"does not provide (it counts {', '.join(available)}); use another proxy or "
                     "another space.")


def names() -> list[str]:
  return sorted(_REGISTRY)
