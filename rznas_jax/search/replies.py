"""Reading an LLM's mutation reply (docs/search.md): data in, a genotype or a reason out.

The reply is text. We look for the first JSON object in it (inside a ```json fence or not, with
prose or a ``<Thinking>`` block around it), read its ``"arch"``, and check that against the
space's grammar and budgets. The ``"score"`` the LLM wrote is a guess and is ignored. Nothing in
a reply is ever executed or imported: code in a reply is just text that is not JSON.
"""

from __future__ import annotations

import dataclasses
import json
import re

from rznas_jax.spaces import base as spaces_lib

_THINKING = re.compile(r"<thinking>(.*?)(?:</thinking>|$)", re.IGNORECASE | re.DOTALL)
_MAX_QUOTED = 200


@dataclasses.dataclass(frozen=True)
class ParsedReply:
  """What a reply amounts to.

  Attributes:
    genotype: the child in canonical form, or None when the reply is rejected.
    error: why the reply was rejected (one or more sentences, for reflection), or None.
    kind: ``ok`` or the rejection class (``empty``, ``no_json``, ``no_arch``, ``invalid``) for
      counters.
    thinking: the text of the ``<Thinking>`` block, for the log.
  """
  genotype: str | None
  error: str | None
  kind: str
  thinking: str = ""


def first_json_object(text: str, key: str | None = None) -> dict | None:
  """The first ``{...}`` in ``text`` that parses as a JSON object (the first with ``key``, when
  one has it), or None."""
  decoder = json.JSONDecoder()
  first = None
  for match in re.finditer(r"\{", text):
    try:
      value, _ = decoder.raw_decode(text, match.start())
    except json.JSONDecodeError:
      continue
    if isinstance(value, dict):
      if key is None or key in value:
        return value
      first = value if first is None else first
  return first


def _quote(text: str) -> str:
  text = " ".join(text.split())
  return text if len(text) <= _MAX_QUOTED else text[:_MAX_QUOTED] + "..."


def parse_mutation_reply(text: str, space: spaces_lib.Space) -> ParsedReply:
  """Parses and validates a mutation reply against ``space``.

  Args:
    text: the reply, exactly as received.
    space: the search space the child must belong to.

  Returns:
    A `ParsedReply`; its ``error`` names what was wrong in words the LLM can act on.
  """
  thinking = " ".join(m.strip() for m in _THINKING.findall(text or ""))
  if not text or not text.strip():
    return ParsedReply(None, 'The reply was empty; answer with one JSON object {"arch": ...}.',
                       "empty", thinking)
  obj = first_json_object(text, "arch")
  if obj is None:
    return ParsedReply(None, "The reply contains no JSON object; answer with one JSON object "
                       f'{{"arch": "<child genotype>", ...}}. The reply began: {_quote(text)!r}.',
                       "no_json", thinking)
  if "arch" not in obj:
    keys = ", ".join(sorted(map(str, obj))) or "none"
    return ParsedReply(None, f'The reply\'s JSON object has no "arch" key (its keys: {keys}); '
                       'put the child genotype under "arch".', "no_arch", thinking)
  arch = obj["arch"]
  if not isinstance(arch, str):
    return ParsedReply(None, f'The reply\'s "arch" is a {type(arch).__name__}, not a string; give '
                       "the child genotype as one string.", "no_arch", thinking)
  genotype, reasons = space.check(arch.strip())
  if genotype is None:
    return ParsedReply(None, f"The child {_quote(arch)!r} is not valid: " + " ".join(reasons),
                       "invalid", thinking)
  return ParsedReply(genotype, None, "ok", thinking)
