"""The offline agent: the default LLM backend when no key is set, a program behind the protocol.

It answers the very prompts an LLM gets, in the same reply format, so a search runs the same way
offline and online, and its runs are recorded and replayed like any other backend's.

* **Mutation.** It reads the parent (the user turn's JSON) and the reflection memory, generates
  candidate edits with the space's own mutation operators (NB201: every single-edge op change;
  macro spaces: Zen-NAS mutations that stay within the rules and budgets), and picks one by
  Thompson sampling over the edit kinds: each kind's record of raised/tried, read from the
  reflection memory, is a Beta posterior on "this kind of edit raises the score". The
  temperature is its exploration rate: with that probability, scaled, it takes a uniform
  candidate, and sometimes a second edit. It never proposes a cell the prompt lists as evaluated
  (the parent's earlier children, its evaluated one-edit neighbours) while another is reachable:
  on NB201, once every one-edit neighbour is listed, it draws from the two-edit cells instead.
* **Reflection.** It reads the attempt (parent, child, scores, exception), names the edits, says
  whether to repeat or avoid them, and carries the running raised/tried record forward in plain
  text (``Observed edits (raised/tried): a->b 3/4; ...``), the memory the next prompts show.

Everything it does is a function of the request (its randomness comes from ``request.seed``), so
replies are reproducible and a resumed search continues exactly as an uninterrupted one would.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Sequence

import numpy as np

from rznas_jax.llm.base import LLMError, Request, Response
from rznas_jax.search import prompts
from rznas_jax.search import replies
from rznas_jax.spaces import base as spaces_lib

_RECORD = re.compile(r"Observed edits \(raised/tried\): ([^\n]*)")
_ENTRY = re.compile(r"(\S+) (\d+)/(\d+)")
_MACRO_CANDIDATES = 16
_MAX_RECORD = 40


def read_record(texts: Sequence[str]) -> dict[str, tuple[int, int]]:
  """The raised/tried record of each edit kind in reflection texts; per kind, the entry seen most
  often (most tried) wins, since later reflections carry the earlier ones forward."""
  record: dict[str, tuple[int, int]] = {}
  for text in texts:
    for match in _RECORD.finditer(text):
      for kind, raised, tried in _ENTRY.findall(match.group(1)):
        r, t = int(raised), int(tried)
        if t >= record.get(kind, (0, -1))[1]:
          record[kind] = (min(r, t), t)
  return record


def format_record(record: dict[str, tuple[int, int]]) -> str:
  ranked = sorted(record.items(), key=lambda kv: (-kv[1][1], kv[0]))[:_MAX_RECORD]
  return "Observed edits (raised/tried): " + "; ".join(f"{k} {r}/{t}" for k, (r, t) in ranked) + "."


def _section(text: str, header: str) -> list[str]:
  """The numbered lines under ``header`` in a prompt."""
  if header not in text:
    return []
  lines = text.split(header, 1)[1].splitlines()
  return [re.sub(r"^\d+\.\s*", "", line) for line in lines if re.match(r"^\d+\.\s", line)]


def listed_genotypes(text: str, header: str) -> list[str]:
  """The genotypes a prompt lists under ``header`` (``1. <genotype> (score ...)`` lines), up to
  the next ``#`` header."""
  if header not in text:
    return []
  out = []
  for line in text.split(header, 1)[1].splitlines()[1:]:
    if line.startswith("#"):
      break
    # The genotype runs to the " (score ...)" suffix: a DARTS genotype has spaces in it.
    match = re.match(r"^\d+\.\s+(.+?)(?:\s+\(score [^()]*\))?\s*$", line)
    if match:
      out.append(match.group(1))
  return out


