"""DARTS genotypes: both text forms against NASLib's NAS-Bench-301 table, validation and errors."""

import json
import os

import pytest

from rznas_jax.spaces import darts
from rznas_jax.spaces.darts import DARTS_V2, DartsGenotypeError, Genotype

from conftest import SHARED_DATA, need

NB301_JSON = os.path.join(SHARED_DATA, "nb301", "automl_NASLib", "zc_nasbench301.json")

# quark0/darts cnn/genotypes.py, written as that file writes it.
DARTS_V2_TEXT = (
    "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), "
    "('sep_conv_3x3', 1), ('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), "
    "('dil_conv_3x3', 2)], normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), "
    "('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), ('max_pool_3x3', 0), "
    "('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)], reduce_concat=[2, 3, 4, 5])")


def _with(cell="normal", index=None, pair=None, pairs=None, **fields):
  """DARTS_V2 with one pair (or a whole cell, or a concat) replaced."""
  if pairs is None:
    pairs = list(getattr(DARTS_V2, cell))
    if index is not None:
      pairs[index] = pair
  values = {"normal": DARTS_V2.normal, "reduce": DARTS_V2.reduce, cell: pairs, **fields}
  return Genotype(**values)


def test_every_nb301_key_round_trips():
  with open(need(NB301_JSON)) as f:
    keys = list(json.load(f)["cifar10"])
  assert len(keys) == 725
  seen = set()
  for key in keys:
    g = darts.from_compact(key)
    text = str(g)
    back = Genotype.parse(text)
    assert back == g and hash(back) == hash(g)
    assert darts.format_compact(darts.to_compact(back)) == key
    assert darts.validate(g) == [], key
    seen.add(g)
  assert len(seen) == 725


def test_compact_op_order_is_naslib():
  # NASLib's first table key: node 2 of the normal cell is max_pool_3x3 on node 0 and
  # dil_conv_3x3 on node 1 (op indices 0 and 5 in conversions.py's OPS).
  g = darts.from_compact("[[(0, 0), (1, 5), (1, 1), (0, 1), (1, 3), (0, 3), (1, 3), (3, 2)], "
                         "[(1, 0), (0, 2), (1, 3), (0, 3), (3, 0), (0, 1), (2, 0), (3, 6)]]")
  assert g.normal[:2] == (("max_pool_3x3", 0), ("dil_conv_3x3", 1))
  assert g.normal[7] == ("skip_connect", 3)
  assert g.reduce[7] == ("dil_conv_5x5", 3)
  assert darts.OPS_DARTS == ("none",) + darts.OPS_NB301
  nested = [[(0, 0)] * 8, [(1, 6)] * 8]
  assert darts.to_compact(darts.from_compact(nested)) == ((((0, 0),) * 8), (((1, 6),) * 8))


def test_darts_v2_round_trips():
  assert Genotype.parse(DARTS_V2_TEXT) == DARTS_V2
  assert str(DARTS_V2) == DARTS_V2_TEXT
  assert darts.from_compact(darts.format_compact(darts.to_compact(DARTS_V2))) == DARTS_V2
  assert darts.validate(DARTS_V2) == []
  assert darts.check(DARTS_V2_TEXT) == (DARTS_V2_TEXT, [])


def test_parse_accepts_range_whitespace_and_any_field_order():
  text = ("  Genotype(\n  reduce = ( ( \"max_pool_3x3\",0 ),('max_pool_3x3',1),('skip_connect',2),"
          "('max_pool_3x3',1),('max_pool_3x3',0),('skip_connect',2),('skip_connect',2),"
          "('max_pool_3x3',1), ),\n  normal=[('sep_conv_3x3',0),('sep_conv_3x3',1),('sep_conv_3x3',0),"
          "('sep_conv_3x3',1),('sep_conv_3x3',1),('skip_connect',0),('skip_connect',0),"
          "('dil_conv_3x3',2)],\n  normal_concat=range(2, 6), reduce_concat=range( 2,6 ),\n)\n")
  g = Genotype.parse(text)
  assert g == DARTS_V2
  assert str(g) == DARTS_V2_TEXT
  assert darts.check(text) == (DARTS_V2_TEXT, [])


def test_validate_input_that_does_not_exist():
  g = _with("normal", 2, ("sep_conv_3x3", 3))  # node 3 reads node 3
  assert darts.validate(g) == [
      "normal cell node 3 reads from node 3, which it cannot; node 3 may read from nodes 0 to 2."]
  g = _with("reduce", 0, ("max_pool_3x3", -1))
  assert darts.validate(g) == [
      "reduce cell node 2 reads from node -1, which it cannot; node 2 may read from nodes 0 to 1."]


