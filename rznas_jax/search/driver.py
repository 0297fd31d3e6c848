"""`run(config, workdir)`: the RZ-NAS search loop, the only part of the search with side effects.

One step (K = ``search.proposals_per_step`` attempts):

1. `state.plan_step` draws K parents, temperatures and seeds from the state's key (pure);
2. K mutation prompts go to the LLM at once (`LLMClient.complete_many`), or, for the
   ``random`` baseline, the space's random mutation makes the K children;
3. replies are parsed and checked (`replies.parse_mutation_reply`; nothing is executed);
4. the valid, new children are scored together in one call of the proxy harness (every
   component of an aggregate fitness; the children's aggregates are then taken over the archive);
5. K reflection prompts go to the LLM at once (LLM mode, reflection on);
6. `state.apply_step` gives the next state (pure), whose trials are appended to
   ``trials.jsonl`` and which is checkpointed atomically.

The run folder:

* ``config.json`` — the run's config (a resumed run must agree on every key but the run length
  and the LLM connection);
* ``checkpoint.json`` — the state without its trials, rewritten atomically after each step;
* ``trials.jsonl`` — every attempt, one JSON line each; a line written after the last
  checkpoint (a crash between the two writes) is dropped on resume;
* ``scores.jsonl`` — every proxy score as soon as it is computed (for an aggregate fitness,
  every component's), so that a crash loses no completed evaluation (the resumed run reads them
  back instead of scoring again);
* ``llm_log.jsonl`` — every LLM exchange (`rznas_jax.llm`), the input of ``replay:``;
* ``summary.json`` — the result (best architecture, score, costs, accuracies, rates, timing,
  the duplicate attempts; for an aggregate fitness, the best member's component scores);
* ``timeline.jsonl`` — ``{"iteration", "wall_seconds"}`` after the initial population and after
  each step, for plots against wall time (not read back: timings are not part of the state).

Running `run` on a folder that holds a checkpoint resumes it. With a deterministic backend
(offline, replay) the resumed run ends in the same state as an uninterrupted one.

In a multi-process run (``jax.distributed``, a TPU pod) process 0 runs this loop, talks to the
LLM and writes every file; every process scores its share of each batch of children
(`rznas_jax.distributed`), so the run folder is the one a single process would write.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
import os
import time
from typing import Any, Callable, Sequence

import jax
import ml_collections
import numpy as np

from rznas_jax import distributed
from rznas_jax import results
from rznas_jax.llm import structured as structured_lib
from rznas_jax.llm.base import Response
from rznas_jax.search import config as config_lib
from rznas_jax.search import prompts
from rznas_jax.search import replies
from rznas_jax.search import spaces as spaces_lib
from rznas_jax.search import state as state_lib

CONFIG_FILE = "config.json"
CHECKPOINT_FILE = "checkpoint.json"
TRIALS_FILE = "trials.jsonl"
SCORES_FILE = "scores.jsonl"
SUMMARY_FILE = "summary.json"
LLM_LOG_FILE = "llm_log.jsonl"
TIMELINE_FILE = "timeline.jsonl"


class SearchAborted(RuntimeError):
  """The run stopped early (e.g. the LLM kept failing); its checkpoint is intact, rerun to resume."""


# --- scoring -----------------------------------------------------------------------------------


class ProxyScorer:
  """Scores genotypes of the run's space with every component of the run's fitness (the proxy
  alone, or each proxy of an aggregate), through the compiled harness.

  Calling it gives an (n, C) float64 array, one column per component (C = 1 for a single
  proxy). A genotype's scores, computed once, are appended to ``scores_path`` at once and never
  computed again within the run (nor after a resume): a single proxy's line is
  ``{"genotype", "score"}``, an aggregate's ``{"genotype", "scores": {component: score}}``, with
  'nan'/'inf' as text.
  """

  def __init__(self, config: ml_collections.ConfigDict, space: spaces_lib.SearchSpace,
               scores_path: str | None = None):
    from rznas_jax import data as data_lib  # pylint: disable=g-import-not-at-top
    images = None if config.data == "gaussian" else data_lib.load_images(config.data)
    self.components = config_lib.fitness_of(config).components
    if isinstance(space, spaces_lib.NB201SearchSpace):
      from rznas_jax import scoring  # pylint: disable=g-import-not-at-top
      from rznas_jax.spaces import nb201  # pylint: disable=g-import-not-at-top
      setting = scoring.NB201Setting(space.dataset, space.channels, space.cells_per_stage)
      self._scorer = scoring.NB201Scorer(list(self.components), setting, images=images,
                                         batch_size=config.batch_size, seed=config.seed,
                                         strategy=config.nb201.strategy)
      self._to_arch = nb201.parse_genotype
    else:
      from rznas_jax import macro_scoring  # pylint: disable=g-import-not-at-top
      self._scorer = macro_scoring.MacroScorer(list(self.components), space.space, images=images,
                                               batch_size=config.batch_size, seed=config.seed)
      self._to_arch = lambda g: g
    self.proxy = config.proxy
    self.scores_path = scores_path
    self.compute = self.score_components  # replaced by a multi-process scorer on a pod's leader
    self.cache: dict[str, tuple[float, ...]] = {}
    self._round: tuple[int, np.ndarray] | None = None
    if scores_path and os.path.exists(scores_path):
      with open(scores_path) as f:
        for number, line in enumerate(f, start=1):
          try:
            entry = json.loads(line)
          except json.JSONDecodeError:
            # A line cut short by a crash, or a damaged file: said, and its cell is scored again.
            logging.warning("Line %d of %s is not JSON (%r); its cell will be scored again.",
                            number, scores_path, line[:80])
            continue
          scores = entry.get("scores", {self.components[0]: entry.get("score")})
          if all(scores.get(c) is not None for c in self.components):
            self.cache[entry["genotype"]] = tuple(float(scores[c]) for c in self.components)

  def score_components(self, genotypes: Sequence[str]) -> np.ndarray:
    """Every component's scores of ``genotypes`` on this process, (n, C); no cache, no file."""
    scores = self._scorer.score([self._to_arch(g) for g in genotypes])
    return np.stack([np.asarray(scores[c], np.float64) for c in self.components], axis=1)

  def score_uncached(self, genotypes: Sequence[str]) -> np.ndarray:
    """One score per genotype on this process, no cache, no file: the unit that
    `rznas_jax.distributed` gathers across processes.

    A single proxy's scores. For an aggregate, C calls with the same genotypes return the C
    components in turn (the first call of such a round scores them all): the leader asks C
    times per batch and every other process answers the same calls, in the same order.
    """
    if len(self.components) == 1:
      return self.score_components(genotypes)[:, 0]
    if self._round is None or self._round[0] == len(self.components):
      self._round = (0, self.score_components(genotypes))
    i, scores = self._round
    self._round = (i + 1, scores)
    return scores[:, i]

  def score_in_rounds(self, score_one: Callable[[Sequence[str]], np.ndarray],
                      genotypes: Sequence[str]) -> np.ndarray:
    """(n, C) from C calls of ``score_one`` (`score_uncached` behind a `distributed.LeaderScorer`)."""
    return np.stack([np.asarray(score_one(genotypes), np.float64) for _ in self.components], axis=1)

  def _line(self, genotype: str, scores: tuple[float, ...]) -> dict[str, Any]:
    if len(self.components) == 1:
      return {"genotype": genotype, "score": _to_json_float(scores[0])}
    return {"genotype": genotype,
            "scores": {c: _to_json_float(s) for c, s in zip(self.components, scores)}}

  def __call__(self, genotypes: Sequence[str]) -> np.ndarray:
    todo = [g for g in dict.fromkeys(genotypes) if g not in self.cache]
    width = len(self.components)
    if todo:
      scores = np.asarray(self.compute(todo), np.float64).reshape(len(todo), width)
      lines = []
      for g, row in zip(todo, scores):
        self.cache[g] = tuple(float(s) for s in row)
        lines.append(json.dumps(self._line(g, self.cache[g])) + "\n")
      if self.scores_path:
        with open(self.scores_path, "a") as f:
          f.writelines(lines)
          f.flush()
          os.fsync(f.fileno())
    return np.array([self.cache[g] for g in genotypes], np.float64).reshape(len(genotypes), width)


