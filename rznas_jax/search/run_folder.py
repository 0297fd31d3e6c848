"""A search's run folder: the names of its files, and the one module that writes and reads them.

* ``config.json`` — the run's config (a resumed run must agree on every key but the run length
  and the LLM connection; `rznas_jax.search.config.result_relevant`);
* ``checkpoint.json`` — ``{"state", "wall_seconds"}``: the state without its trials
  (`SearchState.to_json`), rewritten atomically after each step;
* ``trials.jsonl`` — every attempt, one JSON line each (`Trial.to_json`), appended before the
  checkpoint that counts them; a line after the checkpoint's count is a crash between the two
  writes, and is not part of the run;
* ``scores.jsonl`` — every proxy score as soon as it is computed, ``{"genotype", "score"}`` for a
  single proxy, ``{"genotype", "scores": {component: score}}`` for an aggregate fitness, with
  non-finite values as text: a crash loses no completed evaluation, the resumed run reads them
  back;
* ``llm_log.jsonl`` — every LLM exchange, written by `rznas_jax.llm`'s client; the input of
  ``replay:``;
* ``summary.json`` — the result (`rznas_jax.search.driver.summary`);
* ``timeline.jsonl`` — ``{"iteration", "wall_seconds"}`` after the initial population and after
  each step, for plots against wall time (not part of the state).

Reading never changes a file: the lines a crash left after the checkpoint are skipped by the
readers, and cut only by `cut_trials_after_checkpoint`, the repair a resumed run makes and logs.
This module needs no JAX, so reports read run folders with it.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
from typing import Any, Mapping, Sequence

from rznas_jax import results
from rznas_jax.search import state as state_lib

CONFIG_FILE = "config.json"
CHECKPOINT_FILE = "checkpoint.json"
TRIALS_FILE = "trials.jsonl"
SCORES_FILE = "scores.jsonl"
SUMMARY_FILE = "summary.json"
LLM_LOG_FILE = "llm_log.jsonl"  # `rznas_jax.llm.config.LOG_FILE`
TIMELINE_FILE = "timeline.jsonl"


class RunFolderError(ValueError):
  """A folder that is not a readable run folder; the message says what is missing or damaged."""


def is_search_run(workdir: str) -> bool:
  """Whether ``workdir`` looks like a search run folder (it has a checkpoint)."""
  return os.path.isfile(os.path.join(workdir, CHECKPOINT_FILE))


def read_json(path: str) -> Any:
  """The JSON value in ``path``.

  Raises:
    RunFolderError: the file is not valid JSON.
  """
  try:
    with open(path) as f:
      return json.load(f)
  except json.JSONDecodeError as e:
    raise RunFolderError(f"{path} is not valid JSON ({e.msg} at line {e.lineno}).") from None


# --- config.json ---------------------------------------------------------------------------------


def config_json(config) -> dict[str, Any]:
  """An ``ml_collections.ConfigDict`` as ``config.json`` holds it."""
  return json.loads(config.to_json_best_effort())


def write_config(workdir: str, config) -> None:
  """Writes ``config.json`` (atomically) from an ``ml_collections.ConfigDict``."""
  results.write_atomic(os.path.join(workdir, CONFIG_FILE),
                       json.dumps(config_json(config), indent=2, sort_keys=True))


def read_config(workdir: str) -> dict[str, Any] | None:
  """``config.json`` as a dict, or None when the folder has none."""
  path = os.path.join(workdir, CONFIG_FILE)
  return read_json(path) if os.path.isfile(path) else None


# --- checkpoint.json and trials.jsonl ----------------------------------------------------------


def read_checkpoint(workdir: str) -> dict[str, Any] | None:
  """``checkpoint.json`` as written (``{"state", "wall_seconds"}``), or None when there is none."""
  path = os.path.join(workdir, CHECKPOINT_FILE)
  return read_json(path) if os.path.isfile(path) else None


def read_trial_lines(workdir: str, count: int) -> list[dict[str, Any]]:
  """The first ``count`` lines of ``trials.jsonl`` as dicts; later lines are not read.

  Raises:
    RunFolderError: the file holds fewer than ``count`` readable lines.
  """
  path = os.path.join(workdir, TRIALS_FILE)
  trials: list[dict[str, Any]] = []
  if os.path.exists(path):
    with open(path, "rb") as f:
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


def load_state(workdir: str) -> tuple[state_lib.SearchState | None, float]:
  """(state, wall seconds so far) from a run folder, or (None, 0) when it has no checkpoint.

  Reads only: a resumed run repairs the folder with `cut_trials_after_checkpoint`.

  Raises:
    RunFolderError: the checkpoint or the trials are damaged.
  """
  ckpt = read_checkpoint(workdir)
  if ckpt is None:
    return None, 0.0
  try:
    saved = ckpt["state"]
    trials = [state_lib.Trial.from_json(t) for t in read_trial_lines(workdir, saved["num_trials"])]
    return state_lib.SearchState.from_json(saved, trials), float(ckpt["wall_seconds"])
  except (KeyError, TypeError) as e:
    raise RunFolderError(f"{os.path.join(workdir, CHECKPOINT_FILE)} lacks a field the search "
                         f"writes ({e}); the run folder is damaged.") from None


def save_step(workdir: str, state: state_lib.SearchState, new_trials: Sequence[state_lib.Trial],
              wall_seconds: float) -> None:
  """Appends ``new_trials`` to ``trials.jsonl`` (synced), then rewrites ``checkpoint.json``
  atomically: a crash between the two leaves lines that the checkpoint does not count."""
  if new_trials:
    with open(os.path.join(workdir, TRIALS_FILE), "a") as f:
      f.writelines(json.dumps(t.to_json()) + "\n" for t in new_trials)
      f.flush()
      os.fsync(f.fileno())
  results.write_atomic(os.path.join(workdir, CHECKPOINT_FILE),
                       json.dumps({"state": state.to_json(with_trials=False),
                                   "wall_seconds": wall_seconds}))


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


# --- scores.jsonl --------------------------------------------------------------------------------


def read_scores(path: str, components: Sequence[str]) -> dict[str, tuple[float, ...]]:
  """The scores in a ``scores.jsonl``: {genotype: one score per component}.

  A genotype without a score for every component is left out. A line that is not JSON (cut short
  by a crash, or damaged) is logged, with the file and line, and left out: its cell is scored
  again. An absent file reads as empty.
  """
  out: dict[str, tuple[float, ...]] = {}
  if not os.path.exists(path):
    return out
  with open(path) as f:
    for number, line in enumerate(f, start=1):
      try:
        entry = json.loads(line)
      except json.JSONDecodeError:
        logging.warning("Line %d of %s is not JSON (%r); its cell will be scored again.",
                        number, path, line[:80])
        continue
      scores = entry.get("scores", {components[0]: entry.get("score")})
      if all(scores.get(c) is not None for c in components):
        out[entry["genotype"]] = tuple(float(scores[c]) for c in components)
  return out


def score_line(genotype: str, scores: Sequence[float], components: Sequence[str]) -> dict[str, Any]:
  """One line of ``scores.jsonl``: a single proxy's ``{"genotype", "score"}``, an aggregate's
  ``{"genotype", "scores": {component: score}}``."""
  if len(components) == 1:
    return {"genotype": genotype, "score": state_lib.json_float(scores[0])}
  return {"genotype": genotype,
          "scores": {c: state_lib.json_float(s) for c, s in zip(components, scores)}}


def append_scores(path: str, scores: Mapping[str, Sequence[float]],
                  components: Sequence[str]) -> None:
  """Appends a line per genotype of ``scores`` to ``path``, synced before it returns."""
  with open(path, "a") as f:
    f.writelines(json.dumps(score_line(g, s, components)) + "\n" for g, s in scores.items())
    f.flush()
    os.fsync(f.fileno())


# --- summary.json and timeline.jsonl -------------------------------------------------------------


def write_summary(workdir: str, summary: Mapping[str, Any]) -> None:
  """Writes ``summary.json`` (strict JSON, atomically)."""
  results.write_json(os.path.join(workdir, SUMMARY_FILE), summary)


def read_summary(workdir: str) -> dict[str, Any] | None:
  """``summary.json`` as a dict, or None when the run did not finish."""
  path = os.path.join(workdir, SUMMARY_FILE)
  return read_json(path) if os.path.isfile(path) else None


def append_timeline(workdir: str, iteration: int, wall_seconds: float) -> None:
  """Appends ``{"iteration", "wall_seconds"}`` to ``timeline.jsonl``."""
  with open(os.path.join(workdir, TIMELINE_FILE), "a") as f:
    f.write(json.dumps({"iteration": iteration, "wall_seconds": round(wall_seconds, 4)}) + "\n")


def read_timeline(workdir: str) -> dict[int, float] | None:
  """``timeline.jsonl`` as {iteration: wall seconds}, or None when there is none.

  A later line for the same iteration (a resumed run that redid a step) wins; an unreadable line
  is skipped.
  """
  path = os.path.join(workdir, TIMELINE_FILE)
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
  return ends


# --- llm_log.jsonl -------------------------------------------------------------------------------


def read_llm_call_times(workdir: str) -> dict[str, tuple[float, float]] | None:
  """Each logged LLM call's (start, end) in POSIX seconds, by call id; None without a log.

  The end is the start plus the logged latency; an unreadable line is skipped.
  """
  path = os.path.join(workdir, LLM_LOG_FILE)
  if not os.path.exists(path):
    return None
  times: dict[str, tuple[float, float]] = {}
  with open(path) as f:
    for line in f:
      try:
        entry = json.loads(line)
        call_id = entry["response"]["call_id"]
        started = datetime.datetime.fromisoformat(entry["started_at"]).timestamp()
        times[call_id] = (started, started + float(entry.get("latency_s") or 0.0))
      except (json.JSONDecodeError, KeyError, TypeError, ValueError):
        continue
  return times
