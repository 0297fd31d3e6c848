"""The pure parts of the search: reply parsing, prompts, the state's steps, the offline agent."""

import dataclasses
import inspect
import json
import os

import numpy as np
import pytest

from rznas_jax import proxies as proxy_lib
from rznas_jax.llm.base import Request, Message
from rznas_jax.search import agent as agent_lib
from rznas_jax.search import prompts
from rznas_jax.search import replies
from rznas_jax import spaces as spaces_lib
from rznas_jax.search import state as state_lib
from rznas_jax.spaces import macro_spaces
from rznas_jax.spaces import nb201
from rznas_jax.spaces import nb201_net

NB201 = spaces_lib.get("nb201")
PARENT = "|nor_conv_1x1~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|"
CHILD = "|nor_conv_1x1~0|+|nor_conv_3x3~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|"


# --- replies -----------------------------------------------------------------------------------


@pytest.mark.parametrize("text", [
    f'```json\n{{"arch": "{CHILD}", "type": "synflow", "score": 99}}\n```',
    f'Sure! Here it is: {{"arch": "{CHILD}"}} and that is all.',
    f'<Thinking>swap a skip for a conv {{not json}}</Thinking>\n```json\n{{"arch": " {CHILD} "}}\n```',
    f'{{"note": 1}} is not it, but {{"arch": "{CHILD}", "score": "high"}} is',
])
def test_reply_with_a_json_object_gives_the_child(text):
  parsed = replies.parse_mutation_reply(text, NB201)
  assert (parsed.genotype, parsed.kind, parsed.error) == (CHILD, "ok", None)


def test_reply_keeps_thinking_and_ignores_the_llms_score():
  parsed = replies.parse_mutation_reply(
      f'```json\n{{"arch": "{CHILD}", "score": 1e9}}\n```\n<Thinking>\nmore convs\n</Thinking>', NB201)
  assert parsed.thinking == "more convs"
  # The score the LLM wrote changes nothing: the same reply without it parses to the same value.
  assert parsed == replies.parse_mutation_reply(
      f'```json\n{{"arch": "{CHILD}"}}\n```\n<Thinking>\nmore convs\n</Thinking>', NB201)
  assert {f.name for f in dataclasses.fields(parsed)} == {"genotype", "error", "kind", "thinking"}


@pytest.mark.parametrize("text,kind,needle", [
    ("", "empty", "empty"),
    ("   \n", "empty", "empty"),
    ("I would change the first edge to a 3x3 convolution.", "no_json", "no JSON object"),
    ('{"architecture": "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"}', "no_arch", "architecture"),
    ('{"arch": ["nor_conv_3x3"]}', "no_arch", "list"),
    ('{"arch": "|conv_5x5~0|+|none~0|none~1|+|none~0|none~1|none~2|"}', "invalid", "conv_5x5"),
    ('{"arch": "|none~0|+|none~0|none~1|+|none~0|none~1|"}', "invalid", "not valid"),
    ('```json\n{"arch": "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|\n```', "no_json", "no JSON"),
])
def test_bad_replies_are_rejected_with_a_reason(text, kind, needle):
  parsed = replies.parse_mutation_reply(text, NB201)
  assert parsed.genotype is None and parsed.kind == kind
  assert needle in parsed.error


def test_code_in_a_reply_is_never_run(tmp_path):
  marker = tmp_path / "ran"
  code = f"import os\nopen({str(marker)!r}, 'w').write('x')\n"
  text = f"```python\n{code}```\n{{\"arch\": \"__import__('os').system('touch {marker}')\"}}"
  parsed = replies.parse_mutation_reply(text, NB201)
  assert parsed.kind == "invalid" and parsed.genotype is None
  assert not marker.exists()


def test_macro_reply_over_budget_names_the_budget():
  space = macro_spaces.zen_cifar(params=1e6)
  wide = ("SuperConvK3BNRELU(3,64,1,1)SuperResK3K3(64,512,1,512,4)SuperResK3K3(512,512,2,512,4)"
          "SuperConvK1BNRELU(512,1024,1,1)")
  parsed = replies.parse_mutation_reply(f'{{"arch": "{wide}"}}', space)
  assert parsed.kind == "invalid" and "budget" in parsed.error
  chained = "SuperConvK3BNRELU(3,8,1,1)SuperResK3K3(16,16,1,8,1)"
  parsed = replies.parse_mutation_reply(f'{{"arch": "{chained}"}}', space)
  assert parsed.kind == "invalid" and "16" in parsed.error


# --- prompts -----------------------------------------------------------------------------------


def _request(options=prompts.PromptOptions(), memory=()):
  return prompts.mutation_request(NB201, "synflow", PARENT, 3.5, memory, options, temperature=0.4,
                                  seed=1)


