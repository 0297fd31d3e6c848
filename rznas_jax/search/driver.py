"""`run(config, workdir)`: the RZ-NAS search loop, the only part of the search with side effects.

One step (K = ``search.proposals_per_step`` attempts):

1. `state.plan_step` draws K parents, temperatures and seeds from the state's key (pure);
2. K mutation prompts go to the LLM at once (`LLMClient.complete_many`), or, for the
   ``random`` baseline, the space's random mutation makes the K children;
3. replies are parsed and checked (`replies.parse_mutation_reply`; nothing is executed);
4. the valid, new children are scored together in one call of the proxy harness (every
   component of an aggregate fitness; the children's aggregates are then taken over the archive);
   a duplicate, or a child scored before, is not scored again;
5. K reflection prompts go to the LLM at once (LLM mode, reflection on);
6. `state.apply_step` gives the next state (pure), whose trials are appended to
   ``trials.jsonl`` and which is checkpointed atomically; when the LLM failed too many calls in a
   row (`state.llm_failure_stop`, counted in the state) the run stops before saving the step.

Every decision is a pure function of the state (`rznas_jax.search.state`): which children are
duplicates (`screen_children`), what a failed proxy score means (`take_scores`), the population
and the failure counts (`apply_step`). This module only calls them.

The run folder (``config.json``, ``checkpoint.json``, ``trials.jsonl``, ``scores.jsonl``,
``llm_log.jsonl``, ``summary.json``, ``timeline.jsonl``) is written and read by
`rznas_jax.search.run_folder`, which documents it.

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
from rznas_jax.llm import structured as structured_lib
from rznas_jax.llm.base import Response
from rznas_jax.search import config as config_lib
from rznas_jax.search import prompts
from rznas_jax.search import replies
from rznas_jax.search import run_folder
from rznas_jax.spaces import base as spaces_lib
from rznas_jax.search import state as state_lib

# Where callers (search.load_state, tests, benchmarks) have long found them; run_folder owns them.
TRIALS_FILE = run_folder.TRIALS_FILE
SCORES_FILE = run_folder.SCORES_FILE
load_state = run_folder.load_state


# A folder named by this environment variable gets, from each process, the device that scored
# each genotype (``placement_<process>.jsonl``): how a test sees that a pod uses every chip.
PLACEMENT_LOG_ENV = "RZNAS_PLACEMENT_LOG"


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

  def __init__(self, config: ml_collections.ConfigDict, space: spaces_lib.Space,
               scores_path: str | None = None):
    from rznas_jax import data as data_lib  # pylint: disable=g-import-not-at-top
    images = None if config.data == "gaussian" else data_lib.load_images(config.data)
    self.components = config_lib.fitness_of(config).components
    # Every local device: a pod host scores its share on each of its chips.
    self._scorer = space.scorer(list(self.components), images=images, batch_size=config.batch_size,
                                seed=config.seed, devices=jax.local_devices(),
                                **config_lib.scoring_options(config, space))
    self._to_arch = space.parse
    self.proxy = config.proxy
    self.scores_path = scores_path
    self.compute = self.score_components  # replaced by a multi-process scorer on a pod's leader
    # A damaged line of scores.jsonl is logged by the reader, and its cell scored again.
    self.cache: dict[str, tuple[float, ...]] = (
        run_folder.read_scores(scores_path, self.components) if scores_path else {})
    self._round: tuple[int, np.ndarray] | None = None

  def score_components(self, genotypes: Sequence[str]) -> np.ndarray:
    """Every component's scores of ``genotypes`` on this process, (n, C); no cache, no file."""
    scores = self._scorer.score([self._to_arch(g) for g in genotypes])
    folder = os.environ.get(PLACEMENT_LOG_ENV)
    if folder:  # a diagnostic: which device scored each genotype, one file per process
      lines = [json.dumps({"genotype": g, "device": d, "process": jax.process_index()}) + "\n"
               for g, d in zip(genotypes, self._scorer.last_devices)]
      with open(os.path.join(folder, f"placement_{jax.process_index()}.jsonl"), "a") as f:
        f.writelines(lines)
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

  def __call__(self, genotypes: Sequence[str]) -> np.ndarray:
    todo = [g for g in dict.fromkeys(genotypes) if g not in self.cache]
    width = len(self.components)
    if todo:
      scores = np.asarray(self.compute(todo), np.float64).reshape(len(todo), width)
      new = {g: tuple(float(s) for s in row) for g, row in zip(todo, scores)}
      self.cache.update(new)
      if self.scores_path:
        run_folder.append_scores(self.scores_path, new, self.components)
    return np.array([self.cache[g] for g in genotypes], np.float64).reshape(len(genotypes), width)


# --- files ---------------------------------------------------------------------------------------


