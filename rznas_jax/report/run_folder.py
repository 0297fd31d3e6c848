"""Reads a finished (or interrupted) search run folder into one plain record for the reports.

The folder and its files are `rznas_jax.search.run_folder`'s, which reads them here: only the
trials that the checkpoint counts are read (a line written after it, by a run killed between the
two writes, is not part of the run), and nothing in the folder is changed. A
``launch/correlate.py`` output folder is recognised here too (`is_correlation_run`).
"""

from __future__ import annotations

import dataclasses
import itertools
import os
from typing import Any

from rznas_jax.search import run_folder as files
# The search run folder's names and error, as the reports have always named them.
from rznas_jax.search.run_folder import (  # pylint: disable=unused-import
    CHECKPOINT_FILE, CONFIG_FILE, LLM_LOG_FILE, SUMMARY_FILE, TIMELINE_FILE, TRIALS_FILE,
    RunFolderError, is_search_run)

CORRELATION_FILE = "correlation.json"
SCORES_CSV = "scores.csv"


@dataclasses.dataclass(frozen=True)
class SearchRun:
  """What a report needs from a search run folder.

  Attributes:
    path: the folder.
    config: ``config.json`` as a dict.
    initial: the initial population as (genotype, score) pairs.
    trials: the trials as the dicts ``trials.jsonl`` holds, in order.
    population: the final population as (genotype, score) pairs (from the checkpoint).
    wall_seconds: the run's wall time so far (from the checkpoint).
    summary: ``summary.json`` as a dict, or None when the run did not finish.
    seconds: wall seconds since the run began once the initial population was scored, then at
      the end of each trial (``len(trials) + 1`` values), or None when the folder holds no
      timing for them.
    timing_source: where ``seconds`` came from: ``timeline``, ``llm_log`` or ``none``.
  """
  path: str
  config: dict[str, Any]
  initial: tuple[tuple[str, float], ...]
  trials: tuple[dict[str, Any], ...]
  population: tuple[tuple[str, float], ...]
  wall_seconds: float
  summary: dict[str, Any] | None
  seconds: tuple[float, ...] | None
  timing_source: str
  initial_components: dict[str, tuple] | None = None

  @property
  def space(self) -> str:
    return self.config.get("space", "nb201")

  @property
  def proxy(self) -> str:
    return self.config.get("proxy", "?")

  @property
  def fitness(self):
    """The run's `rznas_jax.fitness.Fitness` (a single proxy or an aggregate)."""
    from rznas_jax import fitness  # pylint: disable=g-import-not-at-top
    return fitness.parse(self.proxy, None)

  @property
  def population_size(self) -> int:
    return int(self.config.get("search", {}).get("population", len(self.initial)))


def is_correlation_run(path: str) -> bool:
  """Whether ``path`` looks like a ``launch/correlate.py`` output folder."""
  return all(os.path.isfile(os.path.join(path, f)) for f in (CORRELATION_FILE, SCORES_CSV))


def _timeline_seconds(path: str, num_trials: int) -> tuple[float, ...] | None:
  """`SearchRun.seconds` from ``timeline.jsonl`` (`run_folder.read_timeline`).

  A line says that ``iteration`` attempts were done at ``wall_seconds``; a step of K attempts
  gives its K trials the time of its end.
  """
  ends = files.read_timeline(path)
  if ends is None:
    return None
  marks = sorted(i for i in ends if i > 0)
  if not marks or marks[-1] < num_trials:
    return None
  out, j = [ends.get(0, 0.0)], 0
  for i in range(num_trials):
    while marks[j] < i + 1:
      j += 1
    out.append(ends[marks[j]])
  return tuple(out)


def _llm_log_seconds(path: str, trials: list[dict[str, Any]]) -> tuple[float, ...] | None:
  """`SearchRun.seconds` from the LLM log: each trial ends with its mutation call, counted from
  the start of the first call (the initial population's time is taken as 0). Needs every
  trial's mutation call in the log."""
  times = files.read_llm_call_times(path)
  if not times:
    return None
  first = min(started for started, _ in times.values())
  calls = [t.get("mutation_call") for t in trials]
  if not calls or any(c not in times for c in calls):
    return None
  seconds = [times[c][1] - first for c in calls]
  return (0.0, *itertools.accumulate(seconds, max))  # a step ends with its last call


def load_search_run(path: str) -> SearchRun:
  """Reads the search run folder ``path``.

  Args:
    path: a folder written by ``launch/search.py`` (finished or not).

  Returns:
    A `SearchRun`.

  Raises:
    RunFolderError: the folder does not exist, is not a search run folder, or is damaged.

  Example:
    >>> run = load_search_run("runs/nb201")
    >>> len(run.trials), run.proxy
  """
  if not os.path.isdir(path):
    raise RunFolderError(f"{path!r} is not a folder; give the --workdir of a search run.")
  if not is_search_run(path):
    raise RunFolderError(f"{path!r} is not a search run folder: it has no {CHECKPOINT_FILE} "
                         f"(give the --workdir of launch/search.py, or a launch/correlate.py --out "
                         f"folder holding {CORRELATION_FILE} and {SCORES_CSV}).")
  config = files.read_config(path)
  if config is None:
    raise RunFolderError(f"{path!r} has a checkpoint but no {CONFIG_FILE}; the run folder is "
                         "damaged.")
  ckpt = files.read_checkpoint(path)
  try:
    state = ckpt["state"]
    initial = tuple((m["genotype"], float(m["score"])) for m in state["initial"])
    components = {m["genotype"]: m["components"] for m in state["initial"] if m.get("components")}
    population = tuple((m["genotype"], float(m["score"])) for m in state["population"])
    num_trials = int(state["num_trials"])
    wall = float(ckpt.get("wall_seconds", 0.0))
  except (KeyError, TypeError, ValueError) as e:
    raise RunFolderError(f"{os.path.join(path, CHECKPOINT_FILE)} lacks a field the search writes "
                         f"({e}); the run folder is damaged.") from None
  trials = files.read_trial_lines(path, num_trials)
  seconds, source = _timeline_seconds(path, num_trials), "timeline"
  if seconds is None:
    seconds, source = _llm_log_seconds(path, trials), "llm_log"
  if seconds is None:
    source = "none"
  return SearchRun(path=path, config=config, initial=initial, trials=tuple(trials),
                   population=population, wall_seconds=wall, summary=files.read_summary(path),
                   seconds=seconds, timing_source=source, initial_components=components or None)
