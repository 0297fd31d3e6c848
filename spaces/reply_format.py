"""What a mutation reply may be, per search space: a regex, a JSON schema and a GBNF grammar.

A mutation reply is the JSON object ``{"arch": "<genotype>"}`` (`rznas_jax.search.replies`).
Backends that can constrain decoding send one of the forms built here, so that the model can only
write a genotype of the right shape:

* `reply_schema`: a JSON schema whose ``arch`` string carries `arch_pattern` as its ``pattern``,
  in the shape OpenAI's strict structured outputs require (every property required, no
  additional properties). Gemini's ``response_schema`` and llama.cpp's ``json_schema`` take the
  same schema (a backend may adapt its shape).
* `reply_grammar`: a llama.cpp GBNF grammar of the whole reply object.

The pattern uses only the regex subset that JSON Schema's ``pattern`` (ECMA-262), OpenAI's strict
mode and llama.cpp's JSON-schema-to-grammar converter all read: literals with backslash escapes,
character classes, plain ``( )`` groups, ``|``, ``?`` and ``{m,n}``. There are no lookarounds, no
backreferences, no ``\\d`` and no ``(?:`` (llama.cpp's converter rejects it), and every quantified
item is a class or a group (the converter would apply a quantifier that follows an escaped
character to the whole literal before it).

Both forms are rendered from one expression tree, built from the data the parsers use
(`nb201.OPS`, `macro.BLOCK_TYPES`, the space's allowed blocks and limits), so they admit the same
genotypes. For NAS-Bench-201 that is exactly the 15,625 cells in their canonical form. For a
macro space it is the block syntax of `macro.parse_structure` in canonical form (no spaces), with:

* only the space's allowed block names, each with its own argument count (4 for ``SuperConv``
  blocks, 5 for residual blocks, which take ``bottleneck_channels``);
* channel numbers from 1 to the space's ``max_channels`` (2048 in every space), without leading
  zeros. That is the widest ``out_channels`` or ``bottleneck_channels`` `MacroSpace.validate`
  accepts, and so the widest ``in_channels`` of a chained structure. It is also where the Zen-NAS
  mutation clips widths in the ResNet-like and MAE-DET spaces (``macro_mutation.XXBL``,
  ``MAEDET``; the IDW rule does not clip from above, and the validator refuses what it widens
  past 2048);
* stride 1 or 2, ``sub_layers`` from 1 to ``max_layers``;
* 1 to ``max_layers`` blocks (every block has at least one layer under both layer counts of
  `macro.count_layers`);
* a ``stem_only`` block (MAE-DET's 3×3 stem) only as the first block.

Budgets, the layer sum, channel chaining, multiples of 8 and the stage count stay the validator's
job: a regex cannot count them.

References:
  GBNF: https://github.com/ggml-org/llama.cpp/blob/master/grammars/README.md
  llama.cpp's pattern converter: ``_visit_pattern`` in llama.cpp
    ``examples/json_schema_to_grammar.py`` (and its C++ twin ``common/json-schema-to-grammar.cpp``).
  OpenAI strict mode: https://platform.openai.com/docs/guides/structured-outputs (supported
    schemas: ``pattern``; ``additionalProperties: false``; all fields required).

Example:
  >>> from rznas_jax import spaces
  >>> print(arch_pattern(spaces.get("nb201")).split(")")[0] + ")")
  ^\\|(none|skip_connect|nor_conv_1x1|nor_conv_3x3|avg_pool_3x3)
"""

from __future__ import annotations

import dataclasses
import json
import string
from typing import TYPE_CHECKING, Union

from rznas_jax.spaces import macro
from rznas_jax.spaces import nb201

if TYPE_CHECKING:
  from rznas_jax.spaces import base
  from rznas_jax.spaces import macro_spaces

  AnySpace = base.Space

REPLY_KEY = "arch"
"""The key of the genotype in a mutation reply (`rznas_jax.search.replies.parse_mutation_reply`)."""

_STRIDES = (1, 2)  # MacroSpace.validate: "stride is 1 or 2".
_REGEX_SPECIAL = set("\\^$.|?*+()[]{}")
_PLAIN_CHARS = set(string.ascii_letters + string.digits + "_~|+(),-[]'= ")


# --- an expression tree with two renderings ----------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Lit:
  """A literal string."""
  text: str


@dataclasses.dataclass(frozen=True)
class _Chars:
  """One character out of inclusive ``(first, last)`` ranges of letters or digits."""
  ranges: tuple[tuple[str, str], ...]


@dataclasses.dataclass(frozen=True)
class _Seq:
  items: tuple["_Expr", ...]


