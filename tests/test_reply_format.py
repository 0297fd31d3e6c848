"""Reply formats (`rznas_jax.spaces.reply_format`): the regex, the JSON schema and the GBNF grammar.

The grammar is checked with a small GBNF reader written here from llama.cpp's grammar README
(https://github.com/ggml-org/llama.cpp/blob/master/grammars/README.md), not with the module's
own renderer: it draws random strings from the grammar and turns it into a Python regex (the
grammars are not recursive). What the formats must admit comes from the spaces' own parsers,
formatters and random generators, and from a generator in this file that writes blocks with
`macro.Block`.
"""

from __future__ import annotations

import itertools
import json
import random
import re

import numpy as np
import pytest

from rznas_jax.search import replies
from rznas_jax import spaces
from rznas_jax.spaces import macro
from rznas_jax.spaces import macro_spaces
from rznas_jax.spaces import nb201

MACRO_NAMES = [n for n in spaces.names() if spaces.get(n).CONFIG_SECTION == "macro"]  # the block grammar
# The widest channel count `MacroSpace.validate` accepts (out and bottleneck; in is chained).
MAX_CHANNELS = 2048


# --- a GBNF reader for the subset the reply grammars use -------------------------------------------

_GBNF_TOKEN = re.compile(r"""
    (?P<space>\s+|\#[^\n]*)
  | (?P<define>::=)
  | (?P<name>[A-Za-z0-9-]+)
  | (?P<literal>"(?:[^"\\]|\\.)*")
  | (?P<chars>\[(?:[^\]\\]|\\.)*\])
  | (?P<quantifier>\{[0-9]+(?:,[0-9]*)?\}|[?*+])
  | (?P<punct>[()|])
""", re.VERBOSE)
_ESCAPES = {"\\": "\\", '"': '"', "n": "\n", "r": "\r", "t": "\t", "[": "[", "]": "]", "-": "-"}


def _unescape(body: str) -> str:
  out, i = [], 0
  while i < len(body):
    if body[i] == "\\":
      if body[i + 1] == "x":
        out.append(chr(int(body[i + 2:i + 4], 16)))
        i += 4
        continue
      out.append(_ESCAPES[body[i + 1]])
      i += 2
    else:
      out.append(body[i])
      i += 1
  return "".join(out)


def _char_set(body: str) -> frozenset[str]:
  """The characters of a positive ``[...]`` class body."""
  assert not body.startswith("^"), "the reply grammars use no negated classes"
  chars = []
  i = 0
  while i < len(body):
    c, i = (body[i:i + 2], i + 2) if body[i] == "\\" else (body[i], i + 1)
    c = _unescape(c)
    if i + 1 < len(body) and body[i] == "-":
      d, i = (body[i + 1:i + 3], i + 3) if body[i + 1] == "\\" else (body[i + 1], i + 2)
      chars += [chr(x) for x in range(ord(c), ord(_unescape(d)) + 1)]
    else:
      chars.append(c)
  return frozenset(chars)


