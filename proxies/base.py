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
from typing import Any, Callable, Mapping, NamedTuple, Protocol, Sequence

import jax

from rznas_jax.errors import UserError


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
    fan_ins: None, or a pytree like ``activations`` giving each activation's fan-in (Fisher's
      weight) as a value, for networks where one activation slot serves several ops (the DARTS
      switch form); None: Fisher reads the fan-in from the producing kernel's shape.
  """

  logits: jax.Array
  features: jax.Array
  relu_inputs: tuple[tuple[jax.Array, jax.Array], ...]
  activations: Any
  batch_stats: Any
  blocks: tuple[jax.Array, ...] = ()
  fan_ins: Any = None


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

  A proxy is one of two kinds (`kind`): a **network** proxy (`register`) runs a network on a
  batch; an **analytic** proxy (`register_analytic`, ``data="none"``) reads the space's counters
  for an architecture and runs nothing.

  Attributes:
    name: registry name, e.g. ``"synflow"`` or ``"synflow_zen"``.
    fn: the proxy function: ``fn(apply_fn, variables, batch, key)`` for a network proxy,
      ``fn(costs)`` for an analytic one.
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
      ``fold_in(key, crc32(joint.__name__))``. Such a proxy reads ``ModelOutput.blocks``.
    costs: for an analytic proxy, the cost entries it reads (``"params"``, ``"flops"``,
      ``"arch"``, ...), so that a space lacking one is refused up front (`check_for_space`).
    convention: for an analytic proxy defined for one counting convention only (MAE-DET's
      ``"maedet"``), that convention; None: any.
    home_spaces: the spaces such a proxy was defined for, named when another space refuses it.
  """

  name: str
  fn: Callable[..., Any]
  init: str = "pytorch"
  data: str = "real"
  dtype: str = "float32"
  source: str = ""
  dead_edge_exact: bool = False
  joint: Callable[..., dict] | None = None
  costs: tuple[str, ...] = ()
  convention: str | None = None
  home_spaces: tuple[str, ...] = ()

  @property
  def kind(self) -> str:
    """``"analytic"`` (reads the space's counters) or ``"network"`` (runs a network)."""
    return ANALYTIC if self.data == "none" else NETWORK


ANALYTIC = "analytic"
NETWORK = "network"
AnalyticFn = Callable[[Mapping[str, Any]], float]

_REGISTRY: dict[str, ProxySpec] = {}
INITS = ("pytorch", "gaussian", "kaiming")


def _add(spec: ProxySpec) -> None:
  if spec.name in _REGISTRY:
    raise ValueError(f"proxy {spec.name!r} is registered twice.")
  _REGISTRY[spec.name] = spec


def register(name: str, *, init: str = "pytorch", data: str = "real", dtype: str = "float32",
             source: str = "", dead_edge_exact: bool = False, joint: Callable[..., dict] | None = None,
             costs: Sequence[str] = ()) -> Callable[[ProxyFn], ProxyFn]:
  """Decorator that registers a network proxy ``fn(apply_fn, variables, batch, key)`` as ``name``.

  ``data="none"`` with ``costs`` registers an analytic proxy instead, as `register_analytic`
  does (``params`` and ``flops`` keep this spelling: their source, decorator included, is shown
  in the search prompts, which recorded searches replay byte for byte).
  """
  if data == "none":
    return register_analytic(name, costs=costs, source=source)
  if init not in INITS:
    raise ValueError(f"init must be one of {', '.join(INITS)}, got {init!r}.")
  if data not in ("real", "gaussian"):
    raise ValueError(f"data must be 'real', 'gaussian' or 'none', got {data!r}.")
  if costs:
    raise ValueError(f"network proxy {name!r} reads no costs; an analytic proxy has data='none'.")

  def wrap(fn: ProxyFn) -> ProxyFn:
    _add(ProxySpec(name, fn, init, data, dtype, source, dead_edge_exact, joint))
    return fn

  return wrap


def register_analytic(name: str, *, costs: Sequence[str], convention: str | None = None,
                      home_spaces: Sequence[str] = (),
                      source: str = "") -> Callable[[AnalyticFn], AnalyticFn]:
  """Decorator that registers an analytic proxy ``fn(costs) -> float`` as ``name``.

  The scorers call ``fn`` with the space's cost dict of one architecture (NB201:
  ``NB201Setting.costs``; macro spaces: ``MacroSpace.costs``) and run no network.

  Example:
    >>> @register_analytic("params", costs=("params",))
    ... def params(costs):
    ...   return float(costs["params"])

  Args:
    name: registry name.
    costs: the cost entries ``fn`` reads; a space that lacks one refuses the proxy
      (`check_for_space`).
    convention: the counting convention the proxy is defined for (a space's
      ``MacroSpace.convention``), or None for any.
    home_spaces: with ``convention``, the spaces of that convention it was defined for, which a
      refusal names.
    source: the code it follows, for docs and run records.

  Raises:
    ValueError: no cost entries, or a name registered twice.
  """
  if not costs:
    raise ValueError(f"analytic proxy {name!r} must name the cost entries it reads.")

  def wrap(fn: AnalyticFn) -> AnalyticFn:
    _add(ProxySpec(name, fn, data="none", source=source, costs=tuple(costs),
                   convention=convention, home_spaces=tuple(home_spaces)))
    return fn

  return wrap


