"""The search driver end to end: run folder, resume (also after SIGKILL), replay, bad replies."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from launch.configs import tiny_cpu
from rznas_jax import search
from rznas_jax import spaces
from rznas_jax.llm.base import Response
from rznas_jax.search import driver
from rznas_jax.spaces import nb201

from conftest import NATS_CSV, need

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCHMARK = NATS_CSV
TIMING_KEYS = ("wall_seconds", "llm")


def _config(iterations=24, proxy="params", **search_overrides):
  """tiny_cpu with an analytic proxy: no compile, so the driver's logic is what is tested."""
  config = tiny_cpu.get_config(proxy)
  config.search.iterations = iterations
  for k, v in search_overrides.items():
    config.search[k] = v
  return config


def _trials(workdir):
  with open(os.path.join(workdir, driver.TRIALS_FILE)) as f:
    return [json.loads(line) for line in f]


def _without_timing(summary):
  return {k: v for k, v in summary.items() if k not in TIMING_KEYS}


def test_run_writes_the_run_folder(tmp_path):
  config = _config()
  config.benchmark = need(BENCHMARK)
  summary = search.run(config, str(tmp_path), progress=False)
  for name in ("config.json", "checkpoint.json", "trials.jsonl", "scores.jsonl", "llm_log.jsonl",
               "summary.json"):
    assert (tmp_path / name).exists(), name
  for key in ("best_arch", "best_score", "proxy", "iterations_done", "evaluations",
              "invalid_reply_rate", "wall_seconds", "test_accuracy", "params", "flops"):
    assert key in summary
  trials = _trials(tmp_path)
  assert summary["iterations_done"] == len(trials) == 24
  state, _ = search.load_state(str(tmp_path))
  # The best member is the best of everything scored, and its score is its real param count.
  scored = [m.score for m in state.initial] + [t["score"] for t in trials if t["added"]]
  assert summary["best_score"] == max(scored)
  arch = nb201.parse_genotype(summary["best_arch"])
  assert summary["best_score"] == nb201.count_params(arch, 4, 1, 120)
  table = nb201.BenchmarkTable.load(BENCHMARK)
  assert summary["benchmark"] == BENCHMARK
  assert summary["test_accuracy"]["cifar100"] == pytest.approx(table.lookup([arch], "cifar100")[0])
  assert summary["evaluations"] == 8 + len({t["child"] for t in trials if t["kind"] == "ok"})
  assert all(t["reflection"] and t["mutation_call"] and t["reflection_call"] for t in trials)
  assert len(state.population) == 8


def test_nb201_summary_states_accuracy_and_rank_without_a_benchmark(tmp_path):
  config = _config(8)
  assert not config.benchmark
  summary = search.run(config, str(tmp_path), progress=False)
  with open(tmp_path / "summary.json") as f:
    assert json.load(f) == summary
  assert summary["benchmark"] == nb201.PACKAGED_TABLE and summary["benchmark_cells"] == 15625
  # The found cell's row of the csv, read with the csv module alone.
  with open(need(NATS_CSV), newline="") as f:
    rows = list(csv.DictReader(f))
  index = summary["benchmark_index"]
  assert rows[index]["ArchitectureString"] == summary["best_arch"]
  columns = {"cifar10": "CIFAR10TestAccuracy200Epochs", "cifar100": "CIFAR100TestAccuracy200Epochs",
             "imagenet16-120": "ImageNetTestAccuracy200Epochs"}
  assert summary["test_accuracy"] == {d: float(rows[index][c]) for d, c in columns.items()}
  for d, c in columns.items():
    better = sum(float(r[c]) > float(rows[index][c]) for r in rows)
    assert summary["test_rank"][d] == 1 + better, d


def test_launcher_prints_the_found_cells_accuracy_and_rank(tmp_path):
  proc = subprocess.run(_launch(tmp_path, "--config.search.iterations=4"), cwd=ROOT,
                        capture_output=True, text=True, check=True)
  with open(tmp_path / "summary.json") as f:
    summary = json.load(f)
  lines = proc.stdout.splitlines()
  assert lines[0] == f"best {summary['best_arch']} (params {summary['best_score']:.6g})"
  assert f"index {summary['benchmark_index']}, packaged NATS-Bench" in lines[1]
  assert "15,625 cells, 1 = best" in lines[1]
  for line, (d, acc) in zip(lines[2:5], summary["test_accuracy"].items()):
    assert line.split() == [d, f"{acc:.2f}", "%", "rank", f"{summary['test_rank'][d]:,}"]


