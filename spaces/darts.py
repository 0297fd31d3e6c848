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
    if tok.kind == "end":
      raise DartsGenotypeError(f"the {self.what} ends too early (character {tok.pos}); expected "
                               f"{expected}.")
    raise DartsGenotypeError(f"unexpected {tok.text!r} at character {tok.pos} of the {self.what}; "
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


# --- the space -------------------------------------------------------------------------------------

import json  # noqa: E402  (the space's part of the module)
import os  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

from rznas_jax.spaces import reply_format  # noqa: E402
from rznas_jax.spaces.base import Operation, ReplyFormat, SpaceError, source_of  # noqa: E402

OP_SETS = {"nb301": OPS_NB301, "darts": OPS_DARTS}

_TEXT = {
    "none": "outputs zeros: the edge carries nothing.",
    "max_pool_3x3": "3x3 max pooling (padding 1; stride 2 on a reduction cell's inputs); in the "
                    "scored network a BN without affine parameters follows it.",
    "avg_pool_3x3": "3x3 average pooling (padding 1, padded pixels not counted; stride 2 on a "
                    "reduction cell's inputs); in the scored network a BN follows it.",
    "skip_connect": "the identity; on a reduction cell's inputs a factorized reduce (ReLU, two "
                    "1x1 stride-2 convs on pixel grids offset by one, concatenated, BN).",
    "sep_conv_3x3": "separable conv, twice: ReLU, 3x3 depthwise conv, 1x1 conv, BN (the first "
                    "depthwise conv carries the stride).",
    "sep_conv_5x5": "separable conv, twice: ReLU, 5x5 depthwise conv, 1x1 conv, BN.",
    "dil_conv_3x3": "dilated separable conv, once: ReLU, 3x3 depthwise conv with dilation 2 "
                    "(a 5x5 field), 1x1 conv, BN.",
    "dil_conv_5x5": "dilated separable conv, once: ReLU, 5x5 depthwise conv with dilation 2 "
                    "(a 9x9 field), 1x1 conv, BN.",
}


def canonical_genotype(genotype: Genotype) -> Genotype:
  """``genotype`` with each node's two pairs in (input, op) order: the sum does not depend on it,
  so two genotypes that differ only there are one architecture (and one string)."""
  cells = {}
  for cell in CELLS:
    pairs = list(getattr(genotype, cell))
    out = []
    for i in range(0, len(pairs) - 1, 2):
      out += sorted(pairs[i:i + 2], key=lambda p: (p[1], p[0]))
    cells[cell] = tuple(out + pairs[len(out):])
  return Genotype(cells["normal"], cells["reduce"], genotype.normal_concat, genotype.reduce_concat)


@dataclasses.dataclass(frozen=True)
class NB301Table:
  """NASLib's NAS-Bench-301 zero-cost table as a benchmark: each genotype's surrogate-predicted
  CIFAR-10 validation accuracy (a NAS-Bench-301 prediction, not a trained result) and NASLib's
  stored proxy scores.

  Attributes:
    source: the file it was read from.
    archs: the canonical genotypes, in file order.
    accuracy: ``{"cifar10_nb301_predicted": float64 array}`` in the order of ``archs``.
    stored: ``{proxy: float64 array}``, NASLib's scores in the order of ``archs``.
  """
  source: str
  archs: tuple[str, ...]
  accuracy: dict
  stored: dict

  ACCURACY = "cifar10_nb301_predicted"

  @classmethod
  def load(cls, path: str) -> "NB301Table":
    """Reads NASLib's ``zc_nasbench301.json`` (``{"cifar10": {compact: {"val_accuracy": ...,
    proxy: {"score": ...}}}}``)."""
    try:
      with open(path) as f:
        data = json.load(f)
      rows = data["cifar10"]
    except (OSError, ValueError, KeyError, TypeError) as e:
      raise SpaceError(f"cannot read the NAS-Bench-301 table {path!r} ({e}); give NASLib's "
                       "zc_nasbench301.json.") from None
    archs, acc, stored = [], [], {}
    for key, row in rows.items():
      archs.append(canonical_genotype(from_compact(key)).genotype)
      acc.append(float(row["val_accuracy"]))
      for name, value in row.items():
        if isinstance(value, dict) and "score" in value:
          stored.setdefault(name, []).append(float(value["score"]))
    return cls(str(path), tuple(archs), {cls.ACCURACY: np.asarray(acc, np.float64)},
               {k: np.asarray(v, np.float64) for k, v in stored.items() if len(v) == len(archs)})

  def __len__(self) -> int:
    return len(self.archs)

  def index(self, genotype: str | Genotype) -> int:
    """The row of ``genotype`` (a string or a `Genotype`); KeyError when the table lacks it."""
    try:
      return self._positions[_text(genotype)]
    except KeyError:
      raise KeyError(f"{_text(genotype)} is not in the table {self.source}.") from None

  @property
  def _positions(self) -> dict:
    if "_pos" not in self.__dict__:
      object.__setattr__(self, "_pos", {g: i for i, g in enumerate(self.archs)})
    return self.__dict__["_pos"]

  def check_covers(self, archs) -> None:
    missing = [g for g in map(_text, archs) if g not in self._positions]
    if missing:
      raise SpaceError(f"the table {self.source} lacks {len(missing)} of the {len(archs)} "
                       f"genotypes, e.g. {missing[0]}; correlate on the table's own genotypes.")

  def lookup(self, archs, dataset: str) -> np.ndarray:
    return self.accuracy[dataset][[self.index(a) for a in archs]]

  def rank(self, arch, dataset: str) -> int:
    """1 + the number of the table's genotypes with a higher accuracy."""
    value = self.lookup([arch], dataset)[0]
    return 1 + int(np.sum(self.accuracy[dataset] > value))


def _text(arch) -> str:
  return canonical_genotype(arch).genotype if isinstance(arch, Genotype) else str(arch)


def default_table_path() -> str | None:
  """NASLib's NAS-Bench-301 zero-cost table in ``../shared/data`` beside a checkout, if there."""
  here = os.path.dirname(os.path.abspath(__file__))
  path = os.path.join(here, "..", "..", "shared", "data", "nb301", "automl_NASLib", "zc_nasbench301.json")
  return os.path.normpath(path) if os.path.exists(path) else None


@dataclasses.dataclass(frozen=True)
class DartsSpace(ReplyFormat):
  """The DARTS cell space (NAS-Bench-301's, by default), scored on NASLib's proxy network.

  Settings:
    ops: ``nb301`` (the seven NAS-Bench-301 ops) or ``darts`` (adds ``none``, DARTS's eight).
    channels, layers: the scored network (NASLib's NAS-Bench-301 setting: C = 32, 8 cells).
  """
  ops: str = "nb301"
  channels: int = 32
  layers: int = 8

  name = "darts"
  size = None  # about 10^18 genotypes (DARTS paper): not enumerable
  SETTINGS = ("ops", "channels", "layers")
  SCORING_OPTIONS = ()
  NETWORK_OPTIONS = ("auxiliary_weight", "drop_path")
  CONFIG_SECTION = "darts"
  COST_KEYS = ("params", "flops")

  def __post_init__(self):
    if self.ops not in OP_SETS:
      raise SpaceError(f"ops {self.ops!r} is not a DARTS op set; valid: {', '.join(OP_SETS)}.")
    if int(self.channels) < 2 or int(self.channels) % 2:
      raise SpaceError(f"channels is {self.channels}; it must be an even number of at least 2 "
                       "(a factorized reduce splits it in halves).")
    if int(self.layers) < 3:
      raise SpaceError(f"layers is {self.layers}; a DARTS network needs at least 3 cells (two "
                       "reduction cells at 1/3 and 2/3 of the depth).")

  def configure(self, **settings: Any) -> "DartsSpace":
    return dataclasses.replace(self, **{k: v for k, v in settings.items() if v is not None})

  @staticmethod
  def config_defaults() -> dict:
    return {"ops": "nb301", "channels": 32, "layers": 8, "auxiliary_weight": 0.0, "drop_path": 0.0}

  @property
  def op_names(self) -> tuple[str, ...]:
    return OP_SETS[self.ops]

  def setting(self, num_classes: int = 10):
    from rznas_jax.spaces import darts_net  # pylint: disable=g-import-not-at-top  (JAX)
    return dataclasses.replace(darts_net.NASLIB, channels=int(self.channels), layers=int(self.layers),
                               num_classes=num_classes, ops=self.op_names)

  # --- genotypes ---------------------------------------------------------------------------------

  def parse(self, genotype: str) -> Genotype:
    """A `Genotype` from its DARTS string or NASLib's compact encoding."""
    text = str(genotype).strip()
    return from_compact(text) if text.startswith("[") else parse_genotype(text)

  def canonical(self, arch: Genotype) -> str:
    return canonical_genotype(arch).genotype

  def check(self, genotype: str) -> tuple[str | None, list[str]]:
    try:
      arch = self.parse(genotype)
    except DartsGenotypeError as e:
      return None, [str(e)]
    reasons = validate(arch, self.op_names)
    return (None, reasons) if reasons else (self.canonical(arch), [])

  def valid(self, genotype: str | Genotype) -> Genotype:
    """The genotype value; DartsGenotypeError with every reason when it is not in the space."""
    arch = self.parse(genotype) if isinstance(genotype, str) else genotype
    reasons = validate(arch, self.op_names)
    if reasons:
      raise DartsGenotypeError(f"{arch.genotype[:300]} is not in the DARTS space: {' '.join(reasons)}")
    return canonical_genotype(arch)

  def archs(self, spec: str, seed: int) -> list[Genotype]:
    """``random:N`` (N distinct genotypes drawn with ``seed``), or genotypes (DARTS strings or
    compact encodings) separated by ``;``."""
    text = str(spec).strip()
    if text.startswith("random:"):
      count = text[len("random:"):].strip()
      if not count.isdigit() or int(count) < 1:
        raise SpaceError(f"{spec!r} needs a positive count after 'random:', e.g. random:100.")
      rng = np.random.default_rng(seed)
      return [self.parse(g) for g in self.random_population(int(count), rng)]
    items = [t for t in text.split(";") if t.strip()]
    if not items:
      raise SpaceError(f"{spec!r} is not 'random:N' or genotypes separated by ';' such as "
                       f"{DARTS_V2.genotype!r}.")
    return [self.valid(t) for t in items]

  def _random_cell(self, rng: np.random.Generator) -> tuple[Pair, ...]:
    """NASLib's NAS-Bench-301 sampler: per node two distinct inputs and two uniform ops."""
    pairs = []
    for k in range(NUM_NODES):
      inputs = rng.choice(k + FIRST_NODE, 2, replace=False)
      ops = rng.integers(len(self.op_names), size=2)
      pairs += [(self.op_names[int(o)], int(i)) for o, i in zip(ops, inputs)]
    return tuple(pairs)

  def random_population(self, n: int, rng: np.random.Generator) -> list[str]:
    if n < 1:
      raise SpaceError(f"population size {n} must be at least 1.")
    out: dict[str, None] = {}
    while len(out) < n:
      out[self.canonical(Genotype(self._random_cell(rng), self._random_cell(rng)))] = None
    return list(out)

  def random_mutation(self, genotype: str, rng: np.random.Generator) -> str:
    """NASLib's NAS-Bench-301 mutation: in one cell, one pair gets another op or another input
    (another op where no other input is legal, so the child always differs)."""
    arch = self.parse(genotype)
    cell = CELLS[int(rng.integers(2))]
    pairs = list(getattr(arch, cell))
    i = int(rng.integers(PAIRS_PER_CELL))
    op, node = pairs[i]
    sibling = pairs[i ^ 1][1]
    choices = [n for n in range(FIRST_NODE + i // 2) if n not in (node, sibling)]
    if rng.random() < 0.5 or not choices:  # node 2's pairs cannot be rewired: change the op
      others = [o for o in self.op_names if o != op]
      pairs[i] = (others[int(rng.integers(len(others)))], node)
    else:
      pairs[i] = (op, choices[int(rng.integers(len(choices)))])
    cells = {c: tuple(pairs) if c == cell else getattr(arch, c) for c in CELLS}
    return self.canonical(Genotype(cells["normal"], cells["reduce"]))

  def edits(self, parent: str, child: str) -> list[str]:
    """One kind per changed pair: ``<cell> <op>-><op>`` (an op changed), ``<cell> rewire`` (an
    input changed), ``<cell> <op>~rewire`` when both changed (edges swapped between nodes)."""
    a, b = canonical_genotype(self.parse(parent)), canonical_genotype(self.parse(child))
    kinds = []
    for cell in CELLS:
      pa, pb = getattr(a, cell), getattr(b, cell)
      changed = []
      for i in range(0, min(len(pa), len(pb)), 2):  # per node: the pairs one has and not the other
        gone = [p for p in pa[i:i + 2] if p not in pb[i:i + 2]]
        new = [p for p in pb[i:i + 2] if p not in pa[i:i + 2]]
        if len(gone) == 2 and len(new) == 2 and gone[0][1] != new[0][1]:
          new = new[::-1]  # pair each old pair with the new one on the same input, if any
        changed += zip(gone, new)
      for (op1, n1), (op2, n2) in changed:
        if op1 != op2 and n1 == n2:
          kinds.append(f"{cell} {op1}->{op2}")
        elif n1 != n2 and op1 == op2:
          kinds.append(f"{cell} rewire")
        elif n1 != n2:
          kinds.append(f"{cell} {op1}->{op2}~rewire")
    return kinds

  def neighbours(self, genotype: str) -> list[str]:
    """Every genotype one edit away: one pair's op changed, one pair rewired to another input,
    or two pairs of different nodes swapped (when both inputs stay legal); canonical, distinct."""
    arch = canonical_genotype(self.parse(genotype))
    own = arch.genotype
    out: dict[str, None] = {}
    for cell in CELLS:
      pairs = list(getattr(arch, cell))

      def emit(new):
        cells = {c: tuple(new) if c == cell else getattr(arch, c) for c in CELLS}
        g = Genotype(cells["normal"], cells["reduce"])
        if not validate(g, self.op_names):
          text = self.canonical(g)
          if text != own:
            out.setdefault(text, None)

      for i, (op, node) in enumerate(pairs):
        for other in self.op_names:
          if other != op:
            emit(pairs[:i] + [(other, node)] + pairs[i + 1:])
        for n in range(FIRST_NODE + i // 2):
          if n != node:
            emit(pairs[:i] + [(op, n)] + pairs[i + 1:])
      for i in range(PAIRS_PER_CELL):
        for j in range(i + 1, PAIRS_PER_CELL):
          if i // 2 != j // 2:
            new = list(pairs)
            new[i], new[j] = pairs[j], pairs[i]
            emit(new)
    return list(out)

  def costs(self, arch: Genotype | str) -> dict[str, float]:
    """Exact parameters and FLOPs (multiply-accumulates) of the scored network (`setting`)."""
    from rznas_jax.spaces import darts_net  # pylint: disable=g-import-not-at-top
    arch = self.parse(arch) if isinstance(arch, str) else arch
    setting = self.setting()
    return {"params": float(darts_net.count_params(setting, arch)),
            "flops": float(darts_net.count_flops(setting, arch))}

  # --- the prompt --------------------------------------------------------------------------------

  def operations(self) -> list[Operation]:
    from rznas_jax.spaces import darts_net  # pylint: disable=g-import-not-at-top
    code = source_of(darts_net._apply_op)  # pylint: disable=protected-access
    pool = {"max_pool_3x3": source_of(darts_net._max_pool),  # pylint: disable=protected-access
            "avg_pool_3x3": source_of(darts_net._avg_pool)}  # pylint: disable=protected-access
    return [Operation(op, _TEXT[op], pool.get(op, code)) for op in self.op_names]

  def rules(self) -> str:
    setting = self.setting()
    r1, r2 = setting.reductions
    return "\n".join([
        "A DARTS architecture is two cells, a normal cell and a reduction cell. Each cell has two "
        "input nodes, 0 and 1 (the outputs of the two previous cells), and four intermediate "
        "nodes 2, 3, 4, 5. Node k is the sum of two operations, each applied to one earlier node "
        "(0..k-1); the cell's output concatenates nodes 2..5.",
        "The genotype lists, per cell, eight (op, input) pairs, two per node in node order:",
        "Genotype(normal=[('op', i), ('op', j), ... 8 pairs], normal_concat=[2, 3, 4, 5], "
        "reduce=[... 8 pairs], reduce_concat=[2, 3, 4, 5])",
        f"Allowed operations: {', '.join(self.op_names)}. The two inputs of a node must be "
        "different nodes, and pairs 1-2 may read nodes 0-1, pairs 3-4 nodes 0-2, pairs 5-6 nodes "
        "0-3, pairs 7-8 nodes 0-4.",
        f"The scored network: a 3x3 conv stem ({setting.stem_multiplier * setting.channels} "
        f"channels), then {setting.layers} cells; cells {r1} and {r2} (counting from 0) are "
        f"reduction cells (their ops on nodes 0 and 1 have stride 2, and the width doubles), the "
        f"others normal cells; C = {setting.channels} in the first stage. Each cell first maps "
        "its inputs to C channels (ReLU, 1x1 conv, BN). Then global average pooling and a linear "
        "classifier (10 CIFAR-10 classes, 32x32 inputs). Every normal cell uses the normal "
        "genotype, every reduction cell the reduction genotype.",
    ])

  def construction_code(self) -> str:
    from rznas_jax.spaces import darts_net  # pylint: disable=g-import-not-at-top
    return source_of(darts_net.forward)

  def example(self) -> tuple[str, str, str]:
    parent = canonical_genotype(DARTS_V2)
    normal = list(parent.normal)
    normal[7] = ("sep_conv_3x3", normal[7][1])
    child = canonical_genotype(Genotype(tuple(normal), parent.reduce))
    return (parent.genotype, child.genotype,
            "The parent's normal cell already stacks separable convs on its inputs; its last node "
            "mixes a skip with a dilated conv. Replacing that dilated conv by a 3x3 separable conv "
            "(two depthwise-pointwise stages instead of one) deepens the path into the cell's "
            "output while keeping the skip as a shortcut.")

  def reply_expression(self):
    rf = reply_format
    op = rf.choice([rf.literal(f"'{o}'") for o in self.op_names], name="op")
    items: list = []
    for cell in CELLS:
      items.append(rf.literal(f"{'' if cell == 'normal' else ', '}{cell}=["))
      for i in range(PAIRS_PER_CELL):
        k = FIRST_NODE + i // 2
        node = rf.choice([rf.literal(str(n)) for n in range(k)], name=f"in{k}")
        items += [rf.literal("(" if i == 0 else ", ("), op, rf.literal(", "), node, rf.literal(")")]
      items.append(rf.literal(f"], {cell}_concat=[2, 3, 4, 5]"))
    return rf.sequence(rf.literal("Genotype("), *items, rf.literal(")"), name="arch")

  # --- networks, scoring, ground truth -----------------------------------------------------------

  def network(self, arch: Genotype | str, *, num_classes: int | None = None,
              image_shape: tuple[int, int, int] | None = None, auxiliary_weight: float = 0.0,
              drop_path: float = 0.0):
    """``(module, init)``: the DARTS evaluation network of ``arch`` (quark0/darts NetworkCIFAR:
    the space's C and cells, affine BN, pools without BN), ``num_classes`` outputs (default 10);
    ``init(key)`` gives its PyTorch-default variables for ``image_shape`` (HWC, default 32x32)."""
    from rznas_jax.spaces import darts_net  # pylint: disable=g-import-not-at-top
    arch = self.valid(arch)
    shape = image_shape or (32, 32, 3)
    setting = dataclasses.replace(darts_net.EVAL, channels=int(self.channels), layers=int(self.layers),
                                  num_classes=num_classes or 10, resolution=shape[0], ops=self.op_names)
    module = darts_net.DartsNetwork(setting, arch, auxiliary=auxiliary_weight > 0,
                                    drop_path=float(drop_path), aux_weight=float(auxiliary_weight))
    return module, lambda key: darts_net.init_training_variables(module, key, shape)

  def check_proxies(self, names) -> None:
    from rznas_jax import proxies as proxy_lib  # pylint: disable=g-import-not-at-top
    proxy_lib.check_for_space(names, self.COST_KEYS, self.name, reports_blocks=False)

  def scorer(self, proxies, *, images=None, batch_size: int = 64, seed: int = 0, devices=None):
    """A `darts_net.DartsScorer` (one compile per proxy for every genotype)."""
    from rznas_jax.spaces import darts_net  # pylint: disable=g-import-not-at-top
    self.check_proxies(proxies)
    return darts_net.DartsScorer(proxies, self, images=images, batch_size=batch_size, seed=seed,
                                 devices=devices)

  def benchmark(self, path: str | None = None) -> NB301Table | None:
    """NASLib's NAS-Bench-301 table at ``path`` (or in ``../shared/data`` beside the checkout);
    None when there is none."""
    path = path or default_table_path()
    return NB301Table.load(path) if path else None

  def draw(self, genotype: str, path: str, title: str | None = None) -> None:
    """Both cells side by side: nodes 0, 1 (inputs), 2..5 and the output, edges labelled."""
    from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top
    arch = canonical_genotype(self.parse(genotype))
    fig = Figure(figsize=(11.0, 4.2), layout="constrained")
    for c, cell in enumerate(CELLS):
      ax = fig.add_subplot(1, 2, c + 1)
      pos = {0: (0.0, 1.0), 1: (0.0, -1.0), 2: (1.3, 1.5), 3: (2.2, 0.5), 4: (2.2, -0.5),
             5: (1.3, -1.5), "out": (3.4, 0.0)}
      for i, (op, node) in enumerate(getattr(arch, cell)):
        k = FIRST_NODE + i // 2
        (x0, y0), (x1, y1) = pos[node], pos[k]
        ax.annotate("", (x1, y1), (x0, y0), arrowprops=dict(arrowstyle="-|>", lw=1.4,
                                                             shrinkA=12, shrinkB=12,
                                                             connectionstyle=f"arc3,rad={0.15 * (i % 2 * 2 - 1)}"))
        ax.text((x0 + x1) / 2, (y0 + y1) / 2 + 0.12 * (i % 2 * 2 - 1), op, fontsize=7, ha="center",
                bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="grey", lw=0.5))
      for k in range(FIRST_NODE, FIRST_NODE + NUM_NODES):
        ax.annotate("", pos["out"], pos[k], arrowprops=dict(arrowstyle="-|>", lw=0.8, color="grey",
                                                            shrinkA=12, shrinkB=14, linestyle="--"))
      for name, (x, y) in pos.items():
        ax.scatter([x], [y], s=500, color="white" if name != "out" else "#dddddd",
                   edgecolors="black", zorder=3)
        ax.text(x, y, "c_out" if name == "out" else str(name), ha="center", va="center", zorder=4,
                fontsize=9)
      ax.set_title(f"{cell} cell", fontsize=10)
      ax.set_xlim(-0.5, 4.0)
      ax.set_ylim(-2.1, 2.1)
      ax.axis("off")
    fig.suptitle(title or "DARTS cells (nodes 0, 1: the two previous cells' outputs)", fontsize=10)
    fig.savefig(path, dpi=120)