def _check_resumable(workdir: str, config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError when ``workdir`` holds a run whose result-relevant settings differ."""
  saved = run_folder.read_config(workdir)
  if saved is None:
    return
  saved = config_lib.result_relevant(saved)
  now = config_lib.result_relevant(run_folder.config_json(config))
  for key in sorted(set(saved) | set(now)):
    if saved.get(key) != now.get(key):
      raise config_lib.ConfigError(
          f"{workdir} holds a run with config.{key}={saved.get(key)!r}, but this run has "
          f"{now.get(key)!r}; use another --workdir, or the same settings to resume.")


# --- one step ------------------------------------------------------------------------------------


class Searcher:
  """Holds what a run needs between steps: the space, the scorer, the LLM client, the options.

  It keeps nothing that changes between steps: the failure counts are in the state.
  """

  def __init__(self, config: ml_collections.ConfigDict, space: spaces_lib.Space,
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

  def _mutate(self, state: state_lib.SearchState,
              proposals: Sequence[state_lib.Proposal]) -> list[state_lib.Trial]:
    """The step's attempts as far as their children: valid (kind ``ok``) or why not."""
    llm = self.config.search.mutation == "llm"
    trials = [state_lib.Trial(
        iteration=state.iteration + i, parent=p.parent.genotype, parent_score=p.parent.score,
        child=None, score=None, kind="ok", error=None, added=False,
        temperature=p.temperature if llm else None) for i, p in enumerate(proposals)]
    if not llm:
      out = []
      for p, t in zip(proposals, trials):
        child = self.space.random_mutation(p.parent.genotype, np.random.default_rng(p.seed))
        checked, reasons = self.space.check(child)
        error = f"The child {child} is not valid: " + " ".join(reasons)
        out.append(dataclasses.replace(t, child=checked) if checked is not None else
                   dataclasses.replace(t, kind="invalid", error=error))
      return out
    requests = [prompts.mutation_request(
        self.space, self.config.proxy, p.parent.genotype, p.parent.score, state.memory,
        self.options, temperature=p.temperature, seed=p.seed,
        history=state_lib.parent_history(state, p.parent, self.space.neighbours(p.parent.genotype),
                                         self.fitness))
                for p in proposals]
    out = []
    for t, response in zip(trials, self.client.complete_many(requests)):
      if isinstance(response, Exception):
        out.append(dataclasses.replace(t, kind="llm_failed",
                                       error=f"The LLM call failed: {response}"))
        continue
      parsed = replies.parse_mutation_reply(response.text, self.space)
      out.append(dataclasses.replace(t, child=parsed.genotype, kind=parsed.kind, error=parsed.error,
                                     mutation_call=response.call_id))
    return out

  def _score(self, state: state_lib.SearchState,
             trials: Sequence[state_lib.Trial]) -> tuple[tuple[state_lib.Trial, ...], int]:
    """The trials with their scores (`state.screen_children`, `state.take_scores`), and the
    proxy evaluations done: the new children, scored together in one call."""
    trials, new = state_lib.screen_children(state, trials, self.fitness)
    scores = dict(zip(new, self.scorer(list(new)))) if new else {}
    return state_lib.take_scores(state, trials, scores, proxy=self.config.proxy,
                                 fitness=self.fitness), len(new)

  def _reflect(self, state: state_lib.SearchState, proposals: Sequence[state_lib.Proposal],
               trials: Sequence[state_lib.Trial]) -> Sequence[state_lib.Trial]:
    """The trials with their reflections (LLM mode, reflection on); a failed call is recorded in
    its trial (``reflection_error``) and counted by `state.apply_step`."""
    if self.config.search.mutation != "llm" or not self.options.reflection:
      return trials
    requests = [prompts.reflection_request(
        self.space, self.config.proxy, p.parent.genotype, p.parent.score, t.child, t.score,
        t.error, state.memory, self.options, temperature=p.reflection_temperature,
        seed=p.reflection_seed)
        for p, t in zip(proposals, trials)]
    out = []
    for t, response in zip(trials, self.client.complete_many(requests)):
      if isinstance(response, Response):
        out.append(dataclasses.replace(t, reflection=response.text.strip(),
                                       reflection_call=response.call_id))
      else:
        out.append(dataclasses.replace(t, reflection_error=str(response)))
    return out

  def step(self, state: state_lib.SearchState, num_proposals: int) -> state_lib.SearchState:
    """One step of ``num_proposals`` attempts; returns the next state.

    Raises:
      SearchAborted: the LLM failed ``search.max_llm_failures`` calls in a row (the step is not
        saved).
    """
    s = self.config.search
    state, proposals = state_lib.plan_step(state, num_proposals, selection=s.selection,
                                           temperatures=tuple(s.temperatures))
    trials = self._mutate(state, proposals)
    trials, evaluations = self._score(state, trials)
    trials = self._reflect(state, proposals, trials)
    after = state_lib.apply_step(state, trials, population_size=s.population,
                                 memory_size=max(self.options.memory, 1), evaluations=evaluations,
                                 fitness=self.fitness)
    stop = state_lib.llm_failure_stop(after, s.max_llm_failures)
    if stop is not None:
      raise SearchAborted(f"{stop} The run is saved; fix the cause and rerun to resume.")
    return after


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
      **{k: float(v) for k, v in space.costs(best.genotype).items() if k in space.COST_KEYS},
  }
  table = benchmark_table(space, config.benchmark)
  arch = space.parse(best.genotype) if table is not None else None
  try:
    index = table.index(arch) if table is not None else None
  except KeyError:  # a table of some of the space's architectures (NAS-Bench-301's 725 DARTS cells)
    out["benchmark"] = table.source
    out["benchmark_note"] = (f"the found architecture is not among the {len(table)} of the "
                             "table: its accuracy needs training")
    index = None
  if index is not None:  # the space's packaged table unless config.benchmark names another
    out["benchmark"] = table.source
    out["benchmark_index"] = index
    out["test_accuracy"] = {d: float(table.lookup([arch], d)[0]) for d in table.accuracy}
    out["test_rank"] = {d: table.rank(arch, d) for d in table.accuracy}  # 1 = best; ties share
    out["benchmark_cells"] = len(table)
  if llm_stats is not None:
    out["llm"] = {**llm_stats, "structured_output": structured_output(config)}
  return out


