"""The search on an archive (an aggregate fitness) and the prompts' record of what was evaluated.

Pure tests of the state, the prompts and the offline agent, a driver step with a scorer that
returns -inf, and one end-to-end run (SIGKILL, resume, replay) with an aggregate fitness.
"""

import dataclasses
import json
import math
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from launch.configs import tiny_cpu
from rznas_jax import fitness as fitness_lib
from rznas_jax import proxies as proxy_lib
from rznas_jax import search
from rznas_jax.search import agent as agent_lib
from rznas_jax.search import config as config_lib
from rznas_jax.search import driver
from rznas_jax.search import prompts
from rznas_jax.search import replies
from rznas_jax import spaces as spaces_lib
from rznas_jax.search import state as state_lib
from rznas_jax.spaces import macro_spaces
from rznas_jax.spaces import nb201

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NB201 = spaces_lib.get("nb201")
AB = fitness_lib.parse("rank:a+b", ["a", "b"])
CELLS = [nb201.Arch.from_code(i).genotype for i in range(0, 15625, 997)]  # distinct cells
PARENT = "|nor_conv_1x1~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|"


def _trial(iteration, parent, child, kind="ok", components=None, score=None):
  return state_lib.Trial(iteration, parent.genotype, parent.score, child, score, kind, None, False,
                         components=components)


# --- state ---------------------------------------------------------------------------------------


def _archive_state():
  key, _ = state_lib.initial_key(0)
  a, b, c = CELLS[:3]
  return state_lib.init_state([(a, (1.0, 3.0)), (b, (2.0, 1.0)), (c, (3.0, 2.0))], key, AB)


def test_init_state_scores_members_by_their_rank_aggregate():
  s = _archive_state()
  # ranks of a: 1, 2, 3; of b: 3, 1, 2; n = 3
  expected = [math.log(1 / 3) + math.log(3 / 3), math.log(2 / 3) + math.log(1 / 3),
              math.log(3 / 3) + math.log(2 / 3)]
  assert [m.score for m in s.population] == pytest.approx(expected)
  assert s.best.genotype == CELLS[2]
  assert s.population[0].components == (1.0, 3.0)
  with pytest.raises(ValueError, match="non-finite"):  # a single proxy still refuses them
    state_lib.init_state([(CELLS[0], -math.inf)], s.key)


def test_aggregate_step_rescores_over_the_archive_and_drops_the_worst():
  s = _archive_state()
  a, b, c, d = s.population[0], s.population[1], s.population[2], CELLS[3]
  trials = [_trial(0, c, d, components=(4.0, -math.inf)),  # new; -inf ranks lowest, no failure
            _trial(1, a, None, kind="invalid"),
            _trial(2, b, c.genotype, components=c.components)]  # already a member
  out = state_lib.apply_step(s, trials, population_size=3, memory_size=1, evaluations=1,
                             fitness=AB)
  # n = 4; ranks of a: 1, 2, 3, 4 (A B C D); of b: D (-inf) 1, B 2, C 3, A 4.
  low = math.log(1 / 4)  # A: log(1/4)+log(4/4); B: 2 log(2/4); D: log(4/4)+log(1/4)
  # A, B and D tie at log(1/4): the oldest, A, is dropped.
  assert [m.genotype for m in out.population] == [b.genotype, c.genotype, d]
  assert [m.score for m in out.population] == pytest.approx([low, 2 * math.log(3 / 4), low])
  assert [t.kind for t in out.trials] == ["ok", "invalid", "duplicate"]
  assert [t.added for t in out.trials] == [True, False, False]
  assert out.trials[0].score == pytest.approx(low)
  assert out.trials[1].score is None
  assert out.trials[2].score == pytest.approx(2 * math.log(3 / 4))
  assert out.trials[0].parent_score == c.score  # the parent's score when the step was planned
  assert list(out.archive()) == [*CELLS[:3], d]
  assert out.duplicate_attempts == 1 and out.duplicate_rate == pytest.approx(1 / 3)