def test_resume_extends_a_run_exactly(tmp_path):
  straight = search.run(_config(30), str(tmp_path / "a"), progress=False)
  search.run(_config(12), str(tmp_path / "b"), progress=False)
  resumed = search.run(_config(30), str(tmp_path / "b"), progress=False)
  assert _without_timing(resumed) == _without_timing(straight)
  assert _trials(tmp_path / "a") == _trials(tmp_path / "b")


def test_a_resumed_run_must_keep_its_settings(tmp_path):
  search.run(_config(4), str(tmp_path), progress=False)
  other = _config(4)
  other.seed = 1
  with pytest.raises(search.ConfigError, match="config.seed=0"):
    search.run(other, str(tmp_path), progress=False)


def test_parallel_proposals_do_the_same_number_of_attempts(tmp_path):
  summary = search.run(_config(22, proposals_per_step=8), str(tmp_path), progress=False)
  trials = _trials(tmp_path)
  assert summary["iterations_done"] == 22 and [t["iteration"] for t in trials] == list(range(22))
  # each step of 8 draws 8 distinct parents
  assert len({t["parent"] for t in trials[:8]}) == 8


def test_random_mutation_baseline_makes_no_llm_calls(tmp_path):
  summary = search.run(_config(20, mutation="random"), str(tmp_path), progress=False)
  trials = _trials(tmp_path)
  assert summary["iterations_done"] == 20 and "llm" not in summary
  assert not (tmp_path / "llm_log.jsonl").exists()
  for t in trials:
    if t["child"]:
      assert len(spaces.get("nb201").edits(t["parent"], t["child"])) == 1
    assert t["reflection"] is None and t["temperature"] is None


class _ScriptedClient:
  """Answers mutation requests from a list of replies, in turn; reflections echo the exception."""

  def __init__(self, replies):
    self.replies = list(replies)
    self.reflection_inputs = []

  def complete_many(self, requests):
    out = []
    for r in requests:
      if r.purpose == "mutation":
        text = self.replies.pop(0)
      else:
        self.reflection_inputs.append(r.prompt_text)
        text = "advice"
      out.append(Response(text=text, model="scripted", call_id=f"c{len(self.reflection_inputs)}"))
    return out


def test_malformed_replies_are_counted_and_reflected_not_fatal(tmp_path):
  good = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
  replies = ["", "no json here", '{"genotype": "x"}', '{"arch": "|conv_9x9~0|"}',
             "```python\nimport os\nos.remove('/')\n```", f'{{"arch": "{good}"}}']
  client = _ScriptedClient(replies)
  summary = search.run(_config(6), str(tmp_path), progress=False, client=client)
  kinds = [t["kind"] for t in _trials(tmp_path)]
  assert kinds == ["empty", "no_json", "no_arch", "invalid", "no_json", "ok"]
  assert summary["invalid_reply_rate"] == pytest.approx(5 / 6)
  assert summary["attempts_by_kind"]["no_json"] == 2
  assert "conv_9x9" in client.reflection_inputs[3]  # the reason went to reflection
  assert summary["best_arch"] == good


def test_replay_reproduces_a_recorded_run(tmp_path):
  recorded = search.run(_config(16), str(tmp_path / "rec"), progress=False)
  config = _config(16)
  config.llm.backend = f"replay:{tmp_path / 'rec' / 'llm_log.jsonl'}"
  replayed = search.run(config, str(tmp_path / "rep"), progress=False)
  assert _without_timing(replayed) == _without_timing(recorded)
  assert _trials(tmp_path / "rep") == _trials(tmp_path / "rec")


def _launch(workdir, *overrides):
  return [sys.executable, "-m", "launch.search", "--config=launch/configs/tiny_cpu.py:params",
          f"--workdir={workdir}", "--progress=false", "--report=false", *overrides]