@dataclasses.dataclass(frozen=True)
class _Alt:
  items: tuple["_Expr", ...]


@dataclasses.dataclass(frozen=True)
class _Repeat:
  """``item`` between ``lo`` and ``hi`` times (both inclusive)."""
  item: "_Expr"
  lo: int
  hi: int


@dataclasses.dataclass(frozen=True)
class _Rule:
  """A named sub-expression: a GBNF rule, inlined in the regex. Names are GBNF names
  (letters, digits and dashes)."""
  name: str
  body: "_Expr"


_Expr = Union[_Lit, _Chars, _Seq, _Alt, _Repeat, _Rule]


def _seq(*items: _Expr) -> _Expr:
  """A sequence with neighbouring literals merged."""
  out: list[_Expr] = []
  for item in items:
    if isinstance(item, _Lit) and out and isinstance(out[-1], _Lit):
      out[-1] = _Lit(out[-1].text + item.text)
    else:
      out.append(item)
  return out[0] if len(out) == 1 else _Seq(tuple(out))


def _alt(items: list[_Expr]) -> _Expr:
  return items[0] if len(items) == 1 else _Alt(tuple(items))


def _class_body(chars: _Chars) -> str:
  for first, last in chars.ranges:
    if not (first.isascii() and first.isalnum() and last.isascii() and last.isalnum()
            and first <= last):
      raise ValueError(f"character range {first}-{last} is not a range of letters or digits.")
  return "".join(first if first == last else f"{first}-{last}" for first, last in chars.ranges)


def _quantifier(lo: int, hi: int) -> str:
  if (lo, hi) == (1, 1):
    return ""
  if (lo, hi) == (0, 1):
    return "?"
  return f"{{{lo}}}" if lo == hi else f"{{{lo},{hi}}}"


def _regex(expr: _Expr, context: str = "top") -> str:
  """The regex of ``expr``; ``context`` is ``top`` (anything goes) or ``seq`` (inside a
  sequence, where an alternation needs a group)."""
  if isinstance(expr, _Rule):
    return _regex(expr.body, context)
  if isinstance(expr, _Lit):
    return "".join("\\" + c if c in _REGEX_SPECIAL else c for c in expr.text)
  if isinstance(expr, _Chars):
    return f"[{_class_body(expr)}]"
  if isinstance(expr, _Seq):
    return "".join(_regex(item, "seq") for item in expr.items)
  if isinstance(expr, _Alt):
    text = "|".join(_regex(item, "top") for item in expr.items)
    return f"({text})" if context == "seq" else text
  if isinstance(expr, _Repeat):
    item = expr.item.body if isinstance(expr.item, _Rule) else expr.item
    inner = _regex(item) if isinstance(item, _Chars) else f"({_regex(item)})"
    return inner + _quantifier(expr.lo, expr.hi)
  raise TypeError(f"not a reply-format expression: {expr!r}")


def _gbnf_literal(text: str) -> str:
  return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _gbnf(expr: _Expr, rules: dict[str, str], context: str = "top") -> str:
  """The GBNF of ``expr``; rule definitions met on the way are added to ``rules``.

  ``context`` is ``top``, ``seq`` (an alternation needs a group) or ``atom`` (an operand of a
  repetition: a sequence needs a group too).
  """
  if isinstance(expr, _Rule):
    if expr.name not in rules:
      rules[expr.name] = ""  # reserve the name (and its place in the order) before the body
      rules[expr.name] = _gbnf(expr.body, rules)
    elif rules[expr.name] and rules[expr.name] != _gbnf(expr.body, dict(rules)):
      raise ValueError(f"two different GBNF rules are named {expr.name!r}.")
    return expr.name
  if isinstance(expr, _Lit):
    return _gbnf_literal(expr.text)
  if isinstance(expr, _Chars):
    return f"[{_class_body(expr)}]"
  if isinstance(expr, _Seq):
    text = " ".join(_gbnf(item, rules, "seq") for item in expr.items)
    return f"({text})" if context == "atom" else text
  if isinstance(expr, _Alt):
    text = " | ".join(_gbnf(item, rules) for item in expr.items)
    return f"({text})" if context != "top" else text
  if isinstance(expr, _Repeat):
    return _gbnf(expr.item, rules, "atom") + _quantifier(expr.lo, expr.hi)
  raise TypeError(f"not a reply-format expression: {expr!r}")


