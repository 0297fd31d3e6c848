"""Analytic proxies: parameter and FLOP counts (no network is run)."""

from __future__ import annotations

from rznas_jax.proxies.base import register


@register("params", data="none", costs=("params",),
          source="idstcv/ZenNAS evolution_search.py (get_model_size)")
def params(costs: dict) -> float:
  """The architecture's parameter count, ``costs["params"]``.

  Unlike the other proxies this takes the space's exact counters, not a network: the harness
  calls ``fn(costs)`` with ``costs = {"params": ..., "flops": ...}`` and never calls apply_fn.

  Args:
    costs: the space's counters for one architecture.

  Returns:
    ``float(costs["params"])``; higher is better.
  """
  return float(costs["params"])


@register("flops", data="none", costs=("flops",),
          source="idstcv/ZenNAS evolution_search.py (get_FLOPs)")
def flops(costs: dict) -> float:
  """The architecture's FLOP count, ``costs["flops"]``; see ``params`` for the signature.

  Args:
    costs: the space's counters for one architecture.

  Returns:
    ``float(costs["flops"])``; higher is better.
  """
  return float(costs["flops"])