def test_archive_scores_agree_with_a_rank_computation_by_sorting():
  rng = np.random.default_rng(0)
  values = rng.integers(0, 5, size=(30, 3)).astype(float)  # ties on purpose
  values[3, 1] = -math.inf
  fit = fitness_lib.parse("rank_linear:x+y+z", ["x", "y", "z"])
  got = state_lib.archive_scores({str(i): tuple(row) for i, row in enumerate(values)}, fit)
  expected = np.zeros(30)
  for column in values.T:  # average rank: 1 + below + (equal - 1) / 2
    below = (column[None, :] < column[:, None]).sum(1)
    equal = (column[None, :] == column[:, None]).sum(1)
    expected += (1 + below + (equal - 1) / 2) / 30
  assert list(got.values()) == pytest.approx(expected)


def test_a_state_with_components_reads_back_exactly_from_strict_json():
  s = _archive_state()
  s, _ = state_lib.plan_step(s, 1)
  trial = dataclasses.replace(_trial(0, s.population[0], CELLS[5], components=(-math.inf, 7.5)),
                              reflection="r")
  s = state_lib.apply_step(s, [trial], population_size=3, memory_size=2, evaluations=1, fitness=AB)
  text = json.dumps(s.to_json(), allow_nan=False)  # -inf travels as text
  assert '"-inf"' in text
  assert state_lib.SearchState.from_json(json.loads(text)) == s
  nan = state_lib.Trial.from_json(json.loads(json.dumps(
      dataclasses.replace(trial, components=(math.nan, 1.0)).to_json(), allow_nan=False)))
  assert math.isnan(nan.components[0]) and nan.components[1] == 1.0


def test_a_single_proxy_state_writes_no_components():
  member = state_lib.Member(CELLS[0], 2.0, -1)
  assert member.to_json() == {"genotype": CELLS[0], "score": 2.0, "born": -1}
  trial = _trial(0, member, CELLS[1], score=3.0)
  assert "components" not in trial.to_json()
  # The optional fields are left out when unset: a trial reads as it did before they existed.
  assert list(trial.to_json()) == [f.name for f in dataclasses.fields(trial)
                                   if f.name not in ("components", "reflection_error")]
  assert state_lib.Trial.from_json(trial.to_json()) == trial


def test_duplicate_attempts_count_children_evaluated_before():
  key, _ = state_lib.initial_key(0)
  s = state_lib.init_state([(CELLS[0], 1.0), (CELLS[1], 2.0)], key)
  p = s.population[0]
  trials = [_trial(0, p, CELLS[0], kind="duplicate", score=1.0),  # the parent itself
            _trial(1, p, CELLS[2], score=0.5),  # new, enters, then is dropped
            _trial(2, p, None, kind="invalid"),
            _trial(3, p, CELLS[3], kind="proxy_failed"),  # evaluated, though it failed
            _trial(4, p, CELLS[2], score=0.5),  # scored before and dropped
            _trial(5, p, CELLS[3], kind="proxy_failed"),
            _trial(6, p, CELLS[4], score=9.0)]
  out = state_lib.apply_step(s, trials, population_size=2, memory_size=1, evaluations=3)
  assert out.duplicate_attempts == 3 and out.duplicate_rate == pytest.approx(3 / 7)


def test_parent_history_lists_tried_children_and_evaluated_neighbours():
  key, _ = state_lib.initial_key(0)
  near = NB201.neighbours(PARENT)
  far = CELLS[0]
  s = state_lib.init_state([(PARENT, 5.0), (near[0], 4.0), (far, 1.0)], key)
  p = s.population[0]
  other = s.population[2]
  trials = [_trial(0, p, near[1], score=6.0), _trial(1, p, near[2], kind="proxy_failed"),
            _trial(2, other, near[3], score=2.0), _trial(3, p, None, kind="invalid"),
            _trial(4, p, near[1], kind="duplicate", score=6.0)]
  s = state_lib.apply_step(s, trials, population_size=10, memory_size=1, evaluations=3)
  h = state_lib.parent_history(s, s.population[0], near)
  assert h.tried == ((near[2], None), (near[1], 6.0))  # distinct, oldest first
  assert h.neighbours == ((near[0], 4.0), (near[3], 2.0))
  assert h.components == () and h.evaluated == 6
  assert state_lib.parent_history(s, s.population[0], near, tried_shown=1).tried == ((near[1], 6.0),)
  assert state_lib.parent_history(s, s.population[2], []).tried == ((near[3], 2.0),)