class Gbnf:
  """A parsed GBNF grammar: ``rules`` maps a name to a tree of tuples.

  Nodes: ``("lit", text)``, ``("chars", frozenset)``, ``("ref", name)``, ``("seq", [nodes])``,
  ``("alt", [nodes])``, ``("rep", node, lo, hi)`` (``hi`` None: unbounded).
  """

  def __init__(self, text: str):
    tokens = []
    pos = 0
    while pos < len(text):
      m = _GBNF_TOKEN.match(text, pos)
      assert m, f"cannot read GBNF at {text[pos:pos + 30]!r}"
      pos = m.end()
      if m.lastgroup != "space":
        tokens.append((m.lastgroup, m.group()))
    starts = [i for i in range(len(tokens) - 1)
              if tokens[i][0] == "name" and tokens[i + 1][0] == "define"]
    assert starts and starts[0] == 0, "a grammar is a list of `name ::= ...` rules"
    self.rules: dict[str, tuple] = {}
    self.order: list[str] = []
    for start, end in zip(starts, starts[1:] + [len(tokens)]):
      name = tokens[start][1]
      assert name not in self.rules, f"rule {name} is defined twice"
      self._tokens, self._pos = tokens[start + 2:end], 0
      self.rules[name] = self._alternates()
      assert self._pos == len(self._tokens), f"trailing tokens in rule {name}"
      self.order.append(name)
    for name in self.rules:
      self._check_refs(self.rules[name], (name,))

  def _peek(self):
    return self._tokens[self._pos] if self._pos < len(self._tokens) else (None, None)

  def _alternates(self) -> tuple:
    items = [self._sequence()]
    while self._peek() == ("punct", "|"):
      self._pos += 1
      items.append(self._sequence())
    return items[0] if len(items) == 1 else ("alt", items)

  def _sequence(self) -> tuple:
    items = []
    while self._peek()[0] is not None and self._peek() not in (("punct", "|"), ("punct", ")")):
      items.append(self._postfix())
    return items[0] if len(items) == 1 else ("seq", items)

  def _postfix(self) -> tuple:
    node = self._primary()
    while self._peek()[0] == "quantifier":
      q = self._peek()[1]
      self._pos += 1
      if q in "?*+":
        lo, hi = {"?": (0, 1), "*": (0, None), "+": (1, None)}[q]
      elif "," in q:
        low, high = q[1:-1].split(",")
        lo, hi = int(low), int(high) if high else None
      else:
        lo = hi = int(q[1:-1])
      node = ("rep", node, lo, hi)
    return node

  def _primary(self) -> tuple:
    kind, text = self._peek()
    self._pos += 1
    if kind == "literal":
      return ("lit", _unescape(text[1:-1]))
    if kind == "chars":
      return ("chars", _char_set(text[1:-1]))
    if kind == "name":
      return ("ref", text)
    if (kind, text) == ("punct", "("):
      node = self._alternates()
      assert self._peek() == ("punct", ")"), "unbalanced parentheses"
      self._pos += 1
      return node
    raise AssertionError(f"unexpected GBNF token {text!r}")

  def _check_refs(self, node: tuple, path: tuple[str, ...]):
    if node[0] == "ref":
      assert node[1] in self.rules, f"rule {node[1]} is used but not defined"
      assert node[1] not in path, f"rule {node[1]} is recursive ({' -> '.join(path)})"
      self._check_refs(self.rules[node[1]], path + (node[1],))
    elif node[0] in ("seq", "alt"):
      for item in node[1]:
        self._check_refs(item, path)
    elif node[0] == "rep":
      self._check_refs(node[1], path)

  def sample(self, rng: random.Random, node: tuple | None = None) -> str:
    """A random string of the language (repetition counts and choices uniform)."""
    node = self.rules["root"] if node is None else node
    kind = node[0]
    if kind == "lit":
      return node[1]
    if kind == "chars":
      return rng.choice(sorted(node[1]))
    if kind == "ref":
      return self.sample(rng, self.rules[node[1]])
    if kind == "seq":
      return "".join(self.sample(rng, item) for item in node[1])
    if kind == "alt":
      return self.sample(rng, rng.choice(node[1]))
    _, item, lo, hi = node
    return "".join(self.sample(rng, item) for _ in range(rng.randint(lo, lo + 3 if hi is None else hi)))

  def regex(self, node: tuple | None = None) -> str:
    """A Python regex of the language (non-capturing groups everywhere)."""
    node = self.rules["root"] if node is None else node
    kind = node[0]
    if kind == "lit":
      return re.escape(node[1])
    if kind == "chars":
      return "[" + "".join(re.escape(c) for c in sorted(node[1])) + "]"
    if kind == "ref":
      return f"(?:{self.regex(self.rules[node[1]])})"
    if kind == "seq":
      return "".join(f"(?:{self.regex(item)})" for item in node[1])
    if kind == "alt":
      return "(?:" + "|".join(self.regex(item) for item in node[1]) + ")"
    _, item, lo, hi = node
    return f"(?:{self.regex(item)}){{{lo},{'' if hi is None else hi}}}"

  def language(self, node: tuple | None = None, limit: int = 1_000_000) -> set[str]:
    """Every string of a finite language (raises past ``limit`` strings)."""
    node = self.rules["root"] if node is None else node
    kind = node[0]
    if kind == "lit":
      out = {node[1]}
    elif kind == "chars":
      out = set(node[1])
    elif kind == "ref":
      out = self.language(self.rules[node[1]], limit)
    elif kind == "alt":
      out = set().union(*(self.language(item, limit) for item in node[1]))
    else:
      if kind == "seq":
        parts = [self.language(item, limit) for item in node[1]]
      else:
        _, item, lo, hi = node
        assert hi is not None, "an unbounded repetition has an infinite language"
        one = self.language(item, limit)
        parts = [set().union(*({"".join(p) for p in itertools.product(*[one] * n)}
                               for n in range(lo, hi + 1)))]
      out = {""}
      for part in parts:
        out = {a + b for a in out for b in part}
        assert len(out) <= limit, "language too large to list"
    return out


