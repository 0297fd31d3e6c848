"""The DARTS cell space (NAS-Bench-301): the `Genotype` value, its two text forms and validation.

A DARTS network stacks two kinds of cell, normal and reduce. Each cell has two input nodes (0 and
1: the outputs of the two previous cells) and four intermediate nodes 2..5. Node ``k`` sums two
operations, each applied to one earlier node ``0..k-1``, and the cell's output concatenates nodes
2..5 (Liu, Simonyan & Yang, "DARTS: Differentiable Architecture Search", ICLR 2019; the
``Genotype`` namedtuple of quark0/darts ``cnn/genotypes.py``). NAS-Bench-301 (Siems et al., 2020)
uses the same cells with the seven ops of `OPS_NB301`; DARTS's own search also had ``none``.

Two text forms are read and written:

* the DARTS repository's ``Genotype(normal=[('sep_conv_3x3', 0), ...], normal_concat=[2, 3, 4, 5],
  reduce=[...], reduce_concat=[2, 3, 4, 5])``, which is the canonical genotype string here;
* NASLib's compact encoding ``[[(input, op index), ...] * 8 normal, [...] * 8 reduce]``.

Neither is ever given to ``eval``: both are read by the small hand parsers below, since the text
may come from an LLM.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Sequence, Union

from rznas_jax.errors import UserError

# The compact encoding's op indices follow this order: NASLib's `OPS` list in
# naslib/search_spaces/nasbench301/conversions.py (`convert_genotype_to_compact`,
# `convert_compact_to_genotype`). It is also quark0/darts's PRIMITIVES without the leading 'none'.
OPS_NB301: tuple[str, ...] = ("max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3",
                              "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5")
# The eight candidate ops of the original DARTS search (quark0/darts `PRIMITIVES`, same order).
OPS_DARTS: tuple[str, ...] = ("none",) + OPS_NB301

NUM_NODES = 4  # intermediate nodes per cell
FIRST_NODE = 2  # nodes 0 and 1 are the cell's inputs
PAIRS_PER_CELL = 2 * NUM_NODES
CONCAT: tuple[int, ...] = tuple(range(FIRST_NODE, FIRST_NODE + NUM_NODES))  # (2, 3, 4, 5)
CELLS = ("normal", "reduce")

Pair = tuple[str, int]


class DartsGenotypeError(UserError):
  """Text that cannot be read as a DARTS genotype or compact encoding."""


@dataclasses.dataclass(frozen=True)
class Genotype:
  """One DARTS architecture: an (op, input node) pair per edge of the normal and reduce cells.

  Pairs ``2 * (k - 2)`` and ``2 * (k - 2) + 1`` of a cell feed node ``k`` (k = 2..5). The value
  holds whatever was parsed; `validate` says whether it is a member of the space. Frozen and
  hashable (lists become tuples), so it can be a static argument, a dict key or a set member.

  Example:
    >>> g = Genotype.parse(str(DARTS_V2))
    >>> g == DARTS_V2, g.normal[7]
    (True, ('dil_conv_3x3', 2))
  """

  normal: tuple[Pair, ...]
  reduce: tuple[Pair, ...]
  normal_concat: tuple[int, ...] = CONCAT
  reduce_concat: tuple[int, ...] = CONCAT

  def __post_init__(self):
    for cell in CELLS:
      pairs = tuple((str(op), int(node)) for op, node in getattr(self, cell))
      object.__setattr__(self, cell, pairs)
      object.__setattr__(self, f"{cell}_concat", tuple(int(n) for n in getattr(self, f"{cell}_concat")))

  @classmethod
  def parse(cls, text: str) -> "Genotype":
    """`parse_genotype`."""
    return parse_genotype(text)

  @property
  def genotype(self) -> str:
    """The canonical genotype string (`format_genotype`)."""
    return format_genotype(self)

  def __str__(self) -> str:
    return self.genotype


def format_genotype(genotype: Genotype) -> str:
  """The canonical string: the repr of quark0/darts's namedtuple with list-valued concats.

  Args:
    genotype: the architecture.

  Returns:
    ``Genotype(normal=[('op', node), ...], normal_concat=[...], reduce=[...], reduce_concat=[...])``.
  """

  def pairs(cell):
    return "[" + ", ".join(f"('{op}', {node})" for op, node in cell) + "]"

  def ints(values):
    return "[" + ", ".join(str(v) for v in values) + "]"

  return (f"Genotype(normal={pairs(genotype.normal)}, normal_concat={ints(genotype.normal_concat)}, "
          f"reduce={pairs(genotype.reduce)}, reduce_concat={ints(genotype.reduce_concat)})")


# --- the tokenizer shared by both parsers ----------------------------------------------------------
_TOKEN = re.compile(r"(?:(?P<name>[A-Za-z_][A-Za-z0-9_]*)|(?P<int>-?\d+)|'(?P<sq>[^'\n]*)'"
                    r"|\"(?P<dq>[^\"\n]*)\"|(?P<punct>[()\[\],=]))")


@dataclasses.dataclass(frozen=True)
class _Token:
  kind: str  # "name", "int", "str", "punct", "end" or "bad" (value: the error message)
  value: Union[str, int]
  pos: int
  text: str  # as written, for error messages


def _tokenize(text: str, what: str) -> list[_Token]:
  tokens = []
  pos = 0
  while True:
    while pos < len(text) and text[pos].isspace():
      pos += 1
    if pos == len(text):
      tokens.append(_Token("end", "", pos, "the end of the text"))
      return tokens
    m = _TOKEN.match(text, pos)
    if m is None:
      # Reported only when the reader gets here, so an earlier mistake is named first.
      tokens.append(_Token("bad", f"cannot read {text[pos]!r} at character {pos} of the {what}; "
                           f"only names, quoted op names, integers and ( ) [ ] , = may appear.",
                           pos, text[pos]))
      return tokens
    if m.group("name") is not None:
      tok = _Token("name", m.group("name"), m.start("name"), m.group("name"))
    elif m.group("int") is not None:
      tok = _Token("int", int(m.group("int")), m.start("int"), m.group("int"))
    elif m.group("sq") is not None or m.group("dq") is not None:
      value = m.group("sq") if m.group("sq") is not None else m.group("dq")
      tok = _Token("str", value, m.start(0), m.group(0))
    else:
      tok = _Token("punct", m.group("punct"), m.start("punct"), m.group("punct"))
    tokens.append(tok)
    pos = m.end()


class _Reader:
  """Recursive-descent reading of a token list; every failure names the token and the expectation."""

  def __init__(self, text: str, what: str):
    self.what = what
    self.tokens = _tokenize(text, what)
    self.i = 0

  def peek(self) -> _Token:
    tok = self.tokens[self.i]
    if tok.kind == "bad":
      raise DartsGenotypeError(tok.value)
    return tok

  def fail(self, expected: str, tok: _Token | None = None):
    tok = tok or self.peek()
    shown = tok.text if tok.kind == "end" else repr(tok.text)
    raise DartsGenotypeError(f"unexpected {shown} at character {tok.pos} of the {self.what}; "
                             f"expected {expected}.")

  def take(self, kind: str, value=None, expected: str | None = None) -> _Token:
    tok = self.peek()
    if tok.kind != kind or (value is not None and tok.value != value):
      self.fail(expected or (repr(value) if value is not None else f"a {kind}"))
    self.i += 1
    return tok

  def accept(self, value: str) -> bool:
    tok = self.peek()
    if tok.kind == "punct" and tok.value == value:
      self.i += 1
      return True
    return False

  def sequence(self, item, expected_item: str) -> list:
    """``[a, b, ...]`` or ``(a, b, ...)``, a trailing comma allowed."""
    tok = self.peek()
    if not (tok.kind == "punct" and tok.value in "(["):
      self.fail(f"'[' to open a list of {expected_item}")
    close = "]" if tok.value == "[" else ")"
    self.i += 1
    items = []
    while not self.accept(close):
      items.append(item())
      if not self.accept(","):
        self.take("punct", close, f"',' or {close!r} after {expected_item}")
        break
    return items

  def end(self):
    self.take("end", expected="the end of the text")


def _read_pair(r: _Reader) -> Pair:
  r.take("punct", "(", "'(' to open an (op, input) pair such as ('sep_conv_3x3', 0)")
  op = r.take("str", expected="a quoted op name such as 'sep_conv_3x3'").value
  r.take("punct", ",", "',' between the op name and its input node")
  node = r.take("int", expected="the input node number (an integer)").value
  r.accept(",")
  r.take("punct", ")", "')' to close the (op, input) pair")
  return op, node


def _read_concat(r: _Reader) -> tuple[int, ...]:
  tok = r.peek()
  if tok.kind == "name":
    if tok.value != "range":
      r.fail("a list of node numbers such as [2, 3, 4, 5] or range(2, 6)")
    r.i += 1
    r.take("punct", "(", "'(' after range")
    start = r.take("int", expected="the first node of the range").value
    r.take("punct", ",", "',' between the two ends of the range")
    stop = r.take("int", expected="the end of the range").value
    r.take("punct", ")", "')' to close range(...)")
    return tuple(range(start, stop))
  return tuple(r.sequence(lambda: r.take("int", expected="a node number").value, "node numbers"))


def parse_genotype(text: str) -> Genotype:
  """Reads the DARTS repository's genotype string (never with ``eval``).

  Accepted: the four keywords in any order, each once; a concat as a list or as ``range(a, b)``;
  lists in ``[]`` or ``()``; single or double quotes; any whitespace; trailing commas. The result
  is not checked against the space: call `validate` for that.

  Args:
    text: e.g. ``Genotype(normal=[('sep_conv_3x3', 0), ...], normal_concat=range(2, 6), ...)``.

  Returns:
    The `Genotype`.

  Raises:
    DartsGenotypeError: the text is not of that form; the message names the bad token.
  """
  if not isinstance(text, str):
    raise DartsGenotypeError(f"a DARTS genotype must be a string, got {type(text).__name__}.")
  r = _Reader(text, "DARTS genotype")
  r.take("name", "Genotype", "'Genotype' to start the genotype")
  r.take("punct", "(", "'(' after Genotype")
  fields: dict[str, object] = {}
  keys = ("normal", "normal_concat", "reduce", "reduce_concat")
  while not r.accept(")"):
    tok = r.peek()
    if tok.kind != "name" or tok.value not in keys:
      r.fail(f"one of the fields {', '.join(keys)}")
    if tok.value in fields:
      raise DartsGenotypeError(f"the field {tok.value!r} appears twice in the DARTS genotype (at "
                               f"character {tok.pos}); give each of {', '.join(keys)} once.")
    r.i += 1
    r.take("punct", "=", f"'=' after {tok.value}")
    if tok.value.endswith("_concat"):
      fields[tok.value] = _read_concat(r)
    else:
      fields[tok.value] = tuple(r.sequence(lambda: _read_pair(r), "(op, input) pairs"))
    if not r.accept(","):
      r.take("punct", ")", "',' or ')' after a field")
      break
  missing = [k for k in keys if k not in fields]
  if missing:
    raise DartsGenotypeError(f"the DARTS genotype lacks the field {missing[0]!r}; it needs all of "
                             f"{', '.join(keys)}.")
  r.end()
  return Genotype(**fields)


# --- NASLib's compact encoding -----------------------------------------------------------------------
Compact = tuple[tuple[tuple[int, int], ...], tuple[tuple[int, int], ...]]


def _read_compact(text: str) -> list:
  r = _Reader(text, "compact encoding")

  def pair():
    ints = r.sequence(lambda: r.take("int", expected="an integer").value, "integers")
    if len(ints) != 2:
      r.fail("a pair (input node, op index) of two integers", r.tokens[r.i - 1])
    return tuple(ints)

  cells = r.sequence(lambda: r.sequence(pair, "(input node, op index) pairs"), "cells")
  r.end()
  return cells


def from_compact(compact: Union[str, Sequence]) -> Genotype:
  """A genotype from NASLib's compact encoding (normal cell, then reduce; pairs (input, op index)).

  The op index counts in `OPS_NB301`, the order of NASLib's
  naslib/search_spaces/nasbench301/conversions.py. Concats are always 2..5.

  Args:
    compact: the text, e.g. ``[[(0, 0), (1, 5), ...], [(1, 0), ...]]``, or the nested sequence.

  Returns:
    The `Genotype` (call `validate` to check it is a member of the space).

  Raises:
    DartsGenotypeError: unreadable text, not two cells, a pair that is not two integers, or an
      op index outside 0..6.
  """
  cells = _read_compact(compact) if isinstance(compact, str) else compact
  try:
    cells = [[(int(node), int(op)) for node, op in cell] for cell in cells]
  except (TypeError, ValueError) as e:
    raise DartsGenotypeError(f"a compact encoding is two lists of (input node, op index) integer "
                             f"pairs; reading {compact!r} failed ({e}).") from None
  if len(cells) != 2:
    raise DartsGenotypeError(f"a compact encoding has 2 cells (normal, reduce), got {len(cells)}.")
  for cell in cells:
    for _, op in cell:
      if not 0 <= op < len(OPS_NB301):
        raise DartsGenotypeError(f"op index {op} is out of range; valid op indices are "
                                 f"0..{len(OPS_NB301) - 1} ({', '.join(OPS_NB301)}).")
  normal, reduce = ([(OPS_NB301[op], node) for node, op in cell] for cell in cells)
  return Genotype(normal=normal, reduce=reduce)


def to_compact(genotype: Genotype) -> Compact:
  """NASLib's compact encoding of ``genotype``: ``((normal pairs), (reduce pairs))`` of (input, op index).

  Raises:
    DartsGenotypeError: an op outside `OPS_NB301` (``none`` has no compact index).
  """
  out = []
  for cell in CELLS:
    pairs = []
    for op, node in getattr(genotype, cell):
      if op not in OPS_NB301:
        raise DartsGenotypeError(f"op {op!r} has no compact index; the compact encoding knows "
                                 f"{', '.join(OPS_NB301)}.")
      pairs.append((node, OPS_NB301.index(op)))
    out.append(tuple(pairs))
  return tuple(out)


def format_compact(compact: Compact) -> str:
  """The compact encoding as NASLib's zero-cost tables key it: ``[[(0, 0), ...], [(1, 0), ...]]``."""
  return "[" + ", ".join("[" + ", ".join(f"({a}, {b})" for a, b in cell) + "]" for cell in compact) + "]"


