"""The contract between networks and zero-cost proxies, and the proxy registry.

A proxy is a pure function ``score = proxy(apply_fn, variables, batch, key)``; higher is better.

``apply_fn(variables, images, *, bn=True) -> ModelOutput`` runs the network in train mode (batch
statistics, as a freshly built PyTorch model that nobody called ``.eval()`` on). ``variables`` is a
Flax variable dict: ``params`` (conv and linear weights are leaves named ``kernel``; BN has
``scale``/``bias``; the classifier has ``bias``), ``batch_stats`` (running ``mean``/``var``) and,
optionally, ``perturbations``: a pytree with the structure of ``ModelOutput.activations`` that is
added to those activations, so that its gradient is the gradient of the loss with respect to them.

Every network form (exact, masked, the CPU switch form) honours the same contract, including the
rule that an op a cell does not use contributes exactly nothing: zero to the logits, zero gradient
to its weights, a zero weight on its ReLU inputs, and running statistics left untouched.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple, Protocol

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
  """

  logits: jax.Array
  features: jax.Array
  relu_inputs: tuple[tuple[jax.Array, jax.Array], ...]
  activations: Any
  batch_stats: Any


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
      with a=sqrt(5)) or ``"gaussian"`` (N(0, 1) weights, zero biases, as in Zen-NAS).
    data: ``"real"`` (a batch of real images with labels), ``"gaussian"`` (N(0,1) images, random
      labels) or ``"none"`` (analytic, no network is run).
    dtype: ``"float32"`` or ``"float64"``.
    source: the code it follows, for docs and run records.
    dead_edge_exact: the score is unchanged when a layer whose output never reaches the logits is
      removed (its gradients are exactly zero and nothing else reads it), so a scorer may drop
      such layers (NB201's dead edges, `nb201.prune_dead_edges`). False for proxies that read
      every ReLU or BN (naswot, zen) or normalise per layer (zico, te_nas).
  """

  name: str
  fn: ProxyFn
  init: str = "pytorch"
  data: str = "real"
  dtype: str = "float32"
  source: str = ""
  dead_edge_exact: bool = False


_REGISTRY: dict[str, ProxySpec] = {}


def register(name: str, *, init: str = "pytorch", data: str = "real", dtype: str = "float32",
             source: str = "", dead_edge_exact: bool = False) -> Callable[[ProxyFn], ProxyFn]:
  """Decorator that registers a proxy function under ``name``."""
  if init not in ("pytorch", "gaussian"):
    raise ValueError(f"init must be 'pytorch' or 'gaussian', got {init!r}.")
  if data not in ("real", "gaussian", "none"):
    raise ValueError(f"data must be 'real', 'gaussian' or 'none', got {data!r}.")

  def wrap(fn: ProxyFn) -> ProxyFn:
    if name in _REGISTRY:
      raise ValueError(f"proxy {name!r} is registered twice.")
    _REGISTRY[name] = ProxySpec(name, fn, init, data, dtype, source, dead_edge_exact)
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


def names() -> list[str]:
  return sorted(_REGISTRY)