def test_sigkill_then_rerun_resumes_to_the_same_final_state(tmp_path):
  overrides = ["--config.search.iterations=400"]
  straight = tmp_path / "straight"
  subprocess.run(_launch(straight, *overrides), cwd=ROOT, check=True, capture_output=True)
  killed = tmp_path / "killed"
  proc = subprocess.Popen(_launch(killed, *overrides), cwd=ROOT, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
  trials = killed / "trials.jsonl"
  deadline = time.time() + 120
  while time.time() < deadline and (not trials.exists() or trials.read_text().count("\n") < 40):
    time.sleep(0.005)
  proc.send_signal(signal.SIGKILL)
  assert proc.wait() == -signal.SIGKILL
  done_before = trials.read_text().count("\n")
  assert 40 <= done_before < 400
  subprocess.run(_launch(killed, *overrides), cwd=ROOT, check=True, capture_output=True)
  a = json.loads((straight / "summary.json").read_text())
  b = json.loads((killed / "summary.json").read_text())
  assert _without_timing(a) == _without_timing(b)
  assert _trials(straight) == _trials(killed)
  ckpt = lambda d: json.loads((d / "checkpoint.json").read_text())["state"]
  assert ckpt(straight) == ckpt(killed)


@pytest.mark.parametrize("override,needle", [
    ("--config.proxy=synflw", "synflw"),
    ("--config.space=nb101", "nb101"),
    ("--config.search.mutation=crossover", "crossover"),
    ("--config.llm.backend=claude", "claude"),
    ("--config.data=/no/such/file.npz", "/no/such/file.npz"),
    ("--config.benchmark=/no/such.csv", "/no/such.csv"),
])
def test_bad_config_is_one_sentence_and_exit_2(tmp_path, override, needle):
  proc = subprocess.run(_launch(tmp_path / "run", override), cwd=ROOT, capture_output=True, text=True)
  assert proc.returncode == 2, proc.stderr
  assert "Traceback" not in proc.stderr and needle in proc.stderr
  assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


@pytest.mark.parametrize("config_file,proxy", [("zen_cifar", "params"), ("maedet_coco", "maedet")])
def test_macro_space_search_keeps_every_member_valid_and_in_budget(tmp_path, config_file, proxy):
  import importlib  # pylint: disable=g-import-not-at-top
  from rznas_jax.spaces import macro_spaces  # pylint: disable=g-import-not-at-top
  config = importlib.import_module(f"launch.configs.{config_file}").get_config()
  config.proxy = proxy
  config.llm.backend = "offline"
  config.search.iterations, config.search.population = 16, 6
  summary = search.run(config, str(tmp_path), progress=False)
  state, _ = search.load_state(str(tmp_path))
  space = macro_spaces.get_space(config_file)
  assert all(space.validate(m.genotype) == [] for m in state.population)
  assert summary["best_score"] == max(m.score for m in state.population)
  assert summary["iterations_done"] == 16 and "flops" in summary and "params" in summary


def test_zen_cifar_search_with_an_aggregate_fitness_ranks_members_over_the_archive(tmp_path):
  """A macro-space search on a rank aggregate: members' scores are their aggregate over every
  evaluated structure, recomputed here from the stored components with scipy's ranks."""
  import importlib  # pylint: disable=g-import-not-at-top
  from scipy import stats  # pylint: disable=g-import-not-at-top
  config = importlib.import_module("launch.configs.zen_cifar").get_config()
  config.proxy = "rank_linear:params+flops"
  config.llm.backend = "offline"
  config.search.iterations, config.search.population = 12, 5
  summary = search.run(config, str(tmp_path), progress=False)
  state, _ = search.load_state(str(tmp_path))
  archive = state.archive()
  assert len(archive) == summary["evaluations"] > len(state.population)
  columns = np.array(list(archive.values()))
  n = len(archive)
  expected = dict(zip(archive, (stats.rankdata(columns[:, 0]) + stats.rankdata(columns[:, 1])) / n))
  for m in state.population:
    assert m.score == pytest.approx(expected[m.genotype])
  # The population is the N best of the archive by aggregate.
  assert sorted(expected.values())[-len(state.population):] == pytest.approx(
      sorted(m.score for m in state.population))
  assert summary["best_components"] == pytest.approx(dict(zip(("params", "flops"),
                                                               archive[summary["best_arch"]])))