def _to_json_float(x: float) -> float | str:
  return x if math.isfinite(x) else repr(x)


# --- files ---------------------------------------------------------------------------------------


def _config_json(config: ml_collections.ConfigDict) -> dict:
  return json.loads(config.to_json_best_effort())


def _check_resumable(workdir: str, config: ml_collections.ConfigDict) -> None:
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(path):
    return
  with open(path) as f:
    saved = config_lib.result_relevant(json.load(f))
  now = config_lib.result_relevant(_config_json(config))
  for key in sorted(set(saved) | set(now)):
    if saved.get(key) != now.get(key):
      raise config_lib.ConfigError(
          f"{workdir} holds a run with config.{key}={saved.get(key)!r}, but this run has "
          f"{now.get(key)!r}; use another --workdir, or the same settings to resume.")


def _read_trials(path: str, count: int) -> list[state_lib.Trial]:
  """The first ``count`` trials of ``trials.jsonl`` (later lines, written after the last
  checkpoint, are not read); the file is not changed."""
  trials = []
  if os.path.exists(path):
    with open(path, "rb") as f:
      for line in f:
        if len(trials) == count:
          break
        trials.append(state_lib.Trial.from_json(json.loads(line)))
  if len(trials) != count:
    raise ValueError(f"{path} holds {len(trials)} trials but the checkpoint counts {count}; the run "
                     "folder is damaged.")
  return trials