def test_parent_history_gives_each_components_percentile_in_the_archive():
  s = _archive_state()
  h = state_lib.parent_history(s, s.population[0], [], AB)
  # A = (1, 3): lowest of three on a (0 %), highest on b (100 %)
  assert h.components == (("a", 1.0, 0.0), ("b", 3.0, 100.0)) and h.evaluated == 3


def test_neighbours_are_the_24_one_edit_cells():
  near = NB201.neighbours(PARENT)
  assert len(near) == len(set(near)) == 24 and PARENT not in near
  assert all(len(NB201.edits(PARENT, g)) == 1 for g in near)
  assert macro_spaces.zen_cifar().neighbours("anything") == []


# --- prompts -------------------------------------------------------------------------------------


def _mutation(proxy, history=prompts.ParentHistory(), options=prompts.PromptOptions(), memory=()):
  return prompts.mutation_request(NB201, proxy, PARENT, -1.5, memory, options, temperature=0.4,
                                  seed=1, history=history)


def test_aggregate_system_prompt_describes_the_aggregate_and_shows_each_components_code():
  system = _mutation("rank:synflow+naswot+flops").system
  fit = prompts.parse_fitness("rank:synflow+naswot+flops")
  assert fit.describe() in system
  for name in fit.components:
    assert f"## {name}" in system
    assert spaces_lib.base.source_of(proxy_lib.get(name).fn) in system
  assert '"type": "rank:synflow+naswot+flops"' in system
  no_code = _mutation("rank:synflow+naswot+flops", options=prompts.PromptOptions(code=False)).system
  assert "## naswot" in no_code and "def naswot" not in no_code


def test_history_sections_show_components_tried_children_and_neighbours_before_reflections():
  near = NB201.neighbours(PARENT)
  history = prompts.ParentHistory(components=(("synflow", 1234.5678, 87.5), ("flops", -math.inf, 0.0)),
                                  evaluated=40, tried=((near[0], 2.0), (near[1], None)),
                                  neighbours=((near[2], 3.25),))
  memory = [prompts.Reflection("advice", PARENT, near[0], 1.0, None)]
  user = _mutation("rank:synflow+flops", history, memory=memory).prompt_text
  assert "- synflow: 1234.57 (percentile 87.5)" in user and "- flops: -inf (percentile 0.0)" in user
  assert "among the 40 architectures" in user
  assert f"1. {near[0]} (score 2)" in user and f"2. {near[1]} (score failed)" in user
  assert f"1. {near[2]} (score 3.25)" in user
  order = [user.index(h) for h in (prompts.COMPONENTS_HEADER, prompts.TRIED_HEADER,
                                   prompts.NEIGHBOURS_HEADER, prompts.REFLECTION_HEADER)]
  assert order == sorted(order)
  assert agent_lib.listed_genotypes(user, prompts.TRIED_HEADER) == [near[0], near[1]]
  assert agent_lib.listed_genotypes(user, prompts.NEIGHBOURS_HEADER) == [near[2]]
  fresh = _mutation("synflow").prompt_text
  assert fresh == "\n".join(["Mutate the below architecture.", "```json",
                             prompts.parent_json(PARENT, "synflow", -1.5), "```"])


# --- offline agent -------------------------------------------------------------------------------


def _agent_child(history, seed, temperature=1.0):
  request = prompts.mutation_request(NB201, "synflow", PARENT, 1.0, (), prompts.PromptOptions(),
                                     temperature=temperature, seed=seed, history=history)
  parsed = replies.parse_mutation_reply(agent_lib.OfflineAgent(NB201).complete(request).text, NB201)
  assert parsed.kind == "ok"
  return parsed.genotype