def _check_json_safe(expr: _Expr) -> None:
  """Raises unless every character ``expr`` can produce may stand unescaped in a JSON string
  and needs no escape in a GBNF literal beyond what `_gbnf_literal` does."""
  if isinstance(expr, _Lit):
    bad = [c for c in expr.text if c not in _PLAIN_CHARS]
    if bad:
      raise ValueError(f"genotype literal {expr.text!r} has the character {bad[0]!r}, which a "
                       "reply format cannot carry unescaped.")
  elif isinstance(expr, _Chars):
    _class_body(expr)
  elif isinstance(expr, (_Seq, _Alt)):
    for item in expr.items:
      _check_json_safe(item)
  elif isinstance(expr, _Repeat):
    _check_json_safe(expr.item)
  elif isinstance(expr, _Rule):
    _check_json_safe(expr.body)


# --- the genotypes of each space -------------------------------------------------------------


def _digit_rows(low: str, high: str) -> list[list[tuple[str, str]]]:
  """Rows of ``(first, last)`` digit ranges, one range per position, that write exactly the
  numbers ``low..high``; both have the same number of digits and ``low`` is 1 or 0 followed by
  zeros."""
  if len(low) == 1:
    return [[(low, high)]]
  rest = len(low) - 1
  if high[1:] == "9" * rest:
    return [[(low[0], high[0])] + [("0", "9")] * rest]
  below = [[(low[0], chr(ord(high[0]) - 1))] + [("0", "9")] * rest] if high[0] > low[0] else []
  return below + [[(high[0], high[0])] + row for row in _digit_rows("0" * rest, high[1:])]


def _positive_integers(high: int) -> _Expr:
  """The decimal numbers ``1..high`` without leading zeros."""
  if high < 1:
    raise ValueError(f"the largest number {high} must be at least 1.")
  rows = []
  for digits in range(1, len(str(high)) + 1):
    rows += _digit_rows(str(10 ** (digits - 1)), str(min(high, 10**digits - 1)))
  alternatives = []
  for row in rows:
    items: list[_Expr] = []
    for first, last in row:
      if first == last:
        items.append(_Lit(first))
      elif items and isinstance(items[-1], _Repeat) and items[-1].item == _Chars(((first, last),)):
        items[-1] = _Repeat(items[-1].item, items[-1].lo + 1, items[-1].hi + 1)
      elif items and items[-1] == _Chars(((first, last),)):
        items[-1] = _Repeat(items[-1], 2, 2)
      else:
        items.append(_Chars(((first, last),)))
    alternatives.append(_seq(*items))
  return _alt(alternatives)