def test_mutation_prompt_has_the_papers_parts_taken_from_our_code():
  request = _request(memory=[prompts.Reflection("Try 3x3 convs.", PARENT, CHILD, 1.0, None)])
  system = request.system
  for header in ("# Role and task", "# Search space and operations", "# System reflection",
                 "# Network construction", "# Architecture mutation", "# Zero-cost proxy",
                 "# Reply format", "# Example"):
    assert header in system
  assert inspect.cleandoc(inspect.getsource(nb201_net.ReLUConvBN)) in system
  assert inspect.cleandoc(inspect.getsource(proxy_lib.get("synflow").fn)) in system
  assert all(op in system for op in nb201.OPS)
  user = request.prompt_text
  parent = replies.first_json_object(user)
  assert parent == {"arch": PARENT, "type": "synflow", "score": 3.5}
  assert user.index(prompts.REFLECTION_HEADER) > user.index(PARENT)
  assert "1. Try 3x3 convs." in user
  assert request.purpose == prompts.MUTATION and request.temperature == 0.4


@pytest.mark.parametrize("switch,gone", [
    ("code", "class ReLUConvBN"), ("text", "batch norm."), ("example", "# Example"),
    ("system_reflection", "# System reflection")])
def test_ablation_switches_remove_their_part(switch, gone):
  assert gone in _request().system
  assert gone not in _request(prompts.PromptOptions(**{switch: False})).system


def test_reflection_memory_shows_the_last_k_and_can_be_off():
  memory = [prompts.Reflection(f"advice {i}", PARENT, CHILD, 0.0, None) for i in range(5)]
  user = _request(prompts.PromptOptions(memory=2), memory).prompt_text
  assert "advice 3" in user and "advice 4" in user and "advice 2" not in user
  assert prompts.REFLECTION_HEADER not in _request(prompts.PromptOptions(reflection=False), memory).prompt_text


def test_prompts_are_deterministic():
  assert _request().fingerprint() == _request().fingerprint()
  a = prompts.reflection_request(NB201, "synflow", PARENT, 1.0, None, None, "bad", (),
                                 prompts.PromptOptions(), temperature=0.2, seed=3)
  b = prompts.reflection_request(NB201, "synflow", PARENT, 1.0, None, None, "bad", (),
                                 prompts.PromptOptions(), temperature=0.2, seed=3)
  assert a.fingerprint() == b.fingerprint()
  assert json.loads(a.prompt_text.split("```json\n")[1].split("\n```")[0])["exception"] == "bad"


# --- state -------------------------------------------------------------------------------------


def _state(scores=(5.0, 1.0, 3.0, 2.0)):
  pop = [(nb201.Arch.from_code(i).genotype, s) for i, s in enumerate(scores)]
  key, _ = state_lib.initial_key(0)
  return state_lib.init_state(pop, key)


def _trial(state, i, child, score, kind="ok"):
  parent = state.population[0]
  return state_lib.Trial(i, parent.genotype, parent.score, child, score, kind, None, False)


def test_plan_step_is_deterministic_and_draws_from_the_settings():
  s = _state()
  s1, p1 = state_lib.plan_step(s, 3)
  s2, p2 = state_lib.plan_step(s, 3)
  assert p1 == p2 and s1.key == s2.key != s.key
  assert len({p.parent for p in p1}) == 3  # distinct parents
  assert all(p.temperature in state_lib.TEMPERATURES for p in p1)
  _, p3 = state_lib.plan_step(s1, 3)
  assert p3 != p1
  _, best = state_lib.plan_step(s, 2, selection="best")
  assert [p.parent.score for p in best] == [5.0, 3.0]


def test_parents_are_uniform_over_the_population():
  s = _state()
  counts = np.zeros(4)
  for _ in range(400):
    s, (p,) = state_lib.plan_step(s, 1)
    counts[[m.genotype for m in s.population].index(p.parent.genotype)] += 1
  assert counts.min() > 60 and counts.max() < 140  # 100 expected each


def test_apply_step_replaces_the_worst_and_skips_duplicates():
  s = _state()
  new = [nb201.Arch.from_code(100 + i).genotype for i in range(3)]
  trials = [_trial(s, 0, new[0], 4.0), _trial(s, 1, s.population[2].genotype, 3.0),
            _trial(s, 2, new[1], 0.5), _trial(s, 3, None, None, "invalid")]
  out = state_lib.apply_step(s, trials, population_size=4, memory_size=1, evaluations=2)
  # 4.0 enters and pushes out 1.0; the duplicate is not added; 0.5 enters and is the worst itself.
  assert sorted(m.score for m in out.population) == [2.0, 3.0, 4.0, 5.0]
  assert [t.added for t in out.trials] == [True, False, False, False]
  assert out.trials[1].kind == "duplicate"
  assert out.iteration == 4 and out.evaluations == s.evaluations + 2
  assert out.invalid_reply_rate == 0.25
  assert out.known_scores()[new[1]] == 0.5