def cut_trials_after_checkpoint(workdir: str, count: int) -> int:
  """The repair a resumed run makes before its first step: cuts the lines that a crash left in
  ``trials.jsonl`` after the checkpoint's ``count`` trials (the resumed run redoes those
  attempts), and logs it. Returns how many lines were cut."""
  path = os.path.join(workdir, TRIALS_FILE)
  if not os.path.exists(path):
    return 0
  keep = lines = 0
  with open(path, "rb") as f:
    for line in f:
      lines += 1
      if lines <= count:
        keep += len(line)
  if lines <= count:
    return 0
  with open(path, "r+b") as f:
    f.truncate(keep)
  logging.warning("Cut %d line(s) written after the last checkpoint off %s; the resumed run redoes "
                  "those attempts.", lines - count, path)
  return lines - count


def load_state(workdir: str) -> tuple[state_lib.SearchState | None, float]:
  """(state, wall seconds so far) from a run folder, or (None, 0) when it has no checkpoint.

  Reads only: a resumed run repairs the folder with `cut_trials_after_checkpoint`.
  """
  path = os.path.join(workdir, CHECKPOINT_FILE)
  if not os.path.exists(path):
    return None, 0.0
  with open(path) as f:
    ckpt = json.load(f)
  trials = _read_trials(os.path.join(workdir, TRIALS_FILE), ckpt["state"]["num_trials"])
  return state_lib.SearchState.from_json(ckpt["state"], trials), ckpt["wall_seconds"]


def _save(workdir: str, state: state_lib.SearchState, new_trials: Sequence[state_lib.Trial],
          wall_seconds: float) -> None:
  if new_trials:
    with open(os.path.join(workdir, TRIALS_FILE), "a") as f:
      f.writelines(json.dumps(t.to_json()) + "\n" for t in new_trials)
      f.flush()
      os.fsync(f.fileno())
  results.write_atomic(os.path.join(workdir, CHECKPOINT_FILE),
                       json.dumps({"state": state.to_json(with_trials=False),
                                   "wall_seconds": wall_seconds}))