def test_agent_never_proposes_a_listed_cell_while_an_unseen_neighbour_is_left():
  near = NB201.neighbours(PARENT)
  unseen = near[17]
  history = prompts.ParentHistory(tried=tuple((g, 1.0) for g in near[:8]),
                                  neighbours=tuple((g, 1.0) for g in near[8:] if g != unseen))
  for seed in range(12):  # a second edit on top, at temperature 1, is an unseen two-edit cell
    child = _agent_child(history, seed)
    assert child == unseen or (len(NB201.edits(PARENT, child)) == 2 and child not in near)


def test_agent_takes_two_edits_when_every_neighbour_is_listed():
  near = NB201.neighbours(PARENT)
  history = prompts.ParentHistory(neighbours=tuple((g, 1.0) for g in near))
  children = {_agent_child(history, seed, 0.2) for seed in range(12)}
  assert all(len(NB201.edits(PARENT, c)) == 2 for c in children)
  assert len(children) > 1


def test_agent_on_a_macro_space_skips_listed_children():
  space = macro_spaces.zen_cifar()
  agent = agent_lib.OfflineAgent(space)
  parent = space.initial

  def child(history, seed):
    request = prompts.mutation_request(space, "zen", parent, 10.0, (), prompts.PromptOptions(),
                                       temperature=0.2, seed=seed, history=history)
    return replies.parse_mutation_reply(agent.complete(request).text, space).genotype

  first = child(prompts.ParentHistory(), 0)
  assert child(prompts.ParentHistory(tried=((first, 1.0),)), 0) not in (first, parent)


# --- config and scorer ---------------------------------------------------------------------------


@pytest.mark.parametrize("proxy,needle", [("rank:synflw+params", "synflw"), ("rank:synflow", "one proxy"),
                                          ("rank:params+params", "twice")])
def test_a_bad_fitness_is_a_config_error(proxy, needle):
  config = tiny_cpu.get_config(proxy)
  with pytest.raises(config_lib.ConfigError, match=needle):
    config_lib.check_config(config)
  config_lib.check_config(tiny_cpu.get_config("rank:grad_norm+params"))


def test_scorer_stores_every_component_and_scores_them_in_rounds(tmp_path):
  path = str(tmp_path / "scores.jsonl")
  scorer = driver.ProxyScorer(tiny_cpu.get_config("rank:params+flops"), config_lib.make_space(
      tiny_cpu.get_config()), path)
  got = scorer(CELLS[:3])
  size = dict(channels=4, cells_per_stage=1, num_classes=120)  # tiny_cpu: 16x16 inputs
  costs = [(nb201.count_params(nb201.parse_genotype(g), **size),
            nb201.count_flops(nb201.parse_genotype(g), resolution=16, **size)) for g in CELLS[:3]]
  assert got.tolist() == [list(c) for c in costs]
  with open(path) as f:
    assert json.loads(f.readline())["scores"] == {"params": costs[0][0], "flops": costs[0][1]}
  again = driver.ProxyScorer(tiny_cpu.get_config("rank:params+flops"), config_lib.make_space(
      tiny_cpu.get_config()), path)
  assert again.cache == scorer.cache
  # The multi-process protocol gathers one number per genotype: C calls, one column each.
  assert scorer.score_in_rounds(scorer.score_uncached, CELLS[3:6]).tolist() == \
      scorer.score_components(CELLS[3:6]).tolist()


# --- the driver ------------------------------------------------------------------------------------


class _Offline:

  def __init__(self, space):
    self.agent = agent_lib.OfflineAgent(space)

  def complete_many(self, requests):
    return [self.agent.complete(r) for r in requests]


def test_a_driver_step_keeps_a_child_with_an_infinite_component():
  config = tiny_cpu.get_config("rank:synflow+params")
  space = config_lib.make_space(config)

  def scorer(genotypes):  # synflow -inf for cells with a 'none' on edge 0, as a dead cell gets
    rows = [(-math.inf if nb201.parse_genotype(g).ops[0] == "none" else float(len(g)),
             space.costs(g)["params"]) for g in genotypes]
    return np.array(rows, np.float64).reshape(len(genotypes), 2)

  state = driver.initial_state(config, space, scorer)
  assert len(state.population) == config.search.population  # -inf members are kept
  searcher = driver.Searcher(config, space, scorer, _Offline(space))
  for _ in range(20):
    state = searcher.step(state, 2)
  assert state.counts()["proxy_failed"] == 0
  archive = state.archive()
  scores = state_lib.archive_scores(archive, prompts.parse_fitness(config.proxy))
  assert [m.score for m in state.population] == [scores[m.genotype] for m in state.population]
  assert len(archive) == state.evaluations
  kept = sorted(m.score for m in state.population)
  dropped = [s for g, s in scores.items() if g not in {m.genotype for m in state.population}]
  assert max(dropped) <= kept[0]