class OfflineAgent:
  """A `Backend` that mutates and reflects without a network; see the module docstring.

  Args:
    space: the search space its candidates come from.
    model: the model name its responses carry.
  """

  name = "offline"

  def __init__(self, space: spaces_lib.Space, model: str = "offline-agent-1"):
    self.space = space
    self.model = model

  def complete(self, request: Request) -> Response:
    if request.purpose == prompts.MUTATION:
      text = self._mutate(request)
    elif request.purpose == prompts.REFLECTION:
      text = self._reflect(request)
    else:
      raise LLMError(f"the offline agent answers mutation and reflection requests, not "
                     f"{request.purpose!r}.")
    prompt = request.system + request.prompt_text
    return Response(text=text, model=self.model, input_tokens=len(prompt) // 4,
                    output_tokens=len(text) // 4, latency_s=0.0,
                    call_id=f"offline-{uuid.UUID(request.fingerprint()[:32])}", backend=self.name,
                    structured="json_schema" if request.response_schema is not None else "")

  # --- mutation ---------------------------------------------------------------------------------
  def _candidates(self, parent: str, rng: np.random.Generator,
                  evaluated: frozenset[str] = frozenset()) -> list[tuple[str, list[str]]]:
    """(child, edit kinds) one edit from ``parent``, none of them in ``evaluated``."""
    neighbours = self.space.neighbours(parent)
    if neighbours:  # a space small enough to list them (NB201): every one-edit child
      return [(child, self.space.edits(parent, child)) for child in neighbours
              if child not in evaluated]
    out, seen = [], {parent, *evaluated}
    for _ in range(_MACRO_CANDIDATES):
      child = self.space.random_mutation(parent, rng)
      if child not in seen and self.space.check(child)[0] is not None:
        seen.add(child)
        out.append((child, self.space.edits(parent, child)))
    return out

  def _two_edit_candidates(self, parent: str, evaluated: frozenset[str]) -> list[tuple[str, list[str]]]:
    """NB201: the cells two edits from ``parent``, none in ``evaluated`` (each once)."""
    out: dict[str, list[str]] = {}
    for near in self.space.neighbours(parent):
      for child in self.space.neighbours(near):
        if child not in out and child not in evaluated:
          kinds = self.space.edits(parent, child)
          if len(kinds) == 2:
            out[child] = kinds
    return list(out.items())

  def _choose(self, candidates, record, temperature, rng):
    if rng.random() < 0.3 * temperature:
      return candidates[int(rng.integers(len(candidates)))]
    draws: dict[str, float] = {}
    for _, kinds in candidates:
      for k in kinds:
        if k not in draws:
          raised, tried = record.get(k, (0, 0))
          draws[k] = rng.beta(raised + 1, tried - raised + 1)
    values = [np.mean([draws[k] for k in kinds]) if kinds else 0.0 for _, kinds in candidates]
    return candidates[int(np.argmax(values))]

  def _mutate(self, request: Request) -> str:
    text = request.prompt_text
    parent_obj = replies.first_json_object(text) or {}
    parent = parent_obj.get("arch")
    if not isinstance(parent, str) or self.space.check(parent)[0] is None:
      return 'I cannot read the parent architecture from the prompt.\n```json\n{}\n```'
    parent = self.space.check(parent)[0]
    proxy = str(parent_obj.get("type", "the proxy"))
    memory = _section(text, prompts.REFLECTION_HEADER)
    record = read_record(memory)
    evaluated = frozenset([parent, *listed_genotypes(text, prompts.TRIED_HEADER),
                           *listed_genotypes(text, prompts.NEIGHBOURS_HEADER)])
    rng = np.random.default_rng(request.seed if request.seed is not None else 0)
    candidates = self._candidates(parent, rng, evaluated)
    one_edit = bool(candidates)
    if not one_edit and self.space.neighbours(parent):
      candidates = self._two_edit_candidates(parent, evaluated)  # every neighbour is evaluated
    if not candidates:
      child, kinds = self.space.random_mutation(parent, rng), ["random"]
    else:
      child, kinds = self._choose(candidates, record, request.temperature, rng)
      if one_edit and rng.random() < 0.25 * request.temperature:  # a second edit on top
        more = self._candidates(child, rng, evaluated)
        if more:
          child, extra = self._choose(more, record, request.temperature, rng)
          kinds = kinds + extra
    known = {k: record[k] for k in kinds if k in record}
    why = (f"Edits of the kind {', '.join(kinds)} have raised {proxy} in "
           + ", ".join(f"{r} of {t} ({k})" for k, (r, t) in known.items()) + " earlier attempts."
           if known else f"No record yet for {', '.join(kinds)}; trying it to learn its effect.")
    if request.response_schema is not None:  # Structured: the bare object the schema admits.
      return json.dumps({"arch": child})
    reply = {"arch": child, "type": proxy, "score": parent_obj.get("score")}
    return f"```json\n{json.dumps(reply)}\n```\n<Thinking>\n{why}\n</Thinking>"

  # --- reflection -------------------------------------------------------------------------------
  def _reflect(self, request: Request) -> str:
    text = request.prompt_text
    attempt = replies.first_json_object(text) or {}
    record = read_record(_section(text, prompts.EARLIER_HEADER))
    parent, child = attempt.get("parent"), attempt.get("child")
    proxy = attempt.get("type", "the proxy")
    before, after = attempt.get("parent_score"), attempt.get("child_score")
    error = attempt.get("exception") or ""
    kinds: list[str] = []
    if isinstance(parent, str) and isinstance(child, str):
      try:
        kinds = self.space.edits(parent, child)
      except Exception:  # pylint: disable=broad-except
        kinds = []  # the attempt's text came from the LLM side; do not trust it to parse
    if error and after is None:
      advice = (f"The attempt was rejected: {error} Keep every operation in the allowed list, "
                "follow the genotype format exactly and stay within the budgets.")
      if kinds:
        for k in kinds:
          raised, tried = record.get(k, (0, 0))
          record[k] = (raised, tried + 1)
    elif before is not None and after is not None and kinds:
      raised = after > before
      verb = "raised" if raised else ("kept" if after == before else "lowered")
      for k in kinds:
        r, t = record.get(k, (0, 0))
        record[k] = (r + int(raised), t + 1)
      advice = (f"The change {', '.join(kinds)} {verb} {proxy} from {before:.4g} to {after:.4g}. "
                + ("Repeat this kind of change on other parents." if raised else
                   "Avoid this kind of change; try another operation instead."))
    else:
      advice = "The attempt changed nothing that could be measured; make a real change next time."
    return f"{advice} {format_record(record)}"