def _append_timeline(workdir: str, iteration: int, wall_seconds: float) -> None:
  with open(os.path.join(workdir, TIMELINE_FILE), "a") as f:
    f.write(json.dumps({"iteration": iteration, "wall_seconds": round(wall_seconds, 4)}) + "\n")


# --- one step ------------------------------------------------------------------------------------


@dataclasses.dataclass
class _Attempt:
  proposal: state_lib.Proposal
  iteration: int
  child: str | None = None
  kind: str = "ok"
  error: str | None = None
  score: float | None = None
  mutation_call: str | None = None
  reflection: str | None = None
  reflection_call: str | None = None
  reflection_error: str | None = None
  components: tuple[float, ...] | None = None


class Searcher:
  """Holds what a run needs between steps: the space, the scorer, the LLM client, the options."""

  def __init__(self, config: ml_collections.ConfigDict, space: spaces_lib.SearchSpace,
               scorer: Callable[[Sequence[str]], np.ndarray], client: Any | None):
    self.config = config
    self.space = space
    self.scorer = scorer  # genotypes -> (n, C) scores of the fitness's components
    self.client = client
    self.fitness = config_lib.fitness_of(config)
    p = config.prompt
    self.options = prompts.PromptOptions(code=p.code, text=p.text, example=p.example,
                                         system_reflection=p.system_reflection,
                                         reflection=p.reflection, memory=p.memory,
                                         max_output_tokens=p.max_output_tokens,
                                         structured=structured_output(config) != "off")
    self.consecutive_llm_failures = 0
    self.consecutive_reflection_failures = 0

  def _mutate(self, state, attempts: list[_Attempt]) -> None:
    if self.config.search.mutation == "random":
      for a in attempts:
        child = self.space.random_mutation(a.proposal.parent.genotype,
                                           np.random.default_rng(a.proposal.seed))
        a.child, reasons = self.space.check(child)
        if a.child is None:
          a.kind, a.error = "invalid", f"The child {child} is not valid: " + " ".join(reasons)
      return
    requests = [prompts.mutation_request(
        self.space, self.config.proxy, a.proposal.parent.genotype, a.proposal.parent.score,
        state.memory, self.options, temperature=a.proposal.temperature, seed=a.proposal.seed,
        history=state_lib.parent_history(state, a.proposal.parent,
                                         self.space.neighbours(a.proposal.parent.genotype),
                                         self.fitness))
                for a in attempts]
    for a, response in zip(attempts, self.client.complete_many(requests)):
      if isinstance(response, Exception):
        a.kind, a.error = "llm_failed", f"The LLM call failed: {response}"
        continue
      a.mutation_call = response.call_id
      parsed = replies.parse_mutation_reply(response.text, self.space)
      a.child, a.kind, a.error = parsed.genotype, parsed.kind, parsed.error

  def _score(self, state, attempts: list[_Attempt]) -> int:
    aggregate = self.fitness.is_aggregate
    members = {m.genotype for m in state.population}
    known = state.archive() if aggregate else state.known_scores()

    def take(a, scores):  # a known or new child's proxy score, or its components
      if aggregate:
        a.components = tuple(float(x) for x in scores)
      else:
        a.score = float(scores)

    batch: list[str] = []
    for a in attempts:
      if a.kind != "ok":
        continue
      if a.child in members or a.child in batch or a.child == a.proposal.parent.genotype:
        a.kind = "duplicate"
        a.error = (f"The child {a.child} is already in the population (or is the parent); "
                   "propose an architecture that is not there yet.")
        if a.child in known:
          take(a, known[a.child])
      elif a.child in known:
        take(a, known[a.child])  # seen before, dropped since: its score is known
      else:
        batch.append(a.child)
    if batch:
      scores = dict(zip(batch, self.scorer(batch)))
      for a in attempts:
        if a.child in scores and (a.kind == "ok" or (aggregate and a.kind == "duplicate")):
          take(a, scores[a.child] if aggregate else scores[a.child][0])
    if aggregate:
      # Each child's aggregate in the archive of this step, as `state.apply_step` will find it; a
      # non-finite component is no failure, it ranks lowest.
      archive = state_lib.step_archive(state, ((a.child, a.components) for a in attempts))
      step_scores = state_lib.archive_scores(archive, self.fitness)
      for a in attempts:
        if a.components is not None:
          a.score = step_scores[a.child]
      return len(batch)
    for a in attempts:
      if a.kind == "ok" and not math.isfinite(a.score):
        a.kind, a.error = "proxy_failed", (f"The proxy {self.config.proxy} returned {a.score} for "
                                           f"the child {a.child}; it is not added.")
        a.score = None
    return len(batch)

  def _reflect(self, state, attempts: list[_Attempt]) -> None:
    if self.config.search.mutation != "llm" or not self.options.reflection:
      return
    requests = [prompts.reflection_request(
        self.space, self.config.proxy, a.proposal.parent.genotype, a.proposal.parent.score,
        a.child, a.score, a.error, state.memory, self.options,
        temperature=a.proposal.reflection_temperature, seed=a.proposal.reflection_seed)
        for a in attempts]
    for a, response in zip(attempts, self.client.complete_many(requests)):
      if isinstance(response, Response):
        a.reflection, a.reflection_call = response.text.strip(), response.call_id
      else:  # recorded in the trial, and counted with the failed mutation calls
        a.reflection_error = str(response)

  def _count_llm_failures(self, attempts: list[_Attempt]) -> str | None:
    """Counts steps whose mutation calls all failed, and apart from them steps whose reflection
    calls all failed (a run of either reaching `search.max_llm_failures` failed calls stops the
    search); returns the message of the step's last failed call, or None."""
    if self.config.search.mutation != "llm":
      return None
    mutations = [a.error for a in attempts if a.kind == "llm_failed"]
    reflections = [a.reflection_error for a in attempts if a.reflection_error is not None]
    self.consecutive_llm_failures = (self.consecutive_llm_failures + len(mutations)
                                     if len(mutations) == len(attempts) else 0)
    self.consecutive_reflection_failures = (
        self.consecutive_reflection_failures + len(reflections)
        if self.options.reflection and len(reflections) == len(attempts) else 0)
    failed = mutations + reflections
    return failed[-1] if failed else None

  def step(self, state: state_lib.SearchState, num_proposals: int) -> state_lib.SearchState:
    """One step of ``num_proposals`` attempts; returns the next state."""
    s = self.config.search
    state, proposals = state_lib.plan_step(state, num_proposals, selection=s.selection,
                                           temperatures=tuple(s.temperatures))
    attempts = [_Attempt(p, state.iteration + i) for i, p in enumerate(proposals)]
    self._mutate(state, attempts)
    evaluations = self._score(state, attempts)
    self._reflect(state, attempts)
    last_failure = self._count_llm_failures(attempts)
    run = max(self.consecutive_llm_failures, self.consecutive_reflection_failures)
    if last_failure is not None and run >= s.max_llm_failures:
      what = ("mutation" if self.consecutive_llm_failures >= s.max_llm_failures else "reflection")
      raise SearchAborted(f"{run} {what} calls to the LLM in a row failed; the last: "
                          f"{last_failure} The run is saved; fix the cause and rerun to resume.")
    llm = s.mutation == "llm"
    trials = [state_lib.Trial(
        iteration=a.iteration, parent=a.proposal.parent.genotype,
        parent_score=a.proposal.parent.score, child=a.child, score=a.score, kind=a.kind,
        error=a.error, added=False, temperature=a.proposal.temperature if llm else None,
        reflection=a.reflection, mutation_call=a.mutation_call,
        reflection_call=a.reflection_call, components=a.components,
        reflection_error=a.reflection_error) for a in attempts]
    return state_lib.apply_step(state, trials, population_size=s.population,
                                memory_size=max(self.options.memory, 1), evaluations=evaluations,
                                fitness=self.fitness)