def test_gbnf_reader_on_a_hand_written_grammar():
  g = Gbnf('root ::= "a" x{1,2} ("-" | [0-1])? y+\n# a comment\nx ::= [b-c]\ny ::= "\\"z"\n')
  pattern = re.compile(g.regex())
  for text in ['ab"z', 'abc-"z"z', 'acb1"z']:
    assert pattern.fullmatch(text), text
  for text in ["ab", 'ad"z', 'abbb"z', 'ab2"z']:
    assert not pattern.fullmatch(text), text
  rng = random.Random(0)
  assert all(pattern.fullmatch(g.sample(rng)) for _ in range(100))
  with pytest.raises(AssertionError, match="recursive"):
    Gbnf('root ::= "a" root?\n')
  with pytest.raises(AssertionError, match="not defined"):
    Gbnf("root ::= missing\n")
  fin = Gbnf('root ::= [ab] "-"? [ab]{1,2}\n')
  assert len(fin.language()) == 2 * 2 * (2 + 4)


# --- helpers ----------------------------------------------------------------------------------------


def _space(name):
  return spaces.get(name)


def _forms(space):
  """(compiled arch pattern, compiled reply regex of the grammar, the grammar)."""
  grammar = Gbnf(space.reply_grammar())
  return re.compile(space.arch_pattern()), re.compile(grammar.regex()), grammar


def _reply(arch: str, spaced: bool = True) -> str:
  return json.dumps({"arch": arch}, separators=(", ", ": ") if spaced else (",", ":"))


# --- every space: shapes and the regex subset ------------------------------------------------------


@pytest.mark.parametrize("name", spaces.names())
def test_schema_is_strict_shape_with_the_pattern(name):
  space = _space(name)
  pattern = space.arch_pattern()
  assert space.reply_schema() == {
      "type": "object",
      "properties": {"arch": {"type": "string", "pattern": pattern}},
      "required": ["arch"],
      "additionalProperties": False,
  }
  assert json.loads(json.dumps(space.reply_schema())) == space.reply_schema()
  re.compile(pattern)


@pytest.mark.parametrize("name", spaces.names())
def test_pattern_stays_in_the_portable_regex_subset(name):
  pattern = _space(name).arch_pattern()
  assert pattern.startswith("^") and pattern.endswith("$")
  body = pattern[1:-1]
  assert "^" not in body and "$" not in body
  assert "(?" not in body, "no lookarounds, flags or non-capturing groups"
  assert "." not in body.replace("\\.", ""), "no wildcards"
  # Escapes only of punctuation: no \d, \w, \s, \b or backreferences.
  assert not re.search(r"\\[A-Za-z0-9]", body)
  # Every quantifier follows a class or a group (llama.cpp glues escaped literals together).
  for m in re.finditer(r"\{[0-9]+(,[0-9]+)?\}|(?<!\\)[?*+]", body):
    before = body[:m.start()]
    assert before.endswith("]") or (before.endswith(")") and not before.endswith("\\)")), m


