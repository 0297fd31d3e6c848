"""Reading a run folder never changes it; a resumed run's repair is its own logged step."""

import json
import os

import numpy as np
import pytest

from launch.configs import tiny_cpu
from rznas_jax import search
from rznas_jax.search import config as config_lib
from rznas_jax.search import driver


def _config(iterations):
  config = tiny_cpu.get_config("params")  # analytic: no compile
  config.search.iterations = iterations
  return config


def _run(workdir, iterations):
  return search.run(_config(iterations), str(workdir), progress=False)


@pytest.fixture
def warnings(caplog):
  """The warnings logged so far (absl logs through Python's logging)."""

  class Seen:

    def __iter__(self):
      return iter(r.getMessage() for r in caplog.records if r.levelname == "WARNING")

    def __bool__(self):
      return any(True for _ in self)

  return Seen()


def test_load_state_reads_without_cutting_the_lines_after_the_checkpoint(tmp_path, warnings):
  _run(tmp_path, 6)
  trials = tmp_path / driver.TRIALS_FILE
  lines = trials.read_text().splitlines(keepends=True)
  trials.write_text("".join(lines) + lines[-1] + '{"cut short by a cra')  # as a crash leaves it
  before = trials.read_bytes()
  state, _ = search.load_state(str(tmp_path))
  assert len(state.trials) == 6
  assert trials.read_bytes() == before  # a read changes nothing
  assert not warnings
  # Resuming repairs the folder, says so, and ends as an uninterrupted run does.
  summary = _run(tmp_path, 8)
  assert any("Cut 2 line(s) written after the last checkpoint" in w for w in warnings)
  assert summary["iterations_done"] == 8
  assert len(trials.read_text().splitlines()) == 8
  straight = _run(tmp_path / "straight", 8)
  assert summary["best_arch"] == straight["best_arch"]
  assert (trials.read_text() == (tmp_path / "straight" / driver.TRIALS_FILE).read_text())


def test_a_damaged_scores_line_is_reported_and_its_cell_scored_again(tmp_path, warnings):
  _run(tmp_path, 4)
  scores = tmp_path / driver.SCORES_FILE
  lines = scores.read_text().splitlines(keepends=True)
  damaged_genotype = json.loads(lines[1])["genotype"]
  lines[1] = lines[1][:25] + "\n"
  scores.write_text("".join(lines))
  config = _config(6)
  cache = driver.ProxyScorer(config, config_lib.make_space(config), str(scores))
  assert any(w.startswith(f"Line 2 of {scores} is not JSON") and "scored again" in w
             for w in warnings)
  assert damaged_genotype not in cache.cache and len(cache.cache) == len(lines) - 1
  space = config_lib.make_space(config)
  assert cache([damaged_genotype])[0, 0] == space.costs(damaged_genotype)["params"]  # scored again
  assert scores.read_text().splitlines()[-1].startswith(f'{{"genotype": "{damaged_genotype}"')


def test_max_llm_failures_below_one_is_a_config_error():
  config = _config(4)
  config.search.max_llm_failures = 0
  with pytest.raises(config_lib.ConfigError,
                     match=r"config.search.max_llm_failures is 0; it must be at least 1\."):
    config_lib.check_config(config)


class _FailingClient:
  """Answers mutation requests with a valid one-edit child, and fails the calls of ``failing``."""

  def __init__(self, failing):
    self.failing = failing
    self.calls = 0

  def complete_many(self, requests):
    from rznas_jax.llm.base import LLMError, Response  # pylint: disable=import-outside-toplevel
    from rznas_jax import spaces  # pylint: disable=import-outside-toplevel
    from rznas_jax.search import replies  # pylint: disable=import-outside-toplevel
    space = spaces.get("nb201")
    out = []
    for r in requests:
      self.calls += 1
      if r.purpose in self.failing:
        out.append(LLMError(f"HTTP 503 on call {self.calls}."))
      elif r.purpose == "mutation":
        parent = replies.first_json_object(r.prompt_text)["arch"]
        child = space.random_mutation(parent, np.random.default_rng(self.calls))
        out.append(Response(text=json.dumps({"arch": child}), model="m", call_id=f"c{self.calls}"))
      else:
        out.append(Response(text="advice", model="m", call_id=f"c{self.calls}"))
    return out


def test_a_failed_reflection_is_recorded_in_its_trial(tmp_path):
  config = _config(6)
  config.search.max_llm_failures = 100
  summary = search.run(config, str(tmp_path), progress=False, client=_FailingClient({"reflection"}))
  trials = [json.loads(l) for l in (tmp_path / driver.TRIALS_FILE).read_text().splitlines()]
  assert summary["iterations_done"] == 6
  assert all(t["reflection"] is None and t["reflection_error"].startswith("HTTP 503 on call")
             for t in trials)
  state, _ = search.load_state(str(tmp_path))
  assert state.trials[0].reflection_error == trials[0]["reflection_error"]


@pytest.mark.parametrize("failing, what", [({"mutation"}, "mutation"), ({"reflection"}, "reflection"),
                                           ({"mutation", "reflection"}, "mutation")])
def test_the_run_stops_after_max_llm_failures_failed_calls_in_a_row(tmp_path, failing, what):
  config = _config(20)
  config.search.max_llm_failures = 4
  with pytest.raises(search.SearchAborted,
                     match=rf"^4 {what} calls to the LLM in a row failed; the last: (The LLM call failed: )?HTTP 503 on call "
                           r"\d+\. The run is saved"):
    search.run(config, str(tmp_path), progress=False, client=_FailingClient(failing))
  state, _ = search.load_state(str(tmp_path))
  assert state.iteration == 3  # three steps saved; the fourth, which stopped the run, is not


def test_a_resumed_run_goes_on_counting_the_failed_calls(tmp_path):
  config = _config(20)
  config.search.max_llm_failures = 4
  with pytest.raises(search.SearchAborted, match=r"^4 mutation calls to the LLM in a row failed"):
    search.run(config, str(tmp_path), progress=False, client=_FailingClient({"mutation"}))
  state, _ = search.load_state(str(tmp_path))
  assert state.iteration == 3 and state.mutation_failures_in_a_row == 3
  checkpoint = json.loads((tmp_path / "checkpoint.json").read_text())
  assert checkpoint["state"]["mutation_failures_in_a_row"] == 3
  # The resumed run's first failed call is the fourth in a row: it stops there, saving nothing.
  client = _FailingClient({"mutation"})
  with pytest.raises(search.SearchAborted, match=r"^4 mutation calls to the LLM in a row failed"):
    search.run(config, str(tmp_path), progress=False, client=client)
  assert client.calls == 2  # one step: its mutation call and its reflection call
  assert search.load_state(str(tmp_path))[0].iteration == 3
  # An answering LLM starts the count again.
  assert search.run(config, str(tmp_path), progress=False,
                    client=_FailingClient(set()))["iterations_done"] == 20
  assert search.load_state(str(tmp_path))[0].mutation_failures_in_a_row == 0


def test_the_report_reads_a_crashed_run_folder_without_changing_it(tmp_path):
  from rznas_jax.report import run_folder  # pylint: disable=import-outside-toplevel
  _run(tmp_path, 4)
  trials = tmp_path / driver.TRIALS_FILE
  trials.write_text(trials.read_text() + '{"cut short by a cra')  # as a crash leaves it
  before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
  run = run_folder.load_search_run(str(tmp_path))
  assert len(run.trials) == 4 and run.summary["iterations_done"] == 4
  assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