# --- the run -------------------------------------------------------------------------------------


def initial_state(config, space, scorer) -> state_lib.SearchState:
  state_key, population_key = state_lib.initial_key(config.seed)
  population = space.random_population(config.search.population, state_lib.numpy_rng(population_key))
  scores = scorer(population)
  fitness = config_lib.fitness_of(config)
  if fitness.is_aggregate:  # every member stays: a non-finite component ranks lowest
    return state_lib.init_state([(g, tuple(map(float, row))) for g, row in zip(population, scores)],
                                state_key, fitness)
  scored = [(g, float(s)) for g, s in zip(population, scores[:, 0]) if math.isfinite(s)]
  if len(scored) < len(population):
    logging.warning("%d initial members got a non-finite %s score and were left out.",
                    len(population) - len(scored), config.proxy)
  return state_lib.init_state(scored, state_key)


def summary(config, space, state: state_lib.SearchState, wall_seconds: float,
            llm_stats: dict | None = None) -> dict[str, Any]:
  """The result of a run as ``summary.json`` holds it."""
  best = state.best
  out: dict[str, Any] = {
      "best_arch": best.genotype, "best_score": best.score, "proxy": config.proxy,
      "space": config.space, "seed": config.seed, "mutation": config.search.mutation,
      "iterations_done": state.iteration, "evaluations": state.evaluations,
      "invalid_reply_rate": state.invalid_reply_rate, "attempts_by_kind": state.counts(),
      "population_size": len(state.population), "wall_seconds": wall_seconds,
      **{k: v for k, v in space.costs(best.genotype).items()},
  }
  if config.space == "nb201":  # the packaged table unless config.benchmark names another
    from rznas_jax.spaces import nb201  # pylint: disable=g-import-not-at-top
    table = benchmark_table(config.benchmark)
    arch = nb201.parse_genotype(best.genotype)
    out["benchmark"] = table.source
    out["benchmark_index"] = table.index(arch)
    out["test_accuracy"] = {d: float(table.lookup([arch], d)[0]) for d in table.accuracy}
    out["test_rank"] = {d: table.rank(arch, d) for d in table.accuracy}  # 1 = best; ties share
    out["benchmark_cells"] = len(table)
  if llm_stats is not None:
    out["llm"] = {**llm_stats, "structured_output": structured_output(config)}
  return out