def test_validate_two_inputs_from_one_node():
  g = _with("normal", 1, ("sep_conv_3x3", 0))  # node 2: both from node 0
  assert darts.validate(g) == ["normal cell node 2 takes both inputs from node 0; the two inputs "
                               "of a node must come from different nodes."]
  assert darts.validate(g, distinct_inputs=False) == []


def test_validate_unknown_op_and_none():
  g = _with("reduce", 5, ("conv_7x7", 2))
  assert darts.validate(g) == [
      "reduce cell node 4 uses unknown op 'conv_7x7'; valid ops are max_pool_3x3, avg_pool_3x3, "
      "skip_connect, sep_conv_3x3, sep_conv_5x5, dil_conv_3x3, dil_conv_5x5."]
  g = _with("normal", 7, ("none", 2))
  assert darts.validate(g)[0].startswith("normal cell node 5 uses unknown op 'none'; valid ops are")
  assert darts.validate(g, ops=darts.OPS_DARTS) == []
  with pytest.raises(DartsGenotypeError, match="'none' has no compact index"):
    darts.to_compact(g)


def test_validate_wrong_number_of_pairs():
  g = _with("normal", pairs=DARTS_V2.normal[:6])
  assert darts.validate(g) == ["the normal cell has 6 (op, input) pairs; a DARTS cell has 8, two "
                               "for each of the nodes 2 to 5."]


def test_validate_concat():
  g = _with(reduce_concat=(2, 3))
  assert darts.validate(g) == ["reduce_concat is [2, 3], but a DARTS cell concatenates nodes "
                               "[2, 3, 4, 5]."]


def test_validate_reports_every_reason_and_parse_errors():
  g = _with("normal", 0, ("conv_9x9", 4), normal_concat=range(2, 7))
  assert len(darts.validate(g)) == 3
  canonical, reasons = darts.check("Genotype(normal=[('sep_conv_3x3' 0)])")
  assert canonical is None and len(reasons) == 1 and "'0'" in reasons[0]


@pytest.mark.parametrize("text, token", [
    ("Genotype(normal=[('sep_conv_3x3' 0)], normal_concat=[2, 3, 4, 5], reduce=[], "
     "reduce_concat=[2, 3, 4, 5])", "'0'"),
    ("Genome(normal=[])", "'Genome'"),
    ("Genotype(normal=[], normal_concat=[2, 3, 4, 5], reduce=[], reduce_concat=[2, 3, 4, 5]) x",
     "'x'"),
    ("Genotype(normal=[('sep_conv_3x3', 0)]; normal_concat=[2, 3, 4, 5])", "';'"),
    ("Genotype(normal=[(sep_conv_3x3, 0)])", "'sep_conv_3x3'"),
    ("Genotype(normal=[], reduce=[], reduce_concat=[2, 3, 4, 5], normal_concat=list(2))", "'list'"),
    ("Genotype(normal=[], normal=[])", "'normal'"),
    ("Genotype(normal=[], reduce=[], normal_concat=[2, 3, 4, 5])", "'reduce_concat'"),
    ("Genotype(normal=[('sep_conv_3x3', 0)", "ends too early (character 36); expected ',' or ']'"),
    ("__import__('os').system('true')", "'__import__'"),
])
def test_bad_genotype_strings_name_the_token(text, token):
  with pytest.raises(DartsGenotypeError) as e:
    Genotype.parse(text)
  assert token in str(e.value)
  assert str(e.value).count(". ") == 0  # one sentence


@pytest.mark.parametrize("text, token", [
    ("[[(0, 0), (1, 9)], [(0, 0)]]", "op index 9"),
    ("[[(0, 0, 1)], [(0, 0)]]", "two integers"),
    ("[[(0, 0)]]", "2 cells"),
    ("[[(0, x)], [(0, 0)]]", "'x'"),
    ("[[(0, 0)], [(0, 0)]", "ends too early"),
])
def test_bad_compact_strings(text, token):
  with pytest.raises(DartsGenotypeError, match=None) as e:
    darts.from_compact(text)
  assert token in str(e.value)


def test_genotype_is_hashable_and_frozen():
  g = Genotype(normal=[list(p) for p in DARTS_V2.normal], reduce=list(DARTS_V2.reduce),
               normal_concat=[2, 3, 4, 5], reduce_concat=range(2, 6))
  assert g == DARTS_V2 and {g: 1}[DARTS_V2] == 1
  with pytest.raises(AttributeError):
    g.normal = ()
