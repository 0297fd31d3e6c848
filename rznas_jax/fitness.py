"""Fitness: a single proxy, or several proxies rank-aggregated against a reference set.

A fitness name is what a user writes wherever a proxy name is accepted:

* a registered proxy, e.g. ``synflow``: the fitness is that proxy's score;
* ``rank:a+b+c``: AZ-NAS's non-linear aggregation of the components' ranks, ``sum_M
  log(rank_M / n)``;
* ``rank_linear:a+b+c``: the linear variant, ``sum_M rank_M / n``;
* ``az_nas``: AZ-NAS itself, ``rank:az_expressivity+az_progressivity+az_trainability+flops``.

Ranks are ascending (the lowest score ranks 1, the highest n), ties get their average rank, and
``n`` is the size of the reference set, which the caller makes explicit: the scored cells in
``launch.correlate`` and ``launch.score``, the archive of every evaluated architecture in a search
(so a member's fitness can fall as better architectures appear). An undefined score (NaN) or
``-inf`` ranks below every other, tied with its kind, as NASLib does and as AZ-NAS turns NaN into
``-inf``. The reference is cvlab-yonsei/AZ-NAS, ``NB201/tss_general.ipynb`` (``rank_agg``).

This module is NumPy only: the search state imports it without pulling in JAX.
"""

from __future__ import annotations

import dataclasses
from typing import Iterable, Mapping

import numpy as np

from rznas_jax.errors import UserError

LOG, LINEAR = "log", "linear"
_PREFIXES = {"rank:": LOG, "rank_linear:": LINEAR}
# Named aggregates: AZ-NAS (Lee & Ham, CVPR 2024), complexity = FLOPs.
NAMED = {"az_nas": ("rank:az_expressivity+az_progressivity+az_trainability+flops")}


class FitnessError(UserError):
  """A fitness name that names no valid fitness; the message is one sentence for the user."""


@dataclasses.dataclass(frozen=True)
class Fitness:
  """What a search ranks by.

  Attributes:
    name: as the user wrote it (``synflow``, ``az_nas``, ``rank:zico+naswot``).
    components: the proxies it reads, in order.
    aggregate: None for a single proxy, else ``"log"`` or ``"linear"``.
  """
  name: str
  components: tuple[str, ...]
  aggregate: str | None = None

  @property
  def is_aggregate(self) -> bool:
    return self.aggregate is not None

  def describe(self) -> str:
    """One line for prompts and reports."""
    if not self.is_aggregate:
      return self.name
    term = "log(rank/n)" if self.aggregate == LOG else "rank/n"
    return (f"{self.name} = sum over {', '.join(self.components)} of {term}, ranks ascending "
            "among every evaluated architecture")


def parse(name: str, valid_proxies: Iterable[str] | None) -> Fitness:
  """The fitness ``name`` names.

  Args:
    name: a proxy name, ``az_nas``, ``rank:a+b``, or ``rank_linear:a+b``.
    valid_proxies: the registered proxy names (``rznas_jax.proxies.names()``); None reads the
      structure of a name recorded by a run without checking its proxies (reports).

  Returns:
    The `Fitness`.

  Raises:
    FitnessError: an unknown proxy or component, an aggregate of fewer than two proxies, or a
      component named twice.

  Example:
    >>> parse("rank:synflow+naswot", ["synflow", "naswot"]).components
    ('synflow', 'naswot')
  """
  text = str(name).strip()
  expanded = NAMED.get(text, text)
  if valid_proxies is None:  # every proxy name counts as valid
    valid_proxies = [p.strip() for p in expanded.split(":", 1)[-1].split("+")]
  valid = sorted(valid_proxies)
  kind = next((k for prefix, k in _PREFIXES.items() if expanded.startswith(prefix)), None)
  if kind is None:
    if expanded not in valid:
      raise FitnessError(
          f"unknown proxy {text!r}; valid: {', '.join(valid)}, az_nas, or an aggregate "
          "rank:a+b[+...] / rank_linear:a+b[+...] of them.")
    return Fitness(text, (expanded,))
  body = expanded.split(":", 1)[1]
  components = tuple(p.strip() for p in body.split("+"))
  if any(not p for p in components):
    raise FitnessError(f"the aggregate {text!r} has an empty component; write it as "
                       "rank:a+b[+...] with registered proxy names.")
  unknown = [p for p in components if p not in valid]
  if unknown:
    raise FitnessError(f"unknown proxy {unknown[0]!r} in the aggregate {text!r}; valid components "
                       f"are {', '.join(valid)}.")
  if len(components) < 2:
    raise FitnessError(f"the aggregate {text!r} has one proxy; an aggregate ranks at least two "
                       f"(use {components[0]!r} alone for a single proxy).")
  if len(set(components)) != len(components):
    raise FitnessError(f"the aggregate {text!r} names a proxy twice; name each once.")
  return Fitness(text, components, kind)