@pytest.mark.parametrize("name", spaces.names())
def test_grammar_whitespace_is_one_optional_space(name):
  space = _space(name)
  _, reply_re, grammar = _forms(space)
  assert grammar.order[0] == "root"
  arch = space.random_population(1, np.random.default_rng(0))[0]
  pieces = ["{", '"arch"', ":", f'"{arch}"', "}"]
  for spaces_at in itertools.product(["", " "], repeat=4):
    text = "".join(p + s for p, s in zip(pieces, spaces_at + ("",)))
    assert reply_re.fullmatch(text), text
    assert json.loads(text) == {"arch": arch}
  for gap in range(4):
    for ws in ["  ", "\n", "\t", " \n"]:
      text = "".join(p + (ws if i == gap else "") for i, p in enumerate(pieces))
      assert not reply_re.fullmatch(text), text
  for text in [" " + _reply(arch), _reply(arch) + " ", _reply(arch) + "\n", f'{{"arch": "{arch}",}}',
               f'{{"arch": "{arch}", "score": 1}}', f"{{'arch': '{arch}'}}", f'{{"Arch": "{arch}"}}',
               f'{{"arch": " {arch}"}}', f'{{"arch": "{arch} "}}', f'```json\n{_reply(arch)}\n```']:
    assert not reply_re.fullmatch(text), text


# --- NAS-Bench-201 --------------------------------------------------------------------------------

_CELLS = [nb201.Arch.from_code(i).genotype for i in range(nb201.NUM_ARCHS)]


def test_nb201_pattern_and_grammar_admit_every_cell():
  pattern, reply_re, _ = _forms(_space("nb201"))
  for genotype in _CELLS:
    assert pattern.fullmatch(genotype), genotype
    assert reply_re.fullmatch(_reply(genotype)), genotype
  assert reply_re.fullmatch(_reply(_CELLS[-1], spaced=False))


def test_nb201_grammar_language_is_exactly_the_cells():
  _, _, grammar = _forms(_space("nb201"))
  replies_ = grammar.language()
  assert len(replies_) == nb201.NUM_ARCHS * 2**4  # four optional spaces per reply
  assert {json.loads(r)["arch"] for r in replies_} == set(_CELLS)


def _edits(text: str, alphabet: str):
  """Every string one deletion, substitution or insertion away from ``text``."""
  for i in range(len(text) + 1):
    if i < len(text):
      yield text[:i] + text[i + 1:]
    for c in alphabet:
      yield text[:i] + c + text[i:]
      if i < len(text):
        yield text[:i] + c + text[i + 1:]


def test_nb201_pattern_is_exact_one_edit_around_cells():
  """Around sampled cells, a string matches if and only if it is one of the 15,625."""
  pattern, reply_re, _ = _forms(_space("nb201"))
  cells = set(_CELLS)
  alphabet = "".join(sorted(set("".join(nb201.OPS)) | set("|~+0123 X")))
  rng = random.Random(0)
  for genotype in rng.sample(_CELLS, 12):
    for text in _edits(genotype, alphabet):
      assert bool(pattern.fullmatch(text)) == (text in cells), text
      assert bool(reply_re.fullmatch(_reply(text))) == (text in cells), text


_NB201_BASE = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
_NB201_NEAR_MISSES = [
    _NB201_BASE.replace("avg_pool_3x3", "max_pool_3x3"),  # unknown op
    _NB201_BASE.replace("nor_conv_3x3~0|+|", "conv_3x3~0|+|"),  # unknown op
    _NB201_BASE.replace("nor_conv_3x3~1", "nor_conv_3x3~0"),  # wrong source index
    _NB201_BASE.replace("skip_connect~2", "skip_connect~3"),  # source out of range
    _NB201_BASE[1:],  # missing leading |
    _NB201_BASE[:-1],  # missing trailing |
    _NB201_BASE.replace("|+|", "+", 1),  # missing | around +
    _NB201_BASE[:-1] + "|none~3|",  # extra edge
    _NB201_BASE.replace("|skip_connect~0|nor_conv_3x3~1|skip_connect~2|", "|skip_connect~0|"),
    _NB201_BASE + "+|none~0|none~1|none~2|none~3|",  # extra node
    _NB201_BASE.upper(),
    _NB201_BASE.replace("skip_connect", "Skip_connect"),
    _NB201_BASE.replace("avg_pool_3x3", "Avg_pool_3x3"),
    _NB201_BASE.replace("skip_connect~2", "None~2"),
    _NB201_BASE.replace("|", " | "),
    " " + _NB201_BASE,
    _NB201_BASE.replace("~", "-"),
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|",  # two nodes
    "",
]