def test_state_json_round_trip():
  s = _state()
  s, _ = state_lib.plan_step(s, 1)
  trial = dataclass_replace(_trial(s, 0, nb201.Arch.from_code(99).genotype, 9.0), reflection="r")
  s = state_lib.apply_step(s, [trial], population_size=4, memory_size=2, evaluations=1)
  back = state_lib.SearchState.from_json(json.loads(json.dumps(s.to_json())))
  assert back == s


def dataclass_replace(obj, **kw):
  import dataclasses
  return dataclasses.replace(obj, **kw)


def test_keys_are_jax_random_s_bit_for_bit():
  import jax  # pylint: disable=import-outside-toplevel  (only this test needs JAX)
  from rznas_jax.search import keys  # pylint: disable=import-outside-toplevel
  data = lambda k: tuple(tuple(int(x) for x in row) for row in np.asarray(jax.random.key_data(k)))
  # The keys every recorded run began with (seed 0): JAX 0.10's split of key(0).
  assert state_lib.initial_key(0) == ((1797259609, 2579123966), (928981903, 3453687069))
  with jax.threefry_partitionable(True):  # JAX's default since 0.5, under which runs were recorded
    for seed in (0, 1, 7, 2**31 - 1, 2**32 + 5, -3):
      key = jax.random.key(seed)
      assert keys.seed_key(seed) == data(key[None])[0]
      for _ in range(3):
        for num in (2, 3):
          assert keys.split(data(key[None])[0], num) == data(jax.random.split(key, num))
        key = jax.random.split(key)[1]


def test_the_state_module_imports_no_jax():
  import subprocess  # pylint: disable=import-outside-toplevel
  import sys  # pylint: disable=import-outside-toplevel
  # rznas_jax/search/__init__.py imports the driver for the package's API; it is bypassed here so
  # that what state.py and run_folder.py import themselves is what is checked.
  code = (
      "import os, sys, types\n"
      "import rznas_jax\n"
      "package = types.ModuleType('rznas_jax.search')\n"
      "package.__path__ = [os.path.join(os.path.dirname(rznas_jax.__file__), 'search')]\n"
      "sys.modules['rznas_jax.search'] = package\n"
      "import rznas_jax.search.state, rznas_jax.search.run_folder\n"
      "print(sorted({m.split('.')[0] for m in sys.modules} & "
      "{'jax', 'jaxlib', 'flax', 'optax', 'ml_collections'}))\n")
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True,
                       timeout=60, check=True)
  assert out.stdout.strip() == "[]"


def test_deduplication_and_the_proxy_failure_rule_are_pure_functions_of_the_state():
  s = _state()
  member, parent = s.population[2], s.population[0]
  new = [nb201.Arch.from_code(100 + i).genotype for i in range(3)]
  s = state_lib.apply_step(s, [_trial(s, 0, new[2], 0.5)], population_size=4, memory_size=1,
                           evaluations=1)
  assert new[2] not in {m.genotype for m in s.population}  # scored, then dropped
  trials = [_trial(s, 1, new[0], None), _trial(s, 2, member.genotype, None),
            _trial(s, 3, parent.genotype, None), _trial(s, 4, new[0], None),
            _trial(s, 5, new[2], None), _trial(s, 6, new[1], None),
            _trial(s, 7, None, None, "invalid")]
  screened, to_score = state_lib.screen_children(s, trials)
  assert to_score == (new[0], new[1])  # each new child once; known scores are reused
  assert [t.kind for t in screened] == ["ok", "duplicate", "duplicate", "duplicate", "ok", "ok",
                                        "invalid"]
  assert [t.score for t in screened] == [None, member.score, parent.score, None, 0.5, None, None]
  assert screened[3].error == (f"The child {new[0]} is already in the population (or is the "
                               "parent); propose an architecture that is not there yet.")
  scored = state_lib.take_scores(s, screened, {new[0]: [7.0], new[1]: [float("nan")]},
                                 proxy="synflow")
  assert [t.kind for t in scored][-2:] == ["proxy_failed", "invalid"]
  assert [t.score for t in scored] == [7.0, member.score, parent.score, None, 0.5, None, None]
  assert scored[5].error == f"The proxy synflow returned nan for the child {new[1]}; it is not added."