def _launch(workdir, *overrides):
  return [sys.executable, "-m", "launch.search", "--config=launch/configs/tiny_cpu.py",
          "--config.proxy=rank:params+flops", f"--workdir={workdir}", "--progress=false",
          "--report=false", "--config.search.iterations=150", *overrides]


def _folder(workdir):
  summary = json.loads((workdir / "summary.json").read_text())
  summary = {k: v for k, v in summary.items() if k not in ("wall_seconds", "llm")}
  state = json.loads((workdir / "checkpoint.json").read_text())["state"]
  return summary, (workdir / "trials.jsonl").read_text(), state


def test_aggregate_run_resumes_after_sigkill_and_replays_exactly(tmp_path):
  straight = tmp_path / "straight"
  subprocess.run(_launch(straight), cwd=ROOT, check=True, capture_output=True)
  killed = tmp_path / "killed"
  proc = subprocess.Popen(_launch(killed), cwd=ROOT, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
  trials = killed / "trials.jsonl"
  deadline = time.time() + 120
  while time.time() < deadline and (not trials.exists() or trials.read_text().count("\n") < 30):
    time.sleep(0.005)
  proc.send_signal(signal.SIGKILL)
  assert proc.wait() == -signal.SIGKILL
  assert 30 <= trials.read_text().count("\n") < 150
  subprocess.run(_launch(killed), cwd=ROOT, check=True, capture_output=True)
  assert _folder(killed) == _folder(straight)

  config = tiny_cpu.get_config("rank:params+flops")
  config.search.iterations = 150
  config.llm.backend = f"replay:{straight / 'llm_log.jsonl'}"
  search.run(config, str(tmp_path / "replayed"), progress=False)
  assert _folder(tmp_path / "replayed") == _folder(straight)

  summary, _, state = _folder(straight)
  best = max(state["population"], key=lambda m: m["score"])
  assert summary["best_score"] == best["score"] and summary["best_arch"] == best["genotype"]
  assert summary["best_components"] == dict(zip(("params", "flops"), best["components"]))
  assert summary["fitness"].startswith("rank:params+flops = sum over params, flops")
  lines = [json.loads(line) for line in (straight / "scores.jsonl").read_text().splitlines()]
  assert len(lines) == summary["evaluations"] and all(set(l["scores"]) == {"params", "flops"}
                                                      for l in lines)


def test_report_replay_of_an_aggregate_run_matches_the_search_state():
  """`report.history.replay_population` re-ranks the archive as `state.apply_step` does."""
  from rznas_jax.report import history  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(3)
  key, _ = state_lib.initial_key(0)
  initial = [(g, tuple(rng.normal(size=2))) for g in CELLS[:4]]
  s = state_lib.init_state(initial, key, AB)
  for i, child in enumerate([*CELLS[4:12], CELLS[5], CELLS[1]]):
    parent = s.population[int(rng.integers(len(s.population)))]
    components = (float(rng.normal()), -math.inf if i == 3 else float(rng.normal()))
    s = state_lib.apply_step(s, [_trial(i, parent, child, components=components)],
                             population_size=4, memory_size=1, evaluations=1, fitness=AB)
  trials = [json.loads(json.dumps(t.to_json())) for t in s.trials]
  replayed = history.replay_population(
      [(m.genotype, m.score) for m in s.initial], trials, 4, fitness=AB,
      initial_components={g: c for g, c in initial})
  assert [g for g, _ in replayed.final] == [m.genotype for m in s.population]
  assert [v for _, v in replayed.final] == pytest.approx([m.score for m in s.population])
  assert replayed.best_genotype[-1] == s.best.genotype