def nb201_genotype() -> _Expr:
  """``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|`` with ``op`` any of `nb201.OPS` (`nb201.
  format_genotype`): node j reads nodes 0..j-1, nodes joined by ``+``."""
  nodes = next(n for n in range(2, nb201.NUM_EDGES + 2) if n * (n - 1) // 2 == nb201.NUM_EDGES)
  op = _Rule("op", _alt([_Lit(o) for o in nb201.OPS]))
  items: list[_Expr] = []
  for node in range(1, nodes):
    items.append(_Lit("|" if node == 1 else "+|"))
    for source in range(node):
      items += [op, _Lit(f"~{source}|")]
  return _Rule("arch", _seq(*items))


def _macro_blocks(space: macro_spaces.MacroSpace, names: list[str], rule: str) -> _Expr:
  """Any one block of ``names`` with its arguments (``Name(a,b,...)``, `macro.Block.__str__`)."""
  channels = _Rule("channels", _positive_integers(space.max_channels))
  args = {
      "in_channels": channels,
      "out_channels": channels,
      "bottleneck_channels": channels,
      "stride": _Rule("stride", _Chars(tuple((str(s), str(s)) for s in _STRIDES))),
      "sub_layers": _Rule("sub-layers", _positive_integers(space.max_layers)),
  }
  by_args: dict[tuple[str, ...], list[str]] = {}
  for name in names:
    by_args.setdefault(macro.BLOCK_TYPES[name].arg_names, []).append(name)
  alternatives = []
  for arg_names, group in by_args.items():
    items: list[_Expr] = [_Rule(f"{rule}-names-{len(arg_names)}", _alt([_Lit(n) for n in group])),
                          _Lit("(")]
    for i, arg in enumerate(arg_names):
      items += [_Lit(",")] if i else []
      items.append(args[arg])
    items.append(_Lit(")"))
    alternatives.append(_seq(*items))
  return _Rule(rule, _alt(alternatives))


def macro_genotype(space) -> _Expr:
  """Blocks back to back (`macro.format_structure`), 1 to ``max_layers`` of them."""
  unknown = [n for n in space.allowed_blocks if n not in macro.BLOCK_TYPES]
  if unknown:
    raise ValueError(f"space {space.name} allows the unknown block {unknown[0]!r}; valid blocks "
                     f"are {', '.join(macro.BLOCK_TYPES)}.")
  max_blocks = space.max_layers
  later = [n for n in space.allowed_blocks if n not in space.stem_only]
  if len(later) == len(space.allowed_blocks):
    return _Rule("arch", _Repeat(_macro_blocks(space, later, "block"), 1, max_blocks))
  first = _macro_blocks(space, list(space.allowed_blocks), "first-block")
  if not later or max_blocks == 1:
    return _Rule("arch", first)
  return _Rule("arch", _seq(first, _Repeat(_macro_blocks(space, later, "block"), 0,
                                           max_blocks - 1)))


def literal(text: str) -> _Expr:
  """A literal piece of a genotype (for a space that writes its own `reply_expression`)."""
  return _Lit(text)


def choice(items: list[_Expr], name: str | None = None) -> _Expr:
  """One of ``items``; ``name`` makes it a named GBNF rule (letters, digits, dashes)."""
  expr = _alt(list(items))
  return _Rule(name, expr) if name else expr


def sequence(*items: _Expr, name: str | None = None) -> _Expr:
  """``items`` back to back; ``name`` makes it a named GBNF rule."""
  expr = _seq(*items)
  return _Rule(name, expr) if name else expr


def _genotype(space) -> _Expr:
  """The genotype expression of a `Space` (its `reply_expression`), checked to be JSON-safe."""
  expr = space.reply_expression()
  _check_json_safe(expr)
  return expr


# --- public ------------------------------------------------------------------------------------


def arch_pattern(space: AnySpace) -> str:
  """An anchored regex (``^...$``) of the genotypes a reply's ``arch`` may hold in ``space``.

  Args:
    space: a `Space` (`rznas_jax.spaces.base`); its `reply_expression` is the genotype
      language.

  Returns:
    The pattern, in the subset JSON Schema, OpenAI strict mode, llama.cpp and Python's `re` all
    read (see the module docstring). NAS-Bench-201: exactly the 15,625 canonical cells. Macro:
    the canonical block syntax with the space's blocks and bounds; budgets are not in it.

  Example:
    >>> import re
    >>> from rznas_jax import spaces
    >>> space = spaces.get("zen_cifar")
    >>> bool(re.fullmatch(arch_pattern(space), space.initial))
    True
  """
  return "^" + _regex(_genotype(space), "seq") + "$"  # "seq": a top-level | needs a group


def reply_schema(space: AnySpace) -> dict:
  """The JSON schema of a mutation reply, ``{"arch": <a string matching arch_pattern>}``.

  The shape is what OpenAI's strict structured outputs require: one required property and
  ``additionalProperties: false``.

  Args:
    space: as for `arch_pattern`.

  Returns:
    A fresh dict (callers may change it).

  Example:
    >>> from rznas_jax import spaces
    >>> reply_schema(spaces.get("nb201"))["required"]
    ['arch']
  """
  return {
      "type": "object",
      "properties": {REPLY_KEY: {"type": "string", "pattern": arch_pattern(space)}},
      "required": [REPLY_KEY],
      "additionalProperties": False,
  }


def reply_grammar(space: AnySpace) -> str:
  """A llama.cpp GBNF grammar whose ``root`` is exactly ``{"arch": "<genotype>"}``.

  ``<genotype>`` is what `arch_pattern` admits. Each place JSON allows whitespace (after ``{``,
  around ``:``, before ``}``) takes at most one space: unbounded whitespace lets small models
  loop on it. The grammar is not recursive; each rule is on one line.

  Args:
    space: as for `arch_pattern`.

  Returns:
    The grammar text, one ``name ::= ...`` rule a line, ``root`` first.

  Example:
    >>> from rznas_jax import spaces
    >>> reply_grammar(spaces.get("nb201")).splitlines()[0]
    'root ::= "{" ws "\\\\"arch\\\\"" ws ":" ws "\\\\"" arch "\\\\"" ws "}"'
  """
  genotype = _genotype(space)
  root = _seq(_Lit("{"), _Rule("ws", _Repeat(_Lit(" "), 0, 1)), _Lit(json.dumps(REPLY_KEY)),
              _Rule("ws", _Repeat(_Lit(" "), 0, 1)), _Lit(":"),
              _Rule("ws", _Repeat(_Lit(" "), 0, 1)), _Lit('"'), genotype, _Lit('"'),
              _Rule("ws", _Repeat(_Lit(" "), 0, 1)), _Lit("}"))
  rules: dict[str, str] = {}
  _gbnf(_Rule("root", root), rules)
  return "".join(f"{name} ::= {body}\n" for name, body in rules.items())