def test_failed_llm_calls_in_a_row_are_counted_in_the_state_and_its_checkpoint():
  s = _state()
  step = lambda s, trials: state_lib.apply_step(s, trials, population_size=4, memory_size=1,
                                                evaluations=0)
  failed = lambda s, i: dataclass_replace(_trial(s, i, None, None, "llm_failed"),
                                          error=f"The LLM call failed: HTTP 503 ({i}).")
  s = step(s, [failed(s, 0), failed(s, 1)])
  assert (s.mutation_failures_in_a_row, s.reflection_failures_in_a_row) == (2, 0)
  assert state_lib.llm_failure_stop(s, 3) is None
  s = step(s, [failed(s, 2)])
  assert state_lib.llm_failure_stop(s, 3) == ("3 mutation calls to the LLM in a row failed; the "
                                              "last: The LLM call failed: HTTP 503 (2).")
  # One answered call starts the count again; failed reflection calls are counted apart.
  s = step(s, [failed(s, 3), dataclass_replace(_trial(s, 4, None, None, "no_json"),
                                               reflection_error="timeout (4)")])
  assert (s.mutation_failures_in_a_row, s.reflection_failures_in_a_row) == (0, 0)
  s = step(s, [dataclass_replace(_trial(s, 5, None, None, "invalid"), reflection_error="timeout (5)")])
  assert (s.mutation_failures_in_a_row, s.reflection_failures_in_a_row) == (0, 1)
  assert state_lib.llm_failure_stop(s, 1) == ("1 reflection calls to the LLM in a row failed; the "
                                              "last: timeout (5)")
  # The checkpoint keeps the counts; one written before they were kept reads with 0.
  saved = json.loads(json.dumps(s.to_json()))
  assert state_lib.SearchState.from_json(saved) == s
  del saved["mutation_failures_in_a_row"], saved["reflection_failures_in_a_row"]
  assert state_lib.SearchState.from_json(saved) == s.replace(reflection_failures_in_a_row=0)


# --- offline agent -----------------------------------------------------------------------------


def test_agent_mutates_the_parent_and_learns_from_its_reflections():
  agent = agent_lib.OfflineAgent(NB201)
  record = "Observed edits (raised/tried): skip_connect->nor_conv_3x3 9/9; skip_connect->none 0/9."
  memory = [prompts.Reflection(record, PARENT, CHILD, 1.0, None)]
  picks = []
  for seed in range(40):
    request = prompts.mutation_request(NB201, "synflow", PARENT, 1.0, memory, prompts.PromptOptions(),
                                       temperature=0.2, seed=seed)
    reply = agent.complete(request)
    parsed = replies.parse_mutation_reply(reply.text, NB201)
    assert parsed.kind == "ok" and 1 <= len(NB201.edits(PARENT, parsed.genotype)) <= 2
    assert agent.complete(request).text == reply.text  # a function of the request
    picks += NB201.edits(PARENT, parsed.genotype)
  assert picks.count("skip_connect->nor_conv_3x3") > 20  # uniform: ~2 of 40
  assert picks.count("skip_connect->none") < 3


def test_agent_reflection_carries_the_record_forward():
  agent = agent_lib.OfflineAgent(NB201)
  earlier = [prompts.Reflection("Observed edits (raised/tried): skip_connect->nor_conv_3x3 1/2.",
                                PARENT, CHILD, 1.0, None)]
  request = prompts.reflection_request(NB201, "synflow", PARENT, 1.0, CHILD, 2.0, None, earlier,
                                       prompts.PromptOptions(), temperature=0.2, seed=0)
  text = agent.complete(request).text
  assert "raised synflow" in text
  assert agent_lib.read_record([text]) == {"skip_connect->nor_conv_3x3": (2, 3)}
  bad = prompts.reflection_request(NB201, "synflow", PARENT, 1.0, None, None, "The child is bad.",
                                   (), prompts.PromptOptions(), temperature=0.2, seed=0)
  assert "rejected" in agent.complete(bad).text


def test_agent_on_a_macro_space_proposes_valid_children():
  space = macro_spaces.zen_cifar()
  agent = agent_lib.OfflineAgent(space)
  parent = space.initial
  for seed in range(5):
    request = prompts.mutation_request(space, "zen", parent, 10.0, (), prompts.PromptOptions(),
                                       temperature=0.6, seed=seed)
    parsed = replies.parse_mutation_reply(agent.complete(request).text, space)
    assert parsed.kind == "ok" and parsed.genotype != parent


def test_agent_refuses_unknown_purposes():
  from rznas_jax.llm.base import LLMError
  with pytest.raises(LLMError, match="purpose|mutation"):
    agent_lib.OfflineAgent(NB201).complete(Request("s", (Message("user", "x"),), purpose="chat"))
