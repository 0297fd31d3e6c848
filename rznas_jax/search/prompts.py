"""The RZ-NAS prompts (the paper's §3.3, Fig. 2, App. A.3), in our words, for any space and proxy.

The mutation prompt keeps the paper's structure: a system turn with the role and task, the
allowed operations (each a sentence *and* the source of our own Flax code, read from the code so
that it never drifts), the internal reflection paragraph, the network-construction rules and code,
what a mutation may change, the zero-cost proxy with its source, the reply format and an
in-context example; then a user turn with the parent as JSON (``arch``, proxy ``type``,
``score``), what the search knows around the parent (`ParentHistory`: for an aggregate fitness
the parent's score on each component and its percentile, the parent's children already
evaluated, its evaluated one-edit neighbours; each section only when it has lines) and the
reflection memory. The reflection prompt gives (parent, child, scores,
exception) and asks for advice (Fig. 1 of the paper).

Every part can be switched off for the paper's ablations (`PromptOptions`). Prompts are pure
functions of their inputs: the same state gives byte-identical requests, which is what replay
needs.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from typing import Sequence

from rznas_jax import fitness as fitness_lib
from rznas_jax import proxies as proxy_lib
from rznas_jax.llm.base import Message, Request
from rznas_jax.search.state import ParentHistory, Reflection  # part of the search state
from rznas_jax.spaces import base as spaces_lib

MUTATION = "mutation"
REFLECTION = "reflection"
REFLECTION_HEADER = "# Reflection from previous iterations"
EARLIER_HEADER = "# Earlier reflections"
COMPONENTS_HEADER = "# The parent's proxy scores"
TRIED_HEADER = "# Children of this parent evaluated before"
NEIGHBOURS_HEADER = "# One-edit neighbours of the parent evaluated before"


@dataclasses.dataclass(frozen=True)
class PromptOptions:
  """Which parts the prompts contain (all on: the paper's full RZ-NAS).

  Attributes:
    code: the source code of each operation, of the network and of the proxy.
    text: the sentence describing each operation.
    example: the in-context example.
    system_reflection: the internal reflection paragraph of the system prompt.
    reflection: the external reflection call after each attempt, and its memory in the prompts.
    memory: how many recent reflections the prompts show (the paper leaves it open; k).
    max_output_tokens: cap on each reply.
    structured: the mutation request carries the space's reply schema and grammar
      (`llm.structured_output` is not 'off'), and the reply format asks for the bare JSON object
      they admit; reasoning then has no place in the reply, so it is asked for nowhere.
  """
  code: bool = True
  text: bool = True
  example: bool = True
  system_reflection: bool = True
  reflection: bool = True
  memory: int = 1
  max_output_tokens: int = 1024
  structured: bool = False


def format_score(score: float | None) -> float | None:
  """Scores as the prompt shows them: 6 significant digits; None for a missing score."""
  if score is None or not math.isfinite(score):
    return None
  return float(f"{score:.6g}")


def parent_json(genotype: str, proxy: str, score: float | None) -> str:
  return json.dumps({"arch": genotype, "type": proxy, "score": format_score(score)})


def _fenced(code: str, lang: str = "python") -> str:
  return f"```{lang}\n{code}\n```"


@functools.lru_cache(maxsize=64)
def parse_fitness(name: str) -> fitness_lib.Fitness:
  """The fitness ``name`` names (a proxy, ``az_nas``, ``rank:a+b``...), against the registry."""
  return fitness_lib.parse(name, proxy_lib.names())


def _number(value: float | None) -> str:
  if value is None:
    return "failed"
  return f"{value:.6g}" if math.isfinite(value) else repr(float(value))


def _proxy_section(fitness: fitness_lib.Fitness, options: PromptOptions) -> list[str]:
  """The system prompt's "# Zero-cost proxy" section: the proxy and its code, or the aggregate
  and the code of each component."""
  if not fitness.is_aggregate:
    spec = proxy_lib.get(fitness.components[0])
    parts = [f"The zero-cost proxy is {spec.name}; a higher score is better."]
    if options.code:
      parts += ["Its code:", _fenced(spaces_lib.source_of(spec.joint or spec.fn))]
    return parts
  parts = [f"The fitness aggregates several zero-cost proxies by rank: {fitness.describe()}. "
           "The score is that aggregate; a higher score is better, and a child gains by ranking "
           "higher on each component. Ranks change as architectures are evaluated, so a score "
           "can fall without its architecture changing. The user turn lists the parent's score "
           "on each component and its percentile among the evaluated architectures."]
  shown = set()
  for name in fitness.components:
    spec = proxy_lib.get(name)
    parts.append(f"## {name}")
    code = spec.joint or spec.fn  # proxies computed together (AZ-NAS) share one function
    if spec.joint is not None:
      parts.append(f"The entry {name!r} of what {spec.joint.__name__} returns.")
    if options.code:
      parts.append("(code as above)" if code in shown else _fenced(spaces_lib.source_of(code)))
      shown.add(code)
  return parts


@functools.lru_cache(maxsize=32)
def mutation_system_prompt(space: spaces_lib.Space, proxy: str, options: PromptOptions) -> str:
  """The system turn of a mutation request (cached: it depends on nothing that changes).

  ``proxy`` is the fitness name: a proxy or an aggregate (`rznas_jax.fitness`).
  """
  fitness = parse_fitness(proxy)
  name = fitness.name
  parts = [
      "# Role and task",
      "You are an expert in zero-cost neural architecture search and in evolutionary algorithms. "
      "You are the mutation operator of an evolutionary search: you receive a parent "
      "architecture as a genotype string with its zero-cost proxy score, and you return one "
      "child architecture from the search space below that you expect to score higher. The "
      "score is computed by code after you answer; you cannot set it.",
      "",
      "# Search space and operations",
      f"The operations of the {space.name} search space are: "
      f"{', '.join(op.name for op in space.operations())}. Every operation in a child must "
      "belong to this list.",
  ]
  if options.text or options.code:
    shown_code: set[str] = set()
    for op in space.operations():
      parts.append(f"## {op.name}")
      if options.text:
        parts.append(op.text)
      if options.code and op.code not in shown_code:
        shown_code.add(op.code)
        parts.append(_fenced(op.code))
      elif options.code:
        parts.append("(code as above)")
  if options.system_reflection:
    parts += ["", "# System reflection",
              "Reflect before you mutate: as the expert in evolutionary mutation, think about what "
              "the proxy rewards, what the parent lacks, and what earlier attempts taught, and "
              "let that guide the change." + ("" if options.structured else
                                               " Give your reasoning after the JSON, inside "
                                               "<Thinking> ... </Thinking>.")]
  parts += ["", "# Network construction", space.rules()]
  if options.code:
    parts.append(_fenced(space.construction_code()))
  parts += ["", "# Architecture mutation",
            "Change the parent by replacing operations with others from the list and, where the "
            "space has them, by changing their parameters. Keep the child a valid member of the "
            "space: a reply that breaks a rule is rejected and the attempt is lost.",
            "", "# Zero-cost proxy", *_proxy_section(fitness, options)]
  if options.structured:
    parts += ["", "# Reply format",
              'Reply with exactly one JSON object and nothing else: {"arch": "<child genotype>"}. '
              "The reply is constrained to this form; do not send code."]
  else:
    parts += ["", "# Reply format",
              'Reply with one JSON object in a ```json fence: {"arch": "<child genotype>", '
              f'"type": "{name}", "score": <your guess>}}. Nothing else is read from the '
              "reply; do not send code."]
  if options.example:
    parent, child, why = space.example()
    parts += ["", "# Example", "User:", "Mutate the below architecture.",
              _fenced(parent_json(parent, name, 1.0), "json")]
    if options.structured:  # The reasoning first, as a comment on the reply it leads to.
      parts += [f"(Reasoning, not part of the reply: {why})", "Assistant:",
                json.dumps({"arch": child})]
    else:
      parts += ["Assistant:", _fenced(parent_json(child, name, 2.0), "json"),
                f"<Thinking>\n{why}\n</Thinking>"]
  return "\n".join(parts)


def reflection_lines(memory: Sequence[Reflection], k: int) -> list[str]:
  recent = list(memory)[-k:] if k > 0 else []
  return [f"{i}. {r.text}" for i, r in enumerate(recent, 1)]


def history_lines(history: ParentHistory) -> list[str]:
  """The user turn's sections on what the search knows around the parent; a section with no
  lines is left out, so a fresh parent's prompt is as short as it can be."""
  out: list[str] = []
  if history.components:
    out += [COMPONENTS_HEADER,
            f"Percentiles are among the {history.evaluated} architectures evaluated so far "
            "(100 = the best)."]
    out += [f"- {name}: {_number(value)} (percentile {pct:.1f})"
            for name, value, pct in history.components]
  if history.tried:
    out += [TRIED_HEADER, "Scored already; proposing one again wastes the attempt."]
    out += [f"{i}. {g} (score {_number(s)})" for i, (g, s) in enumerate(history.tried, 1)]
  if history.neighbours:
    out += [NEIGHBOURS_HEADER, "These cells differ from the parent on one edge and were scored "
            "already; prefer a change not listed here."]
    out += [f"{i}. {g} (score {_number(s)})" for i, (g, s) in enumerate(history.neighbours, 1)]
  return out


def mutation_request(space: spaces_lib.Space, proxy: str, parent: str, score: float,
                     memory: Sequence[Reflection], options: PromptOptions, *, temperature: float,
                     seed: int, history: ParentHistory = ParentHistory()) -> Request:
  """The request that asks the LLM to mutate ``parent`` (scored ``score`` by the fitness
  ``proxy``), with what the search knows around it (``history``)."""
  user = ["Mutate the below architecture.", _fenced(parent_json(parent, proxy, score), "json")]
  user += history_lines(history)
  lines = reflection_lines(memory, options.memory) if options.reflection else []
  if lines:
    user += [REFLECTION_HEADER, *lines]
  schema, grammar = reply_constraints(space) if options.structured else (None, None)
  return Request(system=mutation_system_prompt(space, proxy, options),
                 messages=(Message("user", "\n".join(user)),), temperature=temperature, seed=seed,
                 max_output_tokens=options.max_output_tokens, purpose=MUTATION,
                 response_schema=schema, grammar=grammar)


@functools.lru_cache(maxsize=32)
def reply_constraints(space: spaces_lib.Space) -> tuple[str, str]:
  """The space's mutation-reply schema (canonical JSON text) and GBNF grammar."""
  schema = json.dumps(space.reply_schema(), sort_keys=True, separators=(",", ":"))
  return schema, space.reply_grammar()


REFLECTION_SYSTEM = (
    "You review one step of an evolutionary neural architecture search whose mutation operator is "
    "an LLM and whose fitness is a zero-cost proxy score (higher is better). You are given the "
    "architecture before and after the mutation, their scores and any exception. Generate "
    "suggestions for designing mutations with better performance: say what the change did, "
    "whether to repeat or avoid that kind of change, and what to try next. Keep what the earlier "
    "reflections learned that still holds. Answer in a few plain sentences; no code.")


def reflection_request(space: spaces_lib.Space, proxy: str, parent: str,
                       parent_score: float, child: str | None, child_score: float | None,
                       error: str | None, memory: Sequence[Reflection], options: PromptOptions, *,
                       temperature: float, seed: int) -> Request:
  """The request that asks for advice on one attempt (valid or not)."""
  attempt = {"type": proxy, "parent": parent, "parent_score": format_score(parent_score),
             "child": child, "child_score": format_score(child_score), "exception": error or ""}
  user = [f"Search space: {space.name}.", "The attempt:", _fenced(json.dumps(attempt), "json")]
  lines = reflection_lines(memory, options.memory)
  if lines:
    user += [EARLIER_HEADER, *lines]
  return Request(system=REFLECTION_SYSTEM, messages=(Message("user", "\n".join(user)),),
                 temperature=temperature, seed=seed, max_output_tokens=options.max_output_tokens,
                 purpose=REFLECTION)