@pytest.mark.parametrize("text", _NB201_NEAR_MISSES)
def test_nb201_near_misses_match_neither_form(text):
  pattern, reply_re, _ = _forms(_space("nb201"))
  assert pattern.fullmatch(_NB201_BASE) and reply_re.fullmatch(_reply(_NB201_BASE))
  assert text != _NB201_BASE and text not in set(_CELLS)
  assert not pattern.fullmatch(text)
  assert not reply_re.fullmatch(_reply(text))


def test_nb201_grammar_samples_are_cells_and_ok_replies():
  space = _space("nb201")
  pattern, _, grammar = _forms(space)
  rng = random.Random(1)
  seen = set()
  for _ in range(300):
    reply = grammar.sample(rng)
    arch = json.loads(reply)["arch"]
    assert nb201.parse_genotype(arch).genotype == arch
    assert pattern.fullmatch(arch)
    parsed = replies.parse_mutation_reply(reply, space)
    assert (parsed.kind, parsed.genotype) == ("ok", arch), parsed
    seen.add(arch)
  assert len(seen) > 250  # the sampler really draws across the space


# --- macro spaces ---------------------------------------------------------------------------------


def _valid_structures(space, rng) -> list[str]:
  """The initial structure, a random population and accepted chains of random mutations."""
  out = [space.initial] + space.random_population(50, rng)
  for _ in range(4):
    current = space.initial
    for _ in range(40):
      child = space.random_mutation(current, rng)
      genotype, _ = space.check(child)
      if genotype is not None:
        current = genotype
        out.append(genotype)
  return out


@pytest.mark.parametrize("name", MACRO_NAMES)
def test_macro_forms_admit_valid_structures(name):
  space = _space(name)
  pattern, reply_re, _ = _forms(space)
  structures = _valid_structures(space, np.random.default_rng(0))
  assert len(set(structures)) > 60
  if name == "mobilenet_imagenet":
    structures.append(macro_spaces.ZICO_450M)
  for structure in structures:
    assert space.check(structure)[0] == structure, structure
    assert pattern.fullmatch(structure), structure
    assert reply_re.fullmatch(_reply(structure)), structure


def _spec_structure(space, rng: random.Random, extreme: bool = False) -> str:
  """A structure inside the regex's bounds, written with `macro.Block` (budgets ignored)."""
  ms = space
  n = rng.choice([1, ms.max_layers]) if extreme else rng.randint(1, ms.max_layers)
  blocks = []
  for i in range(n):
    names = [b for b in ms.allowed_blocks if i == 0 or b not in ms.stem_only]
    name = rng.choice(names)
    channel = (lambda: rng.choice([1, 9, 10, 99, 100, 999, 1000, MAX_CHANNELS])) if extreme else (
        lambda: rng.randint(1, MAX_CHANNELS))
    layers = rng.choice([1, ms.max_layers]) if extreme else rng.randint(1, ms.max_layers)
    btn = None if macro.BLOCK_TYPES[name].family == "conv" else channel()
    blocks.append(macro.Block(name, channel(), channel(), rng.choice([1, 2]), layers, btn))
  return macro.format_structure(macro.Arch(tuple(blocks)))


@pytest.mark.parametrize("name", MACRO_NAMES)
def test_macro_forms_admit_the_block_syntax_within_bounds(name):
  space = _space(name)
  pattern, reply_re, _ = _forms(space)
  rng = random.Random(2)
  for i in range(200):
    structure = _spec_structure(space, rng, extreme=i % 2 == 0)
    assert pattern.fullmatch(structure), structure
    assert reply_re.fullmatch(_reply(structure)), structure


@pytest.mark.parametrize("name", MACRO_NAMES)
def test_channel_bound_is_the_validators(name):
  """MAX_CHANNELS is the widest out/bottleneck width `MacroSpace.validate` lets through."""
  ms = _space(name)
  blocks = list(macro.parse_structure(ms.initial).blocks)

  def width_reasons(width: int) -> list[str]:
    blocks[-1] = blocks[-1].replace(out_channels=width)
    return [r for r in ms.validate(macro.Arch(tuple(blocks))) if "out_channels" in r]

  assert width_reasons(MAX_CHANNELS) == []
  assert width_reasons(MAX_CHANNELS + ms.channel_multiple)


