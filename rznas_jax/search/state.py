"""The search state: one immutable value, and the pure functions that step it (DESIGN.md, 7).

`SearchState` holds everything a search is: the iteration (mutation attempts done), its PRNG key,
the population, every trial (parent, child, score, error, reflection, LLM call ids), the
reflection memory and the initial population. `plan_step` draws what one step needs from the
state's key (parents, temperatures, seeds for the LLM calls); `apply_step` returns the state after
the step's attempts. Neither talks to the world; `rznas_jax.search.driver.run` does the I/O.

Population rules (METHOD.md §2.1): steady state; a valid, new child is appended and the lowest
score is dropped once the population exceeds N (the first of equal lowest scores, i.e. the
oldest); a child already in the population is not added again (§3.3 decision).

With an aggregate fitness (`rznas_jax.fitness`, e.g. ``rank:synflow+naswot+flops`` or ``az_nas``)
a member's score is not a number of its own but its rank aggregate over the *archive*, every
architecture evaluated so far (the initial population and every child scored; a child seen
before is not added twice). Members and trials then carry their component scores; after each
step the archive takes the step's children, every member is rescored against it, and the worst
are dropped until N remain (ties: the oldest first). A trial's score is its child's aggregate in
the archive of its step; its parent score is the parent's when the step was planned.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Iterable, Sequence

import jax
import numpy as np

from rznas_jax import fitness as fitness_lib
from rznas_jax.fitness import archive_scores
from rznas_jax.search.prompts import ParentHistory, Reflection

# Kinds of attempt. The first group are rejected replies (the invalid-reply rate counts them).
REJECTED_KINDS = ("empty", "no_json", "no_arch", "invalid")
OTHER_KINDS = ("ok", "duplicate", "proxy_failed", "llm_failed")
KINDS = REJECTED_KINDS + OTHER_KINDS
# Attempts whose child reached the proxy (or its cache): the child counts as evaluated.
EVALUATED_KINDS = ("ok", "duplicate", "proxy_failed")
TRIED_SHOWN = 8  # children of a parent that its mutation prompt lists
TEMPERATURES = (0.2, 0.4, 0.6, 0.8, 1.0)  # METHOD.md §2.4: one drawn per call
_SEED_RANGE = 2**31 - 1


Components = tuple[float, ...]


def components_to_json(components: Components | None) -> list[float | str] | None:
  """Component scores as JSON: non-finite values as text (``'-inf'``, ``'nan'``), as in
  ``scores.jsonl``, so that the file is strict JSON and reads back exactly."""
  if components is None:
    return None
  return [float(x) if math.isfinite(x) else repr(float(x)) for x in components]


def components_from_json(value: Sequence[float | str] | None) -> Components | None:
  return None if value is None else tuple(float(x) for x in value)


@dataclasses.dataclass(frozen=True)
class Member:
  """A population member: its genotype, score and the iteration it was added (-1: initial).

  Attributes:
    genotype: its canonical genotype.
    score: the proxy's score, or for an aggregate fitness its aggregate over the archive as of
      the last step.
    born: the iteration that added it (-1: the initial population).
    components: for an aggregate fitness, its score on each component (aligned with
      ``Fitness.components``); None for a single proxy.
  """
  genotype: str
  score: float
  born: int
  components: Components | None = None

  def to_json(self) -> dict[str, Any]:
    d: dict[str, Any] = {"genotype": self.genotype, "score": self.score, "born": self.born}
    if self.components is not None:
      d["components"] = components_to_json(self.components)
    return d

  @classmethod
  def from_json(cls, d: dict[str, Any]) -> "Member":
    return cls(d["genotype"], d["score"], d["born"], components_from_json(d.get("components")))


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
    parent, parent_score: the parent, and its score when the step was planned.
    child: the child's canonical genotype when the reply named a valid one, else None.
    score: the child's proxy score when it was scored, else None (an aggregate fitness: the
      child's aggregate in the archive after its step).
    kind: one of `KINDS`.
    error: why the attempt produced no new member (for reflection), else None.
    added: whether the child entered the population.
    temperature: of the mutation call (None for random mutation).
    reflection: the reflection's advice, or None.
    mutation_call, reflection_call: LLM call ids, or None.
    components: an aggregate fitness's component scores of the child, when it was scored.
    reflection_error: why the reflection call failed, when it did (its advice is then None).
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
  components: Components | None = None
  reflection_error: str | None = None

  def to_json(self) -> dict[str, Any]:
    d = dataclasses.asdict(self)
    if self.reflection_error is None:
      del d["reflection_error"]  # written only when a reflection call failed
    if self.components is None:
      del d["components"]  # a single proxy's trials read as they always did
    else:
      d["components"] = components_to_json(self.components)
    return d

  @classmethod
  def from_json(cls, d: dict[str, Any]) -> "Trial":
    d = dict(d)
    d["components"] = components_from_json(d.get("components"))
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

  def archive(self) -> dict[str, Components]:
    """An aggregate fitness's archive: every evaluated genotype and its component scores, in the
    order first evaluated (empty for a single proxy, whose members carry no components)."""
    out = {m.genotype: m.components for m in self.initial if m.components is not None}
    for t in self.trials:
      if t.child is not None and t.components is not None and t.child not in out:
        out[t.child] = t.components
    return out

  def evaluated_scores(self, fitness: fitness_lib.Fitness | None = None) -> dict[str, float | None]:
    """Every genotype evaluated so far and its score now (None: the proxy failed on it), in the
    order first evaluated; for an aggregate fitness, each one's aggregate over the archive."""
    if fitness is not None and fitness.is_aggregate:
      return archive_scores(self.archive(), fitness)
    out: dict[str, float | None] = {m.genotype: m.score for m in self.initial}
    for t in self.trials:
      if t.child is not None and t.kind in EVALUATED_KINDS and out.get(t.child) is None:
        out[t.child] = t.score
    return out

  @property
  def duplicate_attempts(self) -> int:
    """Attempts whose valid child had been evaluated before (a member, the parent itself, or a
    child scored and dropped since, or earlier in the same step): LLM calls that taught the
    search nothing new."""
    seen = {m.genotype for m in self.initial}
    count = 0
    for t in self.trials:
      if t.child is None or t.kind not in EVALUATED_KINDS:
        continue
      if t.child in seen:
        count += 1
      seen.add(t.child)
    return count

  @property
  def duplicate_rate(self) -> float:
    """`duplicate_attempts` over attempts (0 before the first attempt)."""
    return self.duplicate_attempts / len(self.trials) if self.trials else 0.0

  # --- serialisation (checkpoints) ------------------------------------------------------------
  def to_json(self, with_trials: bool = True) -> dict[str, Any]:
    d = {"iteration": self.iteration, "key": list(self.key),
         "population": [m.to_json() for m in self.population],
         "initial": [m.to_json() for m in self.initial],
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
               population=tuple(Member.from_json(m) for m in d["population"]),
               initial=tuple(Member.from_json(m) for m in d["initial"]),
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


def step_archive(state: "SearchState",
                 children: Iterable[tuple[str | None, Components | None]]) -> dict[str, Components]:
  """The archive once a step's children, (genotype, components) pairs in attempt order, are in
  it (a pair without components, a child that was not scored, is skipped)."""
  archive = state.archive()
  for child, components in children:
    if child is not None and components is not None and child not in archive:
      archive[child] = components
  return archive


def init_state(population: Sequence[tuple[str, Any]], key: tuple[int, ...],
               fitness: fitness_lib.Fitness | None = None) -> SearchState:
  """The state before the first attempt, from the scored initial population.

  Args:
    population: (genotype, score) pairs for a single proxy; for an aggregate fitness,
      (genotype, component scores) pairs, the scores aligned with ``fitness.components`` (a
      non-finite component is allowed: it ranks lowest).
    key: the state's key data (`initial_key`).
    fitness: the fitness, or None for a single proxy.

  Raises:
    ValueError: for an empty population, a genotype listed twice or a non-finite score.
  """
  if not population:
    raise ValueError("the initial population is empty.")
  genotypes = [g for g, _ in population]
  if len(set(genotypes)) != len(genotypes):
    raise ValueError("the initial population lists a genotype twice.")
  if fitness is not None and fitness.is_aggregate:
    archive = {g: tuple(float(x) for x in c) for g, c in population}
    if any(len(c) != len(fitness.components) for c in archive.values()):
      raise ValueError(f"each initial member needs {len(fitness.components)} component scores.")
    scores = archive_scores(archive, fitness)
    members = tuple(Member(g, scores[g], -1, c) for g, c in archive.items())
  else:
    bad = [(g, s) for g, s in population if not math.isfinite(s)]
    if bad:
      raise ValueError(f"the initial member {bad[0][0]} has the non-finite score {bad[0][1]}.")
    members = tuple(Member(g, float(s), -1) for g, s in population)
  return SearchState(iteration=0, key=key, population=members, initial=members,
                     evaluations=len(members))


def parent_history(state: SearchState, parent: Member, neighbours: Sequence[str],
                   fitness: fitness_lib.Fitness | None = None, *,
                   tried_shown: int = TRIED_SHOWN) -> ParentHistory:
  """What a mutation prompt shows about ``parent`` beyond its score.

  Args:
    state: the state the step was planned from.
    parent: the member to mutate.
    neighbours: the parent's one-edit neighbours (`NB201SearchSpace.neighbours`; [] for spaces
      without a short list).
    fitness: the fitness, or None for a single proxy.
    tried_shown: at most this many of the parent's last evaluated children are listed.

  Returns:
    A `ParentHistory`: for an aggregate, the parent's component scores and their percentiles
    in the archive; the parent's last evaluated children (oldest first) and the evaluated
    one-edit neighbours not among them, each with its score now.
  """
  scores = state.evaluated_scores(fitness)
  components: list[tuple[str, float, float]] = []
  if fitness is not None and fitness.is_aggregate and parent.components is not None:
    archive = state.archive()
    genotypes = list(archive)
    at = genotypes.index(parent.genotype)
    for i, name in enumerate(fitness.components):
      column = np.array([archive[g][i] for g in genotypes], np.float64)
      components.append((name, parent.components[i],
                         float(fitness_lib.percentiles(column)[at])))
  tried: dict[str, float | None] = {}
  for t in reversed(state.trials):
    if len(tried) == tried_shown:
      break
    if t.parent == parent.genotype and t.child is not None and t.kind in EVALUATED_KINDS:
      tried.setdefault(t.child, scores.get(t.child))
  near = tuple((g, scores[g]) for g in neighbours if g in scores and g not in tried)
  return ParentHistory(components=tuple(components), evaluated=len(scores),
                       tried=tuple(reversed(tried.items())), neighbours=near)


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
               memory_size: int, evaluations: int,
               fitness: fitness_lib.Fitness | None = None) -> SearchState:
  """The state after one step's attempts, taken in order.

  Args:
    state: the state the step was planned from (key already advanced).
    trials: the step's attempts; ``added`` is recomputed here, and for an aggregate fitness
      ``score`` too (from ``components``).
    population_size: N.
    memory_size: reflections kept (at least the number the prompts show).
    evaluations: proxy evaluations the step did.
    fitness: the fitness, or None for a single proxy.
  """
  if fitness is not None and fitness.is_aggregate:
    population, done = _aggregate_population(state, trials, population_size, fitness)
  else:
    population, done = _single_proxy_population(state, trials, population_size)
  memory = list(state.memory)
  for t in done:
    if t.reflection is not None:
      memory.append(Reflection(t.reflection, t.parent, t.child,
                               None if t.score is None else t.score - t.parent_score, t.error))
  memory = memory[-memory_size:] if memory_size > 0 else []
  return state.replace(iteration=state.iteration + len(trials), population=tuple(population),
                       trials=state.trials + tuple(done), memory=tuple(memory),
                       evaluations=state.evaluations + evaluations)


