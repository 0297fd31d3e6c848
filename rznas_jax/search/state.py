"""The search state: one immutable value, and the pure functions that step it (docs/search.md).

`SearchState` holds everything a search is: the iteration (mutation attempts done), its PRNG key,
the population, every trial (parent, child, score, error, reflection, LLM call ids), the
reflection memory and the initial population. `plan_step` draws what one step needs from the
state's key (parents, temperatures, seeds for the LLM calls); `apply_step` returns the state after
the step's attempts. Neither talks to the world; `rznas_jax.search.driver.run` does the I/O and
`rznas_jax.search.run_folder` the files.

Every rule of the search is here, as a pure function of the state, so that the driver only calls
it and a report replays it (`rznas_jax.report.history`): deduplication (`screen_children`), the
proxy-failure rule (`take_scores`), the population rule (`population_after`) and the count of
failed LLM calls in a row (`apply_step`, `llm_failure_stop`), which the checkpoint keeps so that a
resumed run goes on counting. Besides the standard library this module imports NumPy and two
modules that import only NumPy themselves: `rznas_jax.fitness`, and `rznas_jax.search.keys` (JAX's
key derivation, bit for bit), so reports replay the search's rules without JAX.

Population rules (the RZ-NAS paper, §3.2 and Algorithm 1): steady state; a valid, new child is
appended and the lowest score is dropped once the population exceeds N (the first of equal lowest
scores, i.e. the oldest); a child already in the population is not added again (our choice: the
paper and its code do not deduplicate; docs/search.md).

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
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from rznas_jax import fitness as fitness_lib
from rznas_jax.fitness import archive_scores
from rznas_jax.search import keys as keys_lib

# Kinds of attempt. The first group are rejected replies (the invalid-reply rate counts them).
REJECTED_KINDS = ("empty", "no_json", "no_arch", "invalid")
OTHER_KINDS = ("ok", "duplicate", "proxy_failed", "llm_failed")
KINDS = REJECTED_KINDS + OTHER_KINDS
# Attempts whose child reached the proxy (or its cache): the child counts as evaluated.
EVALUATED_KINDS = ("ok", "duplicate", "proxy_failed")
TRIED_SHOWN = 8  # children of a parent that its mutation prompt lists
TEMPERATURES = (0.2, 0.4, 0.6, 0.8, 1.0)  # the RZ-NAS paper, App. A.4.3: one drawn per call
_SEED_RANGE = 2**31 - 1


Components = tuple[float, ...]


def json_float(x: float) -> float | str:
  """A score as JSON: a finite value as a number, a non-finite one as text (``'-inf'``,
  ``'nan'``), so that the files are strict JSON and read back exactly (``float(text)``)."""
  x = float(x)
  return x if math.isfinite(x) else repr(x)


def components_to_json(components: Components | None) -> list[float | str] | None:
  """Component scores as JSON (`json_float`), as in ``scores.jsonl``."""
  if components is None:
    return None
  return [json_float(x) for x in components]


def components_from_json(value: Sequence[float | str] | None) -> Components | None:
  return None if value is None else tuple(float(x) for x in value)


@dataclasses.dataclass(frozen=True)
class Reflection:
  """One entry of the reflection memory: the advice and the attempt it is about."""
  text: str
  parent: str
  child: str | None
  score_change: float | None
  error: str | None


@dataclasses.dataclass(frozen=True)
class ParentHistory:
  """What the search knows around a parent, beyond its score (`parent_history`).

  Attributes:
    components: ``(component, score, percentile)`` for each component of an aggregate fitness
      (the percentile among the evaluated architectures, 100 = the best); () for a single proxy.
    evaluated: how many architectures were evaluated (the percentiles' reference set).
    tried: ``(child, score)``: the parent's last children that were evaluated, oldest first
      (score None: the proxy failed on it).
    neighbours: ``(genotype, score)``: the parent's one-edit neighbours already evaluated and not
      in ``tried``.
  """
  components: tuple[tuple[str, float, float], ...] = ()
  evaluated: int = 0
  tried: tuple[tuple[str, float | None], ...] = ()
  neighbours: tuple[tuple[str, float | None], ...] = ()


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
    mutation_failures_in_a_row: failed mutation calls since the last step that had a mutation
      call answer (`apply_step`; `llm_failure_stop` ends the search when it reaches the limit).
    reflection_failures_in_a_row: the same for reflection calls.
  """
  iteration: int
  key: tuple[int, ...]
  population: tuple[Member, ...]
  initial: tuple[Member, ...]
  trials: tuple[Trial, ...] = ()
  memory: tuple[Reflection, ...] = ()
  evaluations: int = 0
  mutation_failures_in_a_row: int = 0
  reflection_failures_in_a_row: int = 0

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
    return add_to_archive(out, ((t.child, t.components) for t in self.trials))

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
         "evaluations": self.evaluations, "num_trials": len(self.trials),
         "mutation_failures_in_a_row": self.mutation_failures_in_a_row,
         "reflection_failures_in_a_row": self.reflection_failures_in_a_row}
    if with_trials:
      d["trials"] = [t.to_json() for t in self.trials]
    return d

  @classmethod
  def from_json(cls, d: dict[str, Any], trials: Iterable[Trial] | None = None) -> "SearchState":
    """The state `to_json` wrote, with ``trials`` when it was written without them.

    A checkpoint written before the failure counts were kept reads with counts of 0.
    """
    trials = tuple(trials) if trials is not None else tuple(Trial.from_json(t) for t in d["trials"])
    if len(trials) != d["num_trials"]:
      raise ValueError(f"the checkpoint counts {d['num_trials']} trials but {len(trials)} were "
                       "given.")
    return cls(iteration=d["iteration"], key=tuple(d["key"]),
               population=tuple(Member.from_json(m) for m in d["population"]),
               initial=tuple(Member.from_json(m) for m in d["initial"]),
               trials=trials, memory=tuple(Reflection(**r) for r in d["memory"]),
               evaluations=d["evaluations"],
               mutation_failures_in_a_row=d.get("mutation_failures_in_a_row", 0),
               reflection_failures_in_a_row=d.get("reflection_failures_in_a_row", 0))