@pytest.mark.parametrize("name", MACRO_NAMES)
def test_macro_number_ranges_are_exact(name):
  """Each channel argument takes exactly 1..MAX_CHANNELS, sub_layers exactly 1..max_layers,
  stride exactly 1 or 2, all written without leading zeros."""
  space = _space(name)
  pattern, reply_re, _ = _forms(space)
  base = macro.parse_structure(space.initial).blocks
  head, block, tail = base[0], base[1], base[2:]
  assert block.bottleneck is not None

  def with_args(args: list[str]) -> str:
    rest = "".join(map(str, tail))
    return f"{head}{block.name}({','.join(args)}){rest}"

  args = [str(a) for a in block.args]
  limits = {0: MAX_CHANNELS, 1: MAX_CHANNELS, 2: 2, 3: MAX_CHANNELS, 4: space.max_layers}
  for position, high in limits.items():
    for value in range(0, MAX_CHANNELS + 12):
      for text in ([str(value), "0" + str(value)] if value < 200 else [str(value)]):
        changed = list(args)
        changed[position] = text
        structure = with_args(changed)
        want = text == str(value) and 1 <= value <= high
        assert bool(pattern.fullmatch(structure)) == want, structure
        if value % 97 == 0 or value <= 20 or abs(value - high) <= 2:
          assert bool(reply_re.fullmatch(_reply(structure))) == want, structure


def _near_misses(space) -> dict[str, str]:
  ms = space
  base = macro.parse_structure(ms.initial).blocks
  first, second = base[0], base[1]
  rest = "".join(map(str, base[2:]))
  s1 = str(second)
  foreign = [n for n, t in macro.BLOCK_TYPES.items() if t.family != "conv" and n not in ms.allowed_blocks]
  same_family = [n for n in foreign if macro.BLOCK_TYPES[n].family == second.family]
  args = [str(a) for a in second.args]
  out = {
      "block not in the space": f"{first}{foreign[0]}({','.join(args)}){rest}",
      "unknown block": f"{first}SuperResK9K9({','.join(args)}){rest}",
      "lowercase name": f"{first}{s1.lower()}{rest}",
      "one argument short": f"{first}{second.name}({','.join(args[:-1])}){rest}",
      "one argument extra": f"{first}{second.name}({','.join(args + ['1'])}){rest}",
      "conv block with a bottleneck": f"{first.name}(3,{first.out_channels},{first.stride},8,1){s1}{rest}",
      "stride 3": f"{first}{second.name}({','.join(args[:2] + ['3'] + args[3:])}){rest}",
      "stride 0": f"{first}{second.name}({','.join(args[:2] + ['0'] + args[3:])}){rest}",
      "zero channels": f"{first}{second.name}({','.join([args[0], '0'] + args[2:])}){rest}",
      "leading zero": f"{first}{second.name}({','.join([args[0], '0' + args[1]] + args[2:])}){rest}",
      "negative channels": f"{first}{second.name}({','.join([args[0], '-' + args[1]] + args[2:])}){rest}",
      "plus sign": f"{first}{second.name}({','.join([args[0], '+' + args[1]] + args[2:])}){rest}",
      "too wide": f"{first}{second.name}({','.join([args[0], str(MAX_CHANNELS + 8)] + args[2:])}){rest}",
      "sub_layers 0": f"{first}{second.name}({','.join(args[:-1] + ['0'])}){rest}",
      "sub_layers past max_layers": f"{first}{second.name}({','.join(args[:-1] + [str(ms.max_layers + 1)])}){rest}",
      "spaces in a block": f"{first}{second.name}({', '.join(args)}){rest}",
      "space between blocks": f"{first} {s1}{rest}",
      "semicolon between blocks": f"{first};{s1}{rest}",
      "missing parenthesis": f"{first}{s1[:-1]}{rest}",
      "too many blocks": f"{first}" + str(second.replace(in_channels=second.out_channels, stride=1,
                                                         sub_layers=1)) * ms.max_layers,
      "no blocks": "",
      "text around": f"arch: {ms.initial}",
  }
  if same_family:
    out["same family, not in the space"] = f"{first}{same_family[0]}({','.join(args)}){rest}"
  if ms.stem_only:
    again = macro.Block(first.name, first.out_channels, first.out_channels, 1, 1)
    out["stem block after the stem"] = f"{first}{again}{s1}{rest}"
  return out


