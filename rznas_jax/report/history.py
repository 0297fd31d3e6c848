"""The course of a search, recomputed from its trials: pure functions, NumPy only.

The population is replayed with the search's own rule, `rznas_jax.search.state.population_after`
(the RZ-NAS paper, §3.2; docs/search.md): a child whose attempt is ``ok`` is appended, and once the
population exceeds N the lowest score is dropped (the first of equal lowest scores). With an
aggregate fitness every member's score is its aggregate over the archive of every architecture
evaluated so far (`state.add_to_archive`), recomputed after each attempt (exact for one attempt per
step, the default). A report checks the replayed final population against the checkpoint's, so a
change of the rules shows up instead of a wrong figure.
"""

from __future__ import annotations

import collections
import dataclasses
import re
from typing import Any, Mapping, Sequence

import numpy as np

from rznas_jax import fitness as fitness_lib
from rznas_jax.search import state as state_lib


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


def _trial(number: int, d: Mapping[str, Any]) -> state_lib.Trial:
  """A trial as ``trials.jsonl`` holds it (a hand-written one may name only ``kind``, ``child``
  and ``score``, and ``components`` for an aggregate fitness)."""
  return state_lib.Trial(
      iteration=d.get("iteration", number), parent=d.get("parent", ""),
      parent_score=d.get("parent_score", 0.0), child=d.get("child"), score=d.get("score"),
      kind=d.get("kind"), error=d.get("error"), added=False,
      components=state_lib.components_from_json(d.get("components")))


def _archive(initial_components: Mapping[str, Sequence[float]],
             trials: Sequence[dict[str, Any]]) -> dict[str, tuple[float, ...]]:
  """The archive after ``trials`` (`state.add_to_archive`), from components as the run folder
  holds them (non-finite values as text)."""
  return state_lib.add_to_archive(
      {g: state_lib.components_from_json(c) for g, c in initial_components.items()},
      ((t.get("child"), state_lib.components_from_json(t.get("components"))) for t in trials))


def replay_population(initial: Sequence[tuple[str, float]], trials: Sequence[dict[str, Any]],
                      population_size: int,
                      accuracy: Mapping[str, float] | None = None,
                      fitness: fitness_lib.Fitness | None = None,
                      initial_components: Mapping[str, Sequence[float]] | None = None
                      ) -> PopulationHistory:
  """Replays the steady-state population over ``trials``, one attempt at a time, with the
  search's rule (`state.population_after`).

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
  if not initial:
    raise ValueError("the initial population is empty.")
  aggregate = fitness is not None and fitness.is_aggregate
  archive = _archive(initial_components or {}, ()) if aggregate else None
  population = tuple(state_lib.Member(g, float(s), -1, archive.get(g) if aggregate else None)
                     for g, s in initial)
  if aggregate:  # the initial members' aggregates among themselves, as `state.init_state` gives
    scores = fitness_lib.archive_scores(archive, fitness)
    population = tuple(dataclasses.replace(m, score=scores[m.genotype]) for m in population)

  def snapshot():
    scores = [m.score for m in population]
    top = max(range(len(population)), key=lambda i: (scores[i], -i))
    most = max(accuracy[m.genotype] for m in population) if accuracy is not None else np.nan
    return max(scores), float(np.median(scores)), population[top].genotype, most

  rows = [snapshot()]
  for number, d in enumerate(trials):
    trial = _trial(number, d)
    if aggregate:
      archive = state_lib.add_to_archive(archive, [(trial.child, trial.components)])
    population, _ = state_lib.population_after(population, [trial], population_size,
                                               fitness=fitness, archive=archive)
    rows.append(snapshot())
  return PopulationHistory(
      best=np.array([r[0] for r in rows]), median=np.array([r[1] for r in rows]),
      best_genotype=tuple(r[2] for r in rows),
      final=tuple((m.genotype, m.score) for m in population),
      most_accurate=np.array([r[3] for r in rows]) if accuracy is not None else None)


def rejection_rate(trials: Sequence[dict[str, Any]], window: int) -> tuple[np.ndarray, np.ndarray]:
  """(cumulative, moving-window) fraction of rejected replies after each attempt.

  Args:
    trials: the trials.
    window: attempts in the moving window (fewer at the start).

  Returns:
    Two float arrays of length ``len(trials)``.
  """
  rejected = np.array([t.get("kind") in state_lib.REJECTED_KINDS for t in trials], np.float64)
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
                                for t in trials if t.get("kind") in state_lib.REJECTED_KINDS)
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