_TABLES: dict[tuple[str, str], Any] = {}


def benchmark_table(space: spaces_lib.Space, path: str | None):
  """The space's table at ``path`` (empty: its packaged table; None when it has none), read once
  per process."""
  key = (space.name, path or "")
  if key not in _TABLES:
    _TABLES[key] = space.benchmark(path or None)
  return _TABLES[key]


def structured_output(config: ml_collections.ConfigDict) -> str:
  """The run's `llm.structured_output` mode."""
  return structured_lib.mode_of(config.get("llm") or {})


def make_client(config: ml_collections.ConfigDict, workdir: str, space: spaces_lib.Space):
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
  benchmark_table(space, config.benchmark)  # a bad path or a missing package file fails now
  os.makedirs(workdir, exist_ok=True)
  _check_resumable(workdir, config)
  run_folder.write_config(workdir, config)
  if config.compilation_cache:
    from rznas_jax import compilation_cache  # pylint: disable=g-import-not-at-top
    compilation_cache.enable_compilation_cache(config.compilation_cache)
  scorer = ProxyScorer(config, space, os.path.join(workdir, run_folder.SCORES_FILE))
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
  state, wall = run_folder.load_state(workdir)
  started = time.monotonic()
  if state is None:
    logging.info("Scoring the initial population of %d.", config.search.population)
    state = initial_state(config, space, scorer)
    run_folder.save_step(workdir, state, (), wall)
    run_folder.append_timeline(workdir, 0, wall + time.monotonic() - started)
  else:
    logging.info("Resuming %s at iteration %d.", workdir, state.iteration)
    run_folder.cut_trials_after_checkpoint(workdir, len(state.trials))  # the repair, logged
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
      run_folder.save_step(workdir, state, state.trials[before:], wall + time.monotonic() - started)
      run_folder.append_timeline(workdir, state.iteration, wall + time.monotonic() - started)
      if on_step is not None:
        on_step(state)
      if bar is not None:
        bar.update(k)
        bar.set_postfix(best=f"{state.best.score:.4g}", invalid=f"{state.invalid_reply_rate:.1%}")
  finally:
    if bar is not None:
      bar.close()
  wall += time.monotonic() - started
  run_folder.save_step(workdir, state, (), wall)
  stats = client.stats() if client is not None and hasattr(client, "stats") else None
  out = summary(config, space, state, wall, stats)
  out.update(search_statistics(config, state))
  run_folder.write_summary(workdir, out)
  return out


def search_statistics(config, state: state_lib.SearchState) -> dict[str, Any]:
  """What ``summary.json`` says beside the result: the wasted attempts, and for an aggregate
  fitness its definition and the best member's score on each component."""
  out: dict[str, Any] = {"duplicate_attempts": state.duplicate_attempts,
                         "duplicate_rate": state.duplicate_rate}
  fitness = config_lib.fitness_of(config)
  if fitness.is_aggregate:
    out["fitness"] = fitness.describe()
    out["best_components"] = {c: state_lib.json_float(v)
                              for c, v in zip(fitness.components, state.best.components)}
  return out
