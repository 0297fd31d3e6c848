"""The course of a search, recomputed from its trials: pure functions, NumPy only.

The population is replayed with the search's rules (METHOD.md §2.1, `rznas_jax.search.state`):
a child whose attempt is ``ok`` is appended, and once the population exceeds N the lowest score
is dropped (the first of equal lowest scores). With an aggregate fitness every member's score is
its aggregate over the archive of every architecture evaluated so far, recomputed after each
attempt (exact for one attempt per step, the default). A report checks the replayed final
population against the checkpoint's, so a change of the rules shows up instead of a wrong figure.
"""

from __future__ import annotations

import collections
import dataclasses
import re
from typing import Any, Mapping, Sequence

import numpy as np

from rznas_jax import fitness as fitness_lib

REJECTED_KINDS = ("empty", "no_json", "no_arch", "invalid")  # `state.REJECTED_KINDS`


@dataclasses.dataclass(frozen=True)
class PopulationHistory:
  """The population after each attempt (index 0: the initial population).

  Attributes:
    best: the highest score in the population, length T + 1.
    median: the median score in the population, length T + 1.
    best_genotype: the highest-scoring member (the first of equals), length T + 1.
    final: the population after the last attempt, as (genotype, score) pairs in order.
    most_accurate: the highest ``accuracy`` of any member, length T + 1 (None without
      ``accuracy``).
  """
  best: np.ndarray
  median: np.ndarray
  best_genotype: tuple[str, ...]
  final: tuple[tuple[str, float], ...]
  most_accurate: np.ndarray | None = None


def _components(value) -> tuple[float, ...]:
  return tuple(float(x) for x in value)  # non-finite values are stored as text ('-inf')


def _archive(initial_components, trials) -> dict[str, tuple[float, ...]]:
  archive = {g: _components(c) for g, c in initial_components.items()}
  for t in trials:
    if t.get("child") is not None and t.get("components") is not None:
      archive.setdefault(t["child"], _components(t["components"]))
  return archive


def replay_population(initial: Sequence[tuple[str, float]], trials: Sequence[dict[str, Any]],
                      population_size: int,
                      accuracy: Mapping[str, float] | None = None,
                      fitness: fitness_lib.Fitness | None = None,
                      initial_components: Mapping[str, Sequence[float]] | None = None
                      ) -> PopulationHistory:
  """Replays the steady-state population over ``trials``.

  Args:
    initial: the initial population, (genotype, score) pairs.
    trials: the trials as ``trials.jsonl`` holds them (``kind``, ``child``, ``score``, and
      ``components`` for an aggregate fitness).
    population_size: N.
    accuracy: {genotype: accuracy} for every member, for `PopulationHistory.most_accurate`.
    fitness: the run's fitness; an aggregate re-ranks the archive after every attempt.
    initial_components: {genotype: component scores} of the initial population (aggregates).

  Returns:
    A `PopulationHistory`.

  Example:
    >>> h = replay_population([("a", 1.0)], [{"kind": "ok", "child": "b", "score": 3.0}], 2)
    >>> h.best.tolist(), h.best_genotype
    ([1.0, 3.0], ('a', 'b'))
  """
  population = [(g, float(s)) for g, s in initial]
  if not population:
    raise ValueError("the initial population is empty.")

  def snapshot():
    scores = [s for _, s in population]
    top = max(range(len(population)), key=lambda i: (scores[i], -i))
    most = max(accuracy[g] for g, _ in population) if accuracy is not None else np.nan
    return max(scores), float(np.median(scores)), population[top][0], most

  aggregate = fitness is not None and fitness.is_aggregate
  archive = _archive(initial_components or {}, ()) if aggregate else {}

  def rescore():
    scores = fitness_lib.archive_scores(archive, fitness)
    population[:] = [(g, scores[g]) for g, _ in population]

  if aggregate:
    rescore()
  rows = [snapshot()]
  for t in trials:
    if aggregate and t.get("child") is not None and t.get("components") is not None:
      archive.setdefault(t["child"], _components(t["components"]))
    if t.get("kind") == "ok" and t.get("child") not in {g for g, _ in population}:
      population.append((t["child"], float(t["score"])))
    if aggregate:
      rescore()
    while len(population) > population_size:
      worst = min(range(len(population)), key=lambda i: (population[i][1], i))
      population.pop(worst)
    rows.append(snapshot())
  return PopulationHistory(best=np.array([r[0] for r in rows]), median=np.array([r[1] for r in rows]),
                           best_genotype=tuple(r[2] for r in rows), final=tuple(population),
                           most_accurate=np.array([r[3] for r in rows]) if accuracy is not None else None)


def rejection_rate(trials: Sequence[dict[str, Any]], window: int) -> tuple[np.ndarray, np.ndarray]:
  """(cumulative, moving-window) fraction of rejected replies after each attempt.

  Args:
    trials: the trials.
    window: attempts in the moving window (fewer at the start).

  Returns:
    Two float arrays of length ``len(trials)``.
  """
  rejected = np.array([t.get("kind") in REJECTED_KINDS for t in trials], np.float64)
  if not rejected.size:
    return np.zeros(0), np.zeros(0)
  counts = np.cumsum(rejected)
  n = np.arange(1, rejected.size + 1)
  cumulative = counts / n
  lagged = np.concatenate([np.zeros(window), counts])[: rejected.size]
  moving = (counts - lagged) / np.minimum(n, window)
  return cumulative, moving


# Parts of an error message that name one reply: quoted text, genotypes, numbers.
_SPECIFIC = (re.compile(r"'[^']*'|\"[^\"]*\""), re.compile(r"\|[^ ]*\|"), re.compile(r"\d+(\.\d+)?"))


def reason_key(error: str) -> str:
  """An error message with what names one reply (quotes, genotypes, numbers) replaced by ``…``,
  so that equal reasons group together."""
  text = " ".join(str(error).split())
  for pattern in _SPECIFIC:
    text = pattern.sub("…", text)
  return text


def rejection_reasons(trials: Sequence[dict[str, Any]], top: int = 5) -> list[tuple[str, str, int]]:
  """The most common reasons replies were rejected: (kind, reason, count), most common first."""
  counter = collections.Counter((t["kind"], reason_key(t.get("error") or t["kind"]))
                                for t in trials if t.get("kind") in REJECTED_KINDS)
  return [(kind, reason, n) for (kind, reason), n in counter.most_common(top)]


def evaluated(initial: Sequence[tuple[str, float]], trials: Sequence[dict[str, Any]],
              fitness: fitness_lib.Fitness | None = None,
              initial_components: Mapping[str, Sequence[float]] | None = None
              ) -> list[tuple[str, float]]:
  """Every distinct genotype the run scored, with its score, in the order first scored; for an
  aggregate fitness, its aggregate over the final archive (scores of different steps are ranks
  among different sets, so they are not comparable)."""
  if fitness is not None and fitness.is_aggregate:
    archive = _archive(initial_components or {}, trials)
    return list(fitness_lib.archive_scores(archive, fitness).items())
  out = dict((g, float(s)) for g, s in initial)
  for t in trials:
    if t.get("child") is not None and t.get("score") is not None and t["child"] not in out:
      out[t["child"]] = float(t["score"])
  return list(out.items())


def last_reflections(trials: Sequence[dict[str, Any]], count: int) -> list[dict[str, Any]]:
  """The last ``count`` trials that carry a reflection, oldest first."""
  return [t for t in trials if t.get("reflection")][-count:]