_TABLES: dict[str, Any] = {}


def benchmark_table(path: str | None):
  """The NB201 table at ``path`` (empty: the packaged NATS-Bench table), read once per process."""
  from rznas_jax.spaces import nb201  # pylint: disable=g-import-not-at-top
  if not path:
    return nb201.BenchmarkTable.packaged()
  if path not in _TABLES:
    _TABLES[path] = nb201.BenchmarkTable.load(path)
  return _TABLES[path]


def structured_output(config: ml_collections.ConfigDict) -> str:
  """The run's `llm.structured_output` mode."""
  return structured_lib.mode_of(config.get("llm") or {})


def make_client(config: ml_collections.ConfigDict, workdir: str, space: spaces_lib.SearchSpace):
  """The run's LLM client; the offline agent is the ``offline`` backend."""
  from rznas_jax.llm import config as llm_config  # pylint: disable=g-import-not-at-top
  from rznas_jax.search import agent  # pylint: disable=g-import-not-at-top
  return llm_config.make_client(config.llm, workdir, offline_factory=lambda: agent.OfflineAgent(space))


def run(config: ml_collections.ConfigDict, workdir: str, *, progress: bool = True,
        client: Any | None = None,
        on_step: Callable[[state_lib.SearchState], None] | None = None) -> dict[str, Any]:
  """Runs (or resumes) the search of ``config`` in ``workdir``; returns ``summary.json``'s content.

  Args:
    config: see `rznas_jax.search.config.default_config`.
    workdir: the run folder; created if needed; resumed if it holds a checkpoint.
    progress: show a progress bar.
    client: an LLM client to use instead of the one ``config.llm`` describes (tests).
    on_step: called with each new state after it is saved.

  Raises:
    ConfigError: a bad config value, or a folder that holds a run with other settings.
    SearchAborted: the LLM kept failing (the run is saved and can be resumed).
  """
  config_lib.check_config(config)
  space = config_lib.make_space(config)
  if jax.process_count() > 1 and not distributed.is_leader():
    # Another host of a pod: score what the leader asks for, write nothing.
    distributed.serve_scoring(ProxyScorer(config, space).score_uncached)
    return {}
  if config.benchmark or config.space == "nb201":
    benchmark_table(config.benchmark)  # a bad path or a missing package file fails now, not later
  os.makedirs(workdir, exist_ok=True)
  _check_resumable(workdir, config)
  results.write_atomic(os.path.join(workdir, CONFIG_FILE),
                       json.dumps(_config_json(config), indent=2, sort_keys=True))
  if config.compilation_cache:
    from rznas_jax import compilation_cache  # pylint: disable=g-import-not-at-top
    compilation_cache.enable_compilation_cache(config.compilation_cache)
  scorer = ProxyScorer(config, space, os.path.join(workdir, SCORES_FILE))
  leader = None
  if jax.process_count() > 1:
    leader = distributed.LeaderScorer(scorer.score_uncached)
    scorer.compute = functools.partial(scorer.score_in_rounds, leader)
  try:
    return _search(config, workdir, space, scorer, client, progress, on_step)
  finally:
    if leader is not None:
      leader.stop()