class UnknownProxyError(UserError, KeyError):

  def __str__(self) -> str:
    return str(self.args[0])


class ProxySpaceError(UserError):
  """A registered proxy that cannot run in the space asked for (`check_for_space`)."""


def get(name: str) -> ProxySpec:
  """The registered proxy ``name``; raises UnknownProxyError listing the valid names."""
  if name not in _REGISTRY:
    raise UnknownProxyError(f"unknown proxy {name!r}; valid proxies are {', '.join(sorted(_REGISTRY))}.")
  return _REGISTRY[name]


def names() -> list[str]:
  """Every registered proxy, both kinds, sorted."""
  return sorted(_REGISTRY)


def analytic_names() -> list[str]:
  """The analytic proxies (`register_analytic`), sorted."""
  return [n for n in names() if _REGISTRY[n].kind == ANALYTIC]


def network_names() -> list[str]:
  """The network proxies (`register`), sorted."""
  return [n for n in names() if _REGISTRY[n].kind == NETWORK]


def _why_not(spec: ProxySpec, costs: Sequence[str], convention: str | None,
             reports_blocks: bool) -> str | None:
  """Why ``spec`` cannot run in a space with these traits (a clause), or None if it can."""
  if spec.kind == ANALYTIC:
    missing = [c for c in spec.costs if c not in costs]
    if missing:
      counted = f"it counts {', '.join(costs)}" if costs else "it counts nothing"
      return f"reads the cost {missing[0]!r}, which the {{space}} space does not provide ({counted})"
    if spec.convention is not None and spec.convention != convention:
      used = f"the {convention} convention" if convention else "no block convention"
      home = f" ({', '.join(spec.home_spaces)})" if spec.home_spaces else ""
      return (f"is defined only for spaces that count blocks in the {spec.convention} convention{home}, "
              f"and the {{space}} space uses {used}")
  elif spec.joint is not None and not reports_blocks:
    return "reads every block's output, which the {space} networks do not report yet"
  return None


def check_for_space(proxies: Sequence[str], available_costs: Sequence[str], space_name: str, *,
                    convention: str | None = None, reports_blocks: bool = True) -> None:
  """Refuses, in one sentence, the first proxy of ``proxies`` that cannot run in a space.

  An analytic proxy needs every cost entry it declares (`register_analytic`) and, when it
  declares one, the space's counting convention; a joint proxy (AZ-NAS) needs a network that
  reports its blocks' outputs. The sentence names the proxy, the space and the proxies that
  would be valid there.

  Example:
    >>> check_for_space(["synflow", "params"], ("params", "flops"), "nb201")   # passes
    >>> check_for_space(["maedet"], ("params", "flops"), "nb201")
    Traceback (most recent call last):
    ProxySpaceError: proxy 'maedet' reads the cost 'arch', which the nb201 space does not ...

  Args:
    proxies: registry names (components of a fitness, not aggregates).
    available_costs: the keys of the space's cost dict (NB201: ``NB201Setting.COSTS``; macro
      spaces: ``macro_scoring.MACRO_COSTS``).
    space_name: the space, for the message.
    convention: the space's counting convention (``MacroSpace.convention``); None for a space
      without one (NB201).
    reports_blocks: whether the space's networks fill ``ModelOutput.blocks`` (NB201 does, the
      macro networks do not yet).

  Raises:
    ProxySpaceError: the first proxy that cannot run in the space (a ValueError).
    UnknownProxyError: a name that is not registered.
  """
  traits = (tuple(available_costs), convention, reports_blocks)
  for name in proxies:
    reason = _why_not(get(name), *traits)
    if reason is None:
      continue
    kind = get(name).kind
    valid = [n for n in (analytic_names() if kind == ANALYTIC else network_names())
             if _why_not(_REGISTRY[n], *traits) is None]
    if kind == ANALYTIC:
      use = (f"a network proxy or the analytic proxies {', '.join(valid)}" if valid else
             "a network proxy (no analytic proxy applies)")
    else:
      use = f"one of {', '.join(valid)} (or an aggregate of them)"
    raise ProxySpaceError(f"proxy {name!r} {reason.format(space=space_name)}; in {space_name} "
                          f"use {use}.")


def check_costs(spec: ProxySpec, available: Sequence[str], space: str) -> None:
  """`check_for_space` for one proxy spec (kept for old callers)."""
  check_for_space([spec.name], available, space)
