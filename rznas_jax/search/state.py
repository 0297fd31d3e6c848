"""The search state: one immutable value, and the pure functions that step it (DESIGN.md, 7).

`SearchState` holds everything a search is: the iteration (mutation attempts done), its PRNG key,
the population, every trial (parent, child, score, error, reflection, LLM call ids), the
reflection memory and the initial population. `plan_step` draws what one step needs from the
state's key (parents, temperatures, seeds for the LLM calls); `apply_step` returns the state after
the step's attempts. Neither talks to the world; `rznas_jax.search.driver.run` does the I/O.

Population rules (METHOD.md §2.1): steady state; a valid, new child is appended and the lowest
score is dropped once the population exceeds N (the first of equal lowest scores, i.e. the
oldest); a child already in the population is not added again (§3.3 decision).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Iterable, Sequence

import jax
import numpy as np

from rznas_jax.search.prompts import Reflection

# Kinds of attempt. The first group are rejected replies (the invalid-reply rate counts them).
REJECTED_KINDS = ("empty", "no_json", "no_arch", "invalid")
OTHER_KINDS = ("ok", "duplicate", "proxy_failed", "llm_failed")
KINDS = REJECTED_KINDS + OTHER_KINDS
TEMPERATURES = (0.2, 0.4, 0.6, 0.8, 1.0)  # METHOD.md §2.4: one drawn per call
_SEED_RANGE = 2**31 - 1


@dataclasses.dataclass(frozen=True)
class Member:
  """A population member: its genotype, proxy score and the iteration it was added (-1: initial)."""
  genotype: str
  score: float
  born: int


@dataclasses.dataclass(frozen=True)
class Proposal:
  """What one attempt of a step uses, drawn from the state's key.

  Attributes:
    parent: the member to mutate.
    temperature: of the mutation call.
    reflection_temperature: of the reflection call.
    seed: of the mutation (LLM sampling seed, or the random mutation's generator).
    reflection_seed: of the reflection call.
  """
  parent: Member
  temperature: float
  reflection_temperature: float
  seed: int
  reflection_seed: int


@dataclasses.dataclass(frozen=True)
class Trial:
  """One mutation attempt, whatever came of it.

  Attributes:
    iteration: 0-based index of the attempt.
    parent, parent_score: the parent.
    child: the child's canonical genotype when the reply named a valid one, else None.
    score: the child's proxy score when it was scored, else None.
    kind: one of `KINDS`.
    error: why the attempt produced no new member (for reflection), else None.
    added: whether the child entered the population.
    temperature: of the mutation call (None for random mutation).
    reflection: the reflection's advice, or None.
    mutation_call, reflection_call: LLM call ids, or None.
  """
  iteration: int
  parent: str
  parent_score: float
  child: str | None
  score: float | None
  kind: str
  error: str | None
  added: bool
  temperature: float | None = None
  reflection: str | None = None
  mutation_call: str | None = None
  reflection_call: str | None = None

  def to_json(self) -> dict[str, Any]:
    return dataclasses.asdict(self)

  @classmethod
  def from_json(cls, d: dict[str, Any]) -> "Trial":
    return cls(**d)


@dataclasses.dataclass(frozen=True)
class SearchState:
  """Everything a search is, as one immutable value.

  Attributes:
    iteration: mutation attempts done.
    key: the PRNG key's data (two uint32 as ints, so that the state is JSON and hashable).
    population: the current members, in insertion order.
    initial: the initial population as drawn and scored.
    trials: every attempt, in order.
    memory: the most recent reflections, oldest first.
    evaluations: proxy evaluations done (the initial population included; a score that is
      reused for a child seen before is not an evaluation).
  """
  iteration: int
  key: tuple[int, ...]
  population: tuple[Member, ...]
  initial: tuple[Member, ...]
  trials: tuple[Trial, ...] = ()
  memory: tuple[Reflection, ...] = ()
  evaluations: int = 0

  def replace(self, **changes) -> "SearchState":
    return dataclasses.replace(self, **changes)

  @property
  def best(self) -> Member:
    """The highest-scoring member (the first of equals)."""
    return max(self.population, key=lambda m: m.score)

  def counts(self) -> dict[str, int]:
    out = {k: 0 for k in KINDS}
    for t in self.trials:
      out[t.kind] += 1
    return out

  @property
  def invalid_reply_rate(self) -> float:
    """Rejected replies over attempts (0 before the first attempt)."""
    if not self.trials:
      return 0.0
    return sum(t.kind in REJECTED_KINDS for t in self.trials) / len(self.trials)

  def known_scores(self) -> dict[str, float]:
    """Every genotype scored so far and its score: a child seen before is not scored again."""
    out = {m.genotype: m.score for m in self.initial}
    for t in self.trials:
      if t.child is not None and t.score is not None:
        out[t.child] = t.score
    return out

  # --- serialisation (checkpoints) ------------------------------------------------------------
  def to_json(self, with_trials: bool = True) -> dict[str, Any]:
    d = {"iteration": self.iteration, "key": list(self.key),
         "population": [dataclasses.asdict(m) for m in self.population],
         "initial": [dataclasses.asdict(m) for m in self.initial],
         "memory": [dataclasses.asdict(r) for r in self.memory],
         "evaluations": self.evaluations, "num_trials": len(self.trials)}
    if with_trials:
      d["trials"] = [t.to_json() for t in self.trials]
    return d

  @classmethod
  def from_json(cls, d: dict[str, Any], trials: Iterable[Trial] | None = None) -> "SearchState":
    trials = tuple(trials) if trials is not None else tuple(Trial.from_json(t) for t in d["trials"])
    if len(trials) != d["num_trials"]:
      raise ValueError(f"the checkpoint counts {d['num_trials']} trials but {len(trials)} were "
                       "given.")
    return cls(iteration=d["iteration"], key=tuple(d["key"]),
               population=tuple(Member(**m) for m in d["population"]),
               initial=tuple(Member(**m) for m in d["initial"]),
               trials=trials, memory=tuple(Reflection(**r) for r in d["memory"]),
               evaluations=d["evaluations"])


# --- keys ---------------------------------------------------------------------------------------


def _key_data(key: jax.Array) -> tuple[int, ...]:
  return tuple(int(x) for x in np.asarray(jax.random.key_data(key)).ravel())


def _key(data: Sequence[int]) -> jax.Array:
  return jax.random.wrap_key_data(np.asarray(data, np.uint32))


def numpy_rng(key_data: Sequence[int], purpose: int = 0) -> np.random.Generator:
  """A NumPy generator determined by a key's data and a purpose number."""
  return np.random.default_rng([*map(int, key_data), purpose])


def initial_key(seed: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
  """(state key, population key) from the run's seed, split by purpose."""
  state_key, population_key = jax.random.split(jax.random.key(seed))
  return _key_data(state_key), _key_data(population_key)


# --- pure steps ---------------------------------------------------------------------------------


def init_state(population: Sequence[tuple[str, float]], key: tuple[int, ...]) -> SearchState:
  """The state before the first attempt, from the scored initial population.

  Raises:
    ValueError: for an empty population, a genotype listed twice or a non-finite score.
  """
  if not population:
    raise ValueError("the initial population is empty.")
  genotypes = [g for g, _ in population]
  if len(set(genotypes)) != len(genotypes):
    raise ValueError("the initial population lists a genotype twice.")
  bad = [(g, s) for g, s in population if not math.isfinite(s)]
  if bad:
    raise ValueError(f"the initial member {bad[0][0]} has the non-finite score {bad[0][1]}.")
  members = tuple(Member(g, float(s), -1) for g, s in population)
  return SearchState(iteration=0, key=key, population=members, initial=members,
                     evaluations=len(members))


def plan_step(state: SearchState, num_proposals: int, *, selection: str = "uniform",
              temperatures: Sequence[float] = TEMPERATURES) -> tuple[SearchState, tuple[Proposal, ...]]:
  """Draws ``num_proposals`` parents (distinct where the population allows), temperatures and
  seeds from the state's key; returns the state with its key advanced, and the proposals.

  Args:
    state: the state.
    num_proposals: K, the attempts of this step.
    selection: ``uniform`` (the paper's) or ``best`` (the K best members; [P] Table 6).
    temperatures: the values each call's temperature is drawn from, uniformly.
  """
  if num_proposals < 1:
    raise ValueError(f"a step needs at least one proposal, got {num_proposals}.")
  next_key, step_key = jax.random.split(_key(state.key))
  rng = numpy_rng(_key_data(step_key))
  n = len(state.population)
  if selection == "uniform":
    if num_proposals <= n:
      idx = rng.choice(n, size=num_proposals, replace=False)
    else:
      idx = rng.integers(n, size=num_proposals)
  elif selection == "best":
    order = sorted(range(n), key=lambda i: (-state.population[i].score, i))
    idx = [order[i % n] for i in range(num_proposals)]
  else:
    raise ValueError(f"unknown parent selection {selection!r}; valid: uniform, best.")
  temps = rng.choice(np.asarray(temperatures, np.float64), size=(num_proposals, 2))
  seeds = rng.integers(_SEED_RANGE, size=(num_proposals, 2))
  proposals = tuple(
      Proposal(state.population[int(i)], float(t[0]), float(t[1]), int(s[0]), int(s[1]))
      for i, t, s in zip(idx, temps, seeds))
  return state.replace(key=_key_data(next_key)), proposals


def apply_step(state: SearchState, trials: Sequence[Trial], *, population_size: int,
               memory_size: int, evaluations: int) -> SearchState:
  """The state after one step's attempts, taken in order.

  Args:
    state: the state the step was planned from (key already advanced).
    trials: the step's attempts; ``added`` is recomputed here.
    population_size: N.
    memory_size: reflections kept (at least the number the prompts show).
    evaluations: proxy evaluations the step did.
  """
  population = list(state.population)
  memory = list(state.memory)
  done = []
  for t in trials:
    added = False
    if t.kind == "ok":
      if t.child in {m.genotype for m in population}:
        t = dataclasses.replace(t, kind="duplicate",
                                error=t.error or "The child is already in the population.")
      else:
        population.append(Member(t.child, float(t.score), t.iteration))
        added = True
        if len(population) > population_size:
          worst = min(range(len(population)), key=lambda i: (population[i].score, i))
          added = worst != len(population) - 1
          population.pop(worst)
    done.append(dataclasses.replace(t, added=added))
    if t.reflection is not None:
      memory.append(Reflection(t.reflection, t.parent, t.child,
                               None if t.score is None else t.score - t.parent_score, t.error))
  memory = memory[-memory_size:] if memory_size > 0 else []
  return state.replace(iteration=state.iteration + len(trials), population=tuple(population),
                       trials=state.trials + tuple(done), memory=tuple(memory),
                       evaluations=state.evaluations + evaluations)