def _search(config, workdir, space, scorer, client, progress, on_step) -> dict[str, Any]:
  if client is None and config.search.mutation == "llm":
    client = make_client(config, workdir, space)
  state, wall = load_state(workdir)
  started = time.monotonic()
  if state is None:
    logging.info("Scoring the initial population of %d.", config.search.population)
    state = initial_state(config, space, scorer)
    _save(workdir, state, (), wall)
    _append_timeline(workdir, 0, wall + time.monotonic() - started)
  else:
    logging.info("Resuming %s at iteration %d.", workdir, state.iteration)
    cut_trials_after_checkpoint(workdir, len(state.trials))
  total = config.search.iterations
  bar = None
  if progress:
    from tqdm import tqdm  # pylint: disable=g-import-not-at-top
    bar = tqdm(total=total, initial=min(state.iteration, total), desc="search", unit="it",
               dynamic_ncols=True)
  searcher = Searcher(config, space, scorer, client)
  try:
    while state.iteration < total:
      k = min(config.search.proposals_per_step, total - state.iteration)
      before = len(state.trials)
      state = searcher.step(state, k)
      _save(workdir, state, state.trials[before:], wall + time.monotonic() - started)
      _append_timeline(workdir, state.iteration, wall + time.monotonic() - started)
      if on_step is not None:
        on_step(state)
      if bar is not None:
        bar.update(k)
        bar.set_postfix(best=f"{state.best.score:.4g}", invalid=f"{state.invalid_reply_rate:.1%}")
  finally:
    if bar is not None:
      bar.close()
  wall += time.monotonic() - started
  _save(workdir, state, (), wall)
  stats = client.stats() if client is not None and hasattr(client, "stats") else None
  out = summary(config, space, state, wall, stats)
  out.update(search_statistics(config, state))
  results.write_json(os.path.join(workdir, SUMMARY_FILE), out)
  return out


def search_statistics(config, state: state_lib.SearchState) -> dict[str, Any]:
  """What ``summary.json`` says beside the result: the wasted attempts, and for an aggregate
  fitness its definition and the best member's score on each component."""
  out: dict[str, Any] = {"duplicate_attempts": state.duplicate_attempts,
                         "duplicate_rate": state.duplicate_rate}
  fitness = config_lib.fitness_of(config)
  if fitness.is_aggregate:
    out["fitness"] = fitness.describe()
    out["best_components"] = {c: _to_json_float(v)
                              for c, v in zip(fitness.components, state.best.components)}
  return out
