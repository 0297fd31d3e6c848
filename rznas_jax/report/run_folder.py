"""Reads a finished (or interrupted) search run folder into one plain record, without JAX.

The folder is the one `rznas_jax.search.driver` documents: ``config.json``, ``checkpoint.json``,
``trials.jsonl``, optionally ``summary.json``, ``timeline.jsonl`` and ``llm_log.jsonl``. Only
the trials that the checkpoint counts are read (a line written after it, by a run killed between
the two writes, is not part of the run). Nothing in the folder is changed.
"""

from __future__ import annotations

import dataclasses
import datetime
import itertools
import json
import os
from typing import Any

CONFIG_FILE = "config.json"
CHECKPOINT_FILE = "checkpoint.json"
TRIALS_FILE = "trials.jsonl"
SUMMARY_FILE = "summary.json"
TIMELINE_FILE = "timeline.jsonl"
LLM_LOG_FILE = "llm_log.jsonl"
CORRELATION_FILE = "correlation.json"
SCORES_CSV = "scores.csv"


class RunFolderError(ValueError):
  """A folder that is not a readable run folder; the message says what is missing or damaged."""


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


def is_search_run(path: str) -> bool:
  """Whether ``path`` looks like a search run folder (it has a checkpoint)."""
  return os.path.isfile(os.path.join(path, CHECKPOINT_FILE))


def is_correlation_run(path: str) -> bool:
  """Whether ``path`` looks like a ``launch/correlate.py`` output folder."""
  return all(os.path.isfile(os.path.join(path, f)) for f in (CORRELATION_FILE, SCORES_CSV))


def _read_json(path: str) -> Any:
  try:
    with open(path) as f:
      return json.load(f)
  except json.JSONDecodeError as e:
    raise RunFolderError(f"{path} is not valid JSON ({e.msg} at line {e.lineno}).") from None


def _read_trials(path: str, count: int) -> list[dict[str, Any]]:
  trials: list[dict[str, Any]] = []
  if os.path.exists(path):
    with open(path) as f:
      for line in f:
        if len(trials) == count:
          break
        try:
          trials.append(json.loads(line))
        except json.JSONDecodeError:
          break
  if len(trials) != count:
    raise RunFolderError(f"{path} holds {len(trials)} readable trials but the checkpoint counts "
                         f"{count}; the run folder is damaged.")
  return trials


def _timeline_seconds(path: str, num_trials: int) -> tuple[float, ...] | None:
  """`SearchRun.seconds` from ``timeline.jsonl`` lines {iteration, wall_seconds}.

  A line says that ``iteration`` attempts were done at ``wall_seconds``; a step of K attempts
  gives its K trials the time of its end. A later line for the same iteration (a resumed run
  that redid a step) wins.
  """
  if not os.path.exists(path):
    return None
  ends: dict[int, float] = {}
  with open(path) as f:
    for line in f:
      try:
        entry = json.loads(line)
        ends[int(entry["iteration"])] = float(entry["wall_seconds"])
      except (json.JSONDecodeError, KeyError, TypeError, ValueError):
        continue
  marks = sorted(i for i in ends if i > 0)
  if not marks or marks[-1] < num_trials:
    return None
  out, j = [ends.get(0, 0.0)], 0
  for i in range(num_trials):
    while marks[j] < i + 1:
      j += 1
    out.append(ends[marks[j]])
  return tuple(out)


def _parse_time(text: str) -> float:
  return datetime.datetime.fromisoformat(text).timestamp()


def _llm_log_seconds(path: str, trials: list[dict[str, Any]]) -> tuple[float, ...] | None:
  """`SearchRun.seconds` from the LLM log: each trial ends with its mutation call, counted from
  the start of the first call (the initial population's time is taken as 0). Needs every
  trial's mutation call in the log."""
  if not os.path.exists(path):
    return None
  ends: dict[str, float] = {}
  first = float("inf")
  with open(path) as f:
    for line in f:
      try:
        entry = json.loads(line)
        call_id = entry["response"]["call_id"]
        started = _parse_time(entry["started_at"])
        ends[call_id] = started + float(entry.get("latency_s") or 0.0)
        first = min(first, started)
      except (json.JSONDecodeError, KeyError, TypeError, ValueError):
        continue
  calls = [t.get("mutation_call") for t in trials]
  if not ends or not calls or any(c not in ends for c in calls):
    return None
  seconds = [ends[c] - first for c in calls]
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
  config_path = os.path.join(path, CONFIG_FILE)
  if not os.path.isfile(config_path):
    raise RunFolderError(f"{path!r} has a checkpoint but no {CONFIG_FILE}; the run folder is damaged.")
  config = _read_json(config_path)
  ckpt = _read_json(os.path.join(path, CHECKPOINT_FILE))
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
  trials = _read_trials(os.path.join(path, TRIALS_FILE), num_trials)
  summary_path = os.path.join(path, SUMMARY_FILE)
  summary = _read_json(summary_path) if os.path.isfile(summary_path) else None
  seconds, source = _timeline_seconds(os.path.join(path, TIMELINE_FILE), num_trials), "timeline"
  if seconds is None:
    seconds, source = _llm_log_seconds(os.path.join(path, LLM_LOG_FILE), trials), "llm_log"
  if seconds is None:
    source = "none"
  return SearchRun(path=path, config=config, initial=initial, trials=tuple(trials),
                   population=population, wall_seconds=wall, summary=summary,
                   seconds=seconds, timing_source=source, initial_components=components or None)