# --- keys ---------------------------------------------------------------------------------------


def numpy_rng(key_data: Sequence[int], purpose: int = 0) -> np.random.Generator:
  """A NumPy generator determined by a key's data and a purpose number."""
  return np.random.default_rng([*map(int, key_data), purpose])


def initial_key(seed: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
  """(state key, population key) from the run's seed, split by purpose."""
  state_key, population_key = keys_lib.split(keys_lib.seed_key(seed))
  return state_key, population_key


# --- pure steps ---------------------------------------------------------------------------------


def add_to_archive(archive: Mapping[str, Components],
                   children: Iterable[tuple[str | None, Components | None]]
                   ) -> dict[str, Components]:
  """A new archive: ``archive`` and ``children``, (genotype, components) pairs in attempt order;
  a genotype keeps its first components, and a pair without components (a child that was not
  scored) is skipped."""
  out = dict(archive)
  for child, components in children:
    if child is not None and components is not None and child not in out:
      out[child] = components
  return out


def step_archive(state: "SearchState",
                 children: Iterable[tuple[str | None, Components | None]]) -> dict[str, Components]:
  """The archive once a step's children, (genotype, components) pairs in attempt order, are in
  it (`add_to_archive`)."""
  return add_to_archive(state.archive(), children)


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
  next_key, step_key = keys_lib.split(state.key)
  rng = numpy_rng(step_key)
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
  return state.replace(key=next_key), proposals


# --- deduplication and the proxy-failure rule ---------------------------------------------------


_DUPLICATE = ("The child {child} is already in the population (or is the parent); propose an "
              "architecture that is not there yet.")


def _with_score(trial: Trial, scores, aggregate: bool) -> Trial:
  """``trial`` with a proxy's score, or an aggregate's component scores."""
  if aggregate:
    return dataclasses.replace(trial, components=tuple(float(x) for x in scores))
  return dataclasses.replace(trial, score=float(scores))


def screen_children(state: SearchState, trials: Sequence[Trial],
                    fitness: fitness_lib.Fitness | None = None
                    ) -> tuple[tuple[Trial, ...], tuple[str, ...]]:
  """Deduplication (our choice, docs/search.md): which of a step's valid children are scored.

  A child that is a member, the parent itself, or a new child earlier in the same step becomes
  a ``duplicate`` (an error for its reflection says so); a child evaluated before keeps its
  known score (for an aggregate fitness, its components), duplicate or not, and is not scored
  again.

  Args:
    state: the state the step was planned from.
    trials: the step's attempts after parsing: ``kind`` ``ok`` for a valid child, no scores yet.
    fitness: the fitness, or None for a single proxy.

  Returns:
    (the trials, the new children to score, each once, in attempt order).
  """
  aggregate = fitness is not None and fitness.is_aggregate
  members = {m.genotype for m in state.population}
  known = state.archive() if aggregate else state.known_scores()
  new: list[str] = []
  out = []
  for t in trials:
    if t.kind == "ok":
      if t.child in members or t.child in new or t.child == t.parent:
        t = dataclasses.replace(t, kind="duplicate", error=_DUPLICATE.format(child=t.child))
        if t.child in known:
          t = _with_score(t, known[t.child], aggregate)
      elif t.child in known:
        t = _with_score(t, known[t.child], aggregate)  # seen before, dropped since
      else:
        new.append(t.child)
    out.append(t)
  return tuple(out), tuple(new)


def take_scores(state: SearchState, trials: Sequence[Trial],
                scores: Mapping[str, Sequence[float]], *, proxy: str,
                fitness: fitness_lib.Fitness | None = None) -> tuple[Trial, ...]:
  """A step's trials once its new children are scored, with the proxy-failure rule.

  Args:
    state: the state the step was planned from.
    trials: `screen_children`'s trials.
    scores: each new child's scores, one per component of the fitness (one for a single proxy).
    proxy: the proxy's (or fitness's) name, for the error of a failed score.
    fitness: the fitness, or None for a single proxy.

  Returns:
    The trials with their scores. A single proxy's non-finite score of a valid child is a
    ``proxy_failed`` attempt whose child is not added (its score None). For an aggregate fitness
    a non-finite component is no failure, it ranks lowest; each scored child's ``score`` is its
    aggregate in the archive of this step, as `apply_step` will find it (a duplicate of a child
    new in this step takes its components too).
  """
  aggregate = fitness is not None and fitness.is_aggregate
  out = []
  for t in trials:
    if t.child in scores and (t.kind == "ok" or (aggregate and t.kind == "duplicate")):
      t = _with_score(t, scores[t.child] if aggregate else scores[t.child][0], aggregate)
    out.append(t)
  if aggregate:
    step_scores = archive_scores(step_archive(state, ((t.child, t.components) for t in out)),
                                 fitness)
    return tuple(t if t.components is None else dataclasses.replace(t, score=step_scores[t.child])
                 for t in out)
  return tuple(
      dataclasses.replace(t, kind="proxy_failed", score=None,
                          error=(f"The proxy {proxy} returned {t.score} for the child {t.child}; "
                                 "it is not added."))
      if t.kind == "ok" and not math.isfinite(t.score) else t for t in out)


# --- the step's result --------------------------------------------------------------------------


def apply_step(state: SearchState, trials: Sequence[Trial], *, population_size: int,
               memory_size: int, evaluations: int,
               fitness: fitness_lib.Fitness | None = None) -> SearchState:
  """The state after one step's attempts, taken in order.

  The population follows `population_after`. The failed LLM calls in a row go on counting when
  every attempt of the step failed its mutation call (its reflection call), and start again from
  0 otherwise; a step without LLM calls (random mutation, reflection off) has no failure, so the
  counts stay 0.

  Args:
    state: the state the step was planned from (key already advanced).
    trials: the step's attempts (`take_scores`); ``added`` is recomputed here, and for an
      aggregate fitness ``score`` too (from ``components``).
    population_size: N.
    memory_size: reflections kept (at least the number the prompts show).
    evaluations: proxy evaluations the step did.
    fitness: the fitness, or None for a single proxy.
  """
  archive = None
  if fitness is not None and fitness.is_aggregate:
    archive = step_archive(state, ((t.child, t.components) for t in trials))
  population, done = population_after(state.population, trials, population_size, fitness=fitness,
                                      archive=archive)
  memory = list(state.memory)
  for t in done:
    if t.reflection is not None:
      memory.append(Reflection(t.reflection, t.parent, t.child,
                               None if t.score is None else t.score - t.parent_score, t.error))
  memory = memory[-memory_size:] if memory_size > 0 else []
  every = lambda failed: bool(trials) and all(failed(t) for t in trials)
  return state.replace(
      iteration=state.iteration + len(trials), population=population,
      trials=state.trials + done, memory=tuple(memory),
      evaluations=state.evaluations + evaluations,
      mutation_failures_in_a_row=(state.mutation_failures_in_a_row + len(trials)
                                  if every(lambda t: t.kind == "llm_failed") else 0),
      reflection_failures_in_a_row=(state.reflection_failures_in_a_row + len(trials)
                                    if every(lambda t: t.reflection_error is not None) else 0))


def llm_failure_stop(state: SearchState, max_failures: int) -> str | None:
  """Why the search stops because the LLM keeps failing, or None to go on.

  Args:
    state: the state after a step (`apply_step`).
    max_failures: ``search.max_llm_failures``: this many failed mutation calls in a row, or
      failed reflection calls in a row, stop the search.

  Returns:
    One sentence that gives the count and the last failure's message, or None.
  """
  if state.mutation_failures_in_a_row >= max_failures:
    what, count, last = "mutation", state.mutation_failures_in_a_row, state.trials[-1].error
  elif state.reflection_failures_in_a_row >= max_failures:
    what, count = "reflection", state.reflection_failures_in_a_row
    last = state.trials[-1].reflection_error
  else:
    return None
  return f"{count} {what} calls to the LLM in a row failed; the last: {last}"


# --- the population rule ------------------------------------------------------------------------


_IN_POPULATION = "The child is already in the population."


def population_after(population: Sequence[Member], trials: Sequence[Trial], population_size: int,
                     *, fitness: fitness_lib.Fitness | None = None,
                     archive: Mapping[str, Components] | None = None
                     ) -> tuple[tuple[Member, ...], tuple[Trial, ...]]:
  """The population rule (the RZ-NAS paper, §3.2): the population after a step's attempts.

  A single proxy takes each child in turn: a valid, new child is appended, then the lowest score
  is dropped once the population exceeds N (the first of equal lowest, i.e. the oldest). An
  aggregate fitness appends the step's new children, rescores every member over ``archive``,
  then drops the lowest until N remain. Either way a valid child already in the population
  becomes a ``duplicate``.

  Args:
    population: the members before the step.
    trials: the step's attempts, in order.
    population_size: N.
    fitness: the fitness, or None for a single proxy.
    archive: an aggregate fitness's archive with the step's children in it (`step_archive`).

  Returns:
    (the members after the step, the trials with ``added`` set and, for an aggregate fitness,
    ``score`` the child's aggregate over ``archive``).
  """
  if fitness is not None and fitness.is_aggregate:
    if archive is None:
      raise ValueError("an aggregate fitness's population rule needs the step's archive.")
    return _aggregate_population(population, trials, population_size, fitness, archive)
  return _single_proxy_population(population, trials, population_size)


def _single_proxy_population(population, trials, population_size):
  """Each child in turn: appended when new, then the worst dropped once over N."""
  population = list(population)
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
  return tuple(population), tuple(done)


def _aggregate_population(population, trials, population_size, fitness, archive):
  """The step's new children appended, every member rescored over the archive with the step's
  children in it, then the worst dropped until N remain (the first of equals: the oldest)."""
  scores = archive_scores(archive, fitness)
  population = list(population)
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
  return tuple(population), tuple(done)