@pytest.mark.parametrize("name", MACRO_NAMES)
def test_macro_near_misses_are_refused(name):
  space = _space(name)
  pattern, reply_re, _ = _forms(space)
  assert pattern.fullmatch(space.initial)
  for why, text in _near_misses(space).items():
    assert text != space.initial
    assert not pattern.fullmatch(text), (why, text)
    assert not reply_re.fullmatch(_reply(text)), (why, text)


@pytest.mark.parametrize("name", MACRO_NAMES)
def test_macro_grammar_samples_parse(name):
  """Grammar samples always parse with the block grammar and come back in canonical form. Many
  break a budget, the layer limit or the in/out chaining: only `MacroSpace.validate` can judge
  those, so they are not asked to pass it."""
  space = _space(name)
  ms = space
  pattern, _, grammar = _forms(space)
  rng = random.Random(3)
  budget_words = ("input channels", "layers", "parameters", "FLOPs", "multiple of", "outside",
                  "stride-2", "stages", "halves")
  for _ in range(300):
    reply = grammar.sample(rng)
    arch = json.loads(reply)["arch"]
    assert pattern.fullmatch(arch), arch
    parsed = macro.parse_structure(arch)
    assert macro.format_structure(parsed) == arch
    assert 1 <= len(parsed.blocks) <= ms.max_layers
    for i, b in enumerate(parsed.blocks):
      assert b.name in ms.allowed_blocks and (i == 0 or b.name not in ms.stem_only), arch
      assert 1 <= min(b.in_channels, b.out_channels) and max(b.in_channels, b.out_channels) <= MAX_CHANNELS
      assert b.stride in (1, 2) and 1 <= b.sub_layers <= ms.max_layers
    for reason in ms.validate(arch):
      assert any(w in reason for w in budget_words), reason
    kind = replies.parse_mutation_reply(reply, space).kind
    assert kind in ("ok", "invalid")


# --- llama.cpp, when it is installed --------------------------------------------------------------


def _llama_cpp():
  try:
    import llama_cpp  # pylint: disable=import-outside-toplevel
  except ImportError:
    pytest.skip("llama_cpp (llama-cpp-python) is not installed; the grammars are checked only by "
                "this file's GBNF reader")
  if not hasattr(llama_cpp, "llama_sampler_init_grammar"):
    pytest.skip("this llama_cpp has no llama_sampler_init_grammar to parse a grammar with")
  return llama_cpp


def _llama_cpp_parses(llama_cpp, grammar: str) -> bool:
  """Whether llama.cpp's own GBNF parser reads ``grammar``.

  llama-cpp-python's ``LlamaGrammar.from_string`` only stores the text; the C parser runs when a
  grammar sampler is made, and it needs no vocabulary for that (llama.cpp's
  ``tests/test-gbnf-validator.cpp`` parses with none either). A null sampler means a parse error.
  """
  sampler = llama_cpp.llama_sampler_init_grammar(None, grammar.encode(), b"root")
  if not sampler:
    return False
  llama_cpp.llama_sampler_free(sampler)
  return True


def test_llama_cpp_parser_refuses_a_broken_grammar():
  llama_cpp = _llama_cpp()
  assert _llama_cpp_parses(llama_cpp, 'root ::= "a" [0-9]{1,3}\n')
  assert not _llama_cpp_parses(llama_cpp, 'root ::= "a" missing\n')


@pytest.mark.parametrize("name", spaces.names())
def test_llama_cpp_reads_the_grammar_and_converts_the_schema(name):
  llama_cpp = _llama_cpp()
  space = _space(name)
  grammar = space.reply_grammar()
  llama_cpp.LlamaGrammar.from_string(grammar, verbose=False)
  assert _llama_cpp_parses(llama_cpp, grammar)
  convert = getattr(llama_cpp.llama_grammar, "json_schema_to_gbnf", None)
  if convert is None:
    pytest.skip("this llama_cpp has no llama_grammar.json_schema_to_gbnf")
  converted = convert(json.dumps(space.reply_schema()))
  assert _llama_cpp_parses(llama_cpp, converted), converted