_IN_POPULATION = "The child is already in the population."


def _single_proxy_population(state, trials, population_size):
  """Each child in turn: appended when new, then the worst dropped once over N."""
  population = list(state.population)
  done = []
  for t in trials:
    added = False
    if t.kind == "ok":
      if t.child in {m.genotype for m in population}:
        t = dataclasses.replace(t, kind="duplicate", error=t.error or _IN_POPULATION)
      else:
        population.append(Member(t.child, float(t.score), t.iteration))
        added = True
        if len(population) > population_size:
          worst = min(range(len(population)), key=lambda i: (population[i].score, i))
          added = worst != len(population) - 1
          population.pop(worst)
    done.append(dataclasses.replace(t, added=added))
  return population, done


def _aggregate_population(state, trials, population_size, fitness):
  """The step's new children appended, every member rescored over the archive with the step's
  children in it, then the worst dropped until N remain (the first of equals: the oldest)."""
  scores = archive_scores(step_archive(state, ((t.child, t.components) for t in trials)), fitness)
  population = list(state.population)
  present = {m.genotype for m in population}
  staged = []
  for t in trials:
    if t.kind == "ok":
      if t.child in present:
        t = dataclasses.replace(t, kind="duplicate", error=t.error or _IN_POPULATION)
      else:
        population.append(Member(t.child, 0.0, t.iteration, t.components))
        present.add(t.child)
    staged.append(t)
  population = [dataclasses.replace(m, score=scores[m.genotype]) for m in population]
  while len(population) > population_size:
    population.pop(min(range(len(population)), key=lambda i: (population[i].score, i)))
  kept = {(m.genotype, m.born) for m in population}
  done = [dataclasses.replace(t, score=scores.get(t.child) if t.child is not None else None,
                              added=t.kind == "ok" and (t.child, t.iteration) in kept)
          for t in staged]
  return population, done