# --- membership ------------------------------------------------------------------------------------
def validate(genotype: Union[Genotype, str], ops: Sequence[str] = OPS_NB301,
             distinct_inputs: bool = True) -> list[str]:
  """Every reason ``genotype`` is not a DARTS cell pair of this space; empty when it is one.

  Each reason is one sentence naming the bad value and what would be valid, written to go back to
  an LLM. Never raises for a string: a parse error becomes the only reason.

  Args:
    genotype: a `Genotype` or its string.
    ops: the allowed ops, `OPS_NB301` (NAS-Bench-301) or `OPS_DARTS` (adds ``none``).
    distinct_inputs: whether the two inputs of a node must be different nodes, as in DARTS's
      derived genotypes (each node keeps its two strongest edges from distinct predecessors).

  Returns:
    The reasons, in cell and node order.
  """
  if isinstance(genotype, str):
    try:
      genotype = parse_genotype(genotype)
    except DartsGenotypeError as e:
      return [str(e)]
  reasons: list[str] = []
  for cell in CELLS:
    pairs = getattr(genotype, cell)
    if len(pairs) != PAIRS_PER_CELL:
      reasons.append(f"the {cell} cell has {len(pairs)} (op, input) pairs; a DARTS cell has "
                     f"{PAIRS_PER_CELL}, two for each of the nodes {FIRST_NODE} to "
                     f"{FIRST_NODE + NUM_NODES - 1}.")
    for i, (op, node) in enumerate(pairs):
      k = FIRST_NODE + i // 2
      where = f"{cell} cell node {k}"
      if op not in ops:
        reasons.append(f"{where} uses unknown op {op!r}; valid ops are {', '.join(ops)}.")
      if i < PAIRS_PER_CELL and not 0 <= node < k:
        reasons.append(f"{where} reads from node {node}, which it cannot; node {k} may read "
                       f"from nodes 0 to {k - 1}.")
    if distinct_inputs:
      for i in range(0, min(len(pairs), PAIRS_PER_CELL) - 1, 2):
        if pairs[i][1] == pairs[i + 1][1]:
          reasons.append(f"{cell} cell node {FIRST_NODE + i // 2} takes both inputs from node "
                         f"{pairs[i][1]}; the two inputs of a node must come from different nodes.")
    concat = getattr(genotype, f"{cell}_concat")
    if concat != CONCAT:
      reasons.append(f"{cell}_concat is {list(concat)}, but a DARTS cell concatenates nodes "
                     f"{list(CONCAT)}.")
  return reasons


def check(text: str, ops: Sequence[str] = OPS_NB301,
          distinct_inputs: bool = True) -> tuple[str | None, list[str]]:
  """The canonical string and ``[]`` when ``text`` is a valid genotype, else None and the reasons."""
  reasons = validate(text, ops, distinct_inputs)
  if reasons:
    return None, reasons
  return format_genotype(parse_genotype(text)), []


# The DARTS (second-order) cells of the paper's CIFAR-10 results: DARTS_V2 of quark0/darts
# cnn/genotypes.py (the repository's default `DARTS = DARTS_V2`).
DARTS_V2 = Genotype(
    normal=[("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("sep_conv_3x3", 1),
            ("sep_conv_3x3", 1), ("skip_connect", 0), ("skip_connect", 0), ("dil_conv_3x3", 2)],
    reduce=[("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 1),
            ("max_pool_3x3", 0), ("skip_connect", 2), ("skip_connect", 2), ("max_pool_3x3", 1)],
)