def ranks(values: np.ndarray) -> np.ndarray:
  """Ascending ranks 1..n with ties averaged; NaN and -inf rank lowest, tied with each other.

  The same numbers as ``scipy.stats.rankdata(values, "average")`` once NaN is replaced by -inf.
  """
  v = np.asarray(values, np.float64).copy()
  v[np.isnan(v)] = -np.inf
  n = v.size
  if n == 0:
    return np.zeros(0)
  order = np.argsort(v, kind="stable")
  sorted_v = v[order]
  # Each run of equal values shares the mean of the ranks it spans.
  starts = np.flatnonzero(np.r_[True, sorted_v[1:] != sorted_v[:-1]])
  ends = np.r_[starts[1:], n]
  mean_rank = (starts + ends + 1) / 2.0  # ranks start+1..end, averaged
  out = np.empty(n)
  out[order] = np.repeat(mean_rank, ends - starts)
  return out


def aggregate(fitness: Fitness, scores: Mapping[str, np.ndarray]) -> np.ndarray:
  """The fitness of each member of a reference set.

  Args:
    fitness: a parsed fitness.
    scores: {component: (n,) scores}, one row per member of the reference set, aligned.

  Returns:
    (n,) float64: the proxy's score for a single proxy (unchanged, NaN included), or the
    aggregate of the components' ranks among the n members.

  Raises:
    KeyError: a component is missing from ``scores``.
  """
  if not fitness.is_aggregate:
    return np.asarray(scores[fitness.components[0]], np.float64)
  columns = [np.asarray(scores[c], np.float64) for c in fitness.components]
  n = columns[0].size
  if any(c.size != n for c in columns):
    raise ValueError("every component needs one score per member of the reference set.")
  if n == 0:
    return np.zeros(0)
  total = np.zeros(n)
  for column in columns:
    r = ranks(column) / n
    total += np.log(r) if fitness.aggregate == LOG else r
  return total


def archive_scores(archive: Mapping[str, Iterable[float]], fitness: Fitness) -> dict[str, float]:
  """Each member's aggregate over an archive, the search's reference set.

  Args:
    archive: {genotype: component scores aligned with ``fitness.components``}.
    fitness: an aggregate fitness.

  Returns:
    {genotype: aggregate}, in the archive's order.
  """
  genotypes = list(archive)
  columns = np.asarray([tuple(archive[g]) for g in genotypes], np.float64).reshape(
      len(genotypes), len(fitness.components))
  values = aggregate(fitness, {c: columns[:, i] for i, c in enumerate(fitness.components)})
  return dict(zip(genotypes, map(float, values)))


def percentiles(values: np.ndarray) -> np.ndarray:
  """Each value's percentile in its set, 100 * (rank - 1) / (n - 1) (ties averaged; 100 = best)."""
  v = np.asarray(values, np.float64)
  if v.size <= 1:
    return np.full(v.size, 100.0)
  return 100.0 * (ranks(v) - 1.0) / (v.size - 1.0)


def components_of(fitnesses: Iterable[Fitness]) -> list[str]:
  """The registered proxies that ``fitnesses`` read, each once, in first-mention order."""
  return list(dict.fromkeys(c for f in fitnesses for c in f.components))


def with_aggregates(fitnesses: Iterable[Fitness], scores: Mapping[str, np.ndarray]) -> dict:
  """``scores`` (one array per component, over one reference set) plus each aggregate's values.

  The reference set is the set of architectures ``scores`` covers: e.g. the cells that
  ``launch.correlate`` scored. Single proxies are already in ``scores``.
  """
  out = dict(scores)
  for f in fitnesses:
    if f.is_aggregate:
      out[f.name] = aggregate(f, scores)
  return out
