"""NAS-Bench-201 genotypes, indices and cost counters against the benchmark's own data."""

import csv
import json
import os

import numpy as np
import pytest

from rznas_jax.spaces import nb201
from rznas_jax.spaces.nb201 import Arch, GenotypeError

from conftest import NASLIB_JSON, NATS_CSV, need

BEST = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"


def test_round_trip_every_cell():
  archs = nb201.all_archs()
  assert len(set(archs)) == nb201.NUM_ARCHS == 15625
  for a in archs:
    assert Arch.parse(a.genotype) == a
    assert Arch.from_code(a.code) == a
    assert Arch.from_op_indices(a.op_indices) == a
    assert np.array_equal(a.one_hot().argmax(-1), a.op_indices)


def test_parse_known_cell():
  a = Arch.parse(BEST)
  assert a.ops == ("nor_conv_3x3", "nor_conv_3x3", "nor_conv_3x3", "skip_connect", "nor_conv_3x3",
                   "nor_conv_3x3")
  assert str(a) == BEST and hash(a) == hash(Arch.parse(BEST))


@pytest.mark.parametrize("bad, words", [
    ("|conv_5x5~0|+|none~0|none~1|+|none~0|none~1|none~2|", ["conv_5x5", "nor_conv_3x3"]),
    ("|none~0|+|none~0|+|none~0|none~1|none~2|", ["node 2", "exactly 2"]),
    ("|none~0|+|none~0|none~1|", ["3"]),
    ("none~0|+|none~0|none~1|+|none~0|none~1|none~2|", ["start and end"]),
    ("|none~0|+|none~1|none~1|+|none~0|none~1|none~2|", ["none~1", "node 0"]),
    ("|none-0|+|none~0|none~1|+|none~0|none~1|none~2|", ["none-0", "op~k"]),
])
def test_malformed_genotypes_name_the_problem(bad, words):
  with pytest.raises(GenotypeError) as e:
    Arch.parse(bad)
  msg = str(e.value)
  for w in words:
    assert w in msg, msg
  assert "\n" not in msg


def test_unknown_op_lists_valid_ops():
  with pytest.raises(GenotypeError, match="valid ops are none, skip_connect"):
    Arch(("none", "none", "none", "none", "none", "sep_conv"))


def test_benchmark_index_matches_every_row():
  table = nb201.BenchmarkTable.load(need(NATS_CSV))
  assert len(table) == 15625
  with open(NATS_CSV) as f:
    rows = f.read().splitlines()[1:]
  for i, row in enumerate(rows):
    genotype = row.split(",")[3]
    assert table.index(Arch.parse(genotype)) == i
    assert table.arch(i).genotype == genotype
  # Known facts of the benchmark: index 0 and the CIFAR-10 optimum at 6111.
  assert table.arch(0).genotype == ("|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+"
                                    "|nor_conv_1x1~0|skip_connect~1|skip_connect~2|")
  assert int(np.argmax(table.accuracy["cifar10"])) in (6111, 13714)
  assert table.accuracy["cifar100"].max() == pytest.approx(73.5133, abs=1e-3)


def _csv_columns(path):
  """The csv's genotypes and accuracy columns, read with the csv module alone."""
  with open(path, newline="") as f:
    rows = list(csv.DictReader(f))
  columns = {"cifar10": "CIFAR10TestAccuracy200Epochs", "cifar100": "CIFAR100TestAccuracy200Epochs",
             "imagenet16-120": "ImageNetTestAccuracy200Epochs"}
  return ([r["ArchitectureString"] for r in rows],
          {d: np.array([float(r[c]) for r in rows]) for d, c in columns.items()},
          [r["UniqueString"] for r in rows])


def test_packaged_table_equals_the_nats_csv_exactly():
  genotypes, accuracy, unique = _csv_columns(need(NATS_CSV))
  table = nb201.BenchmarkTable.packaged()
  assert table.source == nb201.PACKAGED_TABLE and len(table) == len(genotypes) == 15625
  assert [a.genotype for a in table.archs] == genotypes  # row i = official index i
  for d, acc in accuracy.items():
    assert table.accuracy[d].dtype == np.float64
    assert np.array_equal(table.accuracy[d], acc), d  # bit for bit: repr gives the csv's digits
  assert table.unique == unique
  # Compact, and not a copy of the csv.
  size = os.path.getsize(nb201.PACKAGED_TABLE_FILE)
  assert size < 400_000
  with open(nb201.PACKAGED_TABLE_FILE, "rb") as f:
    assert f.read(2) == b"PK"


@pytest.mark.parametrize("dataset,indices,best", [
    ("cifar10", (6111, 13714), 94.3733), ("cifar100", (9930,), 73.5133),
    ("imagenet16-120", (857,), 47.3111)])
def test_packaged_table_knows_the_nb201_optima(dataset, indices, best):
  table = nb201.BenchmarkTable.packaged()
  acc = table.accuracy[dataset]
  assert set(np.flatnonzero(acc == acc.max())) == set(indices)
  assert acc.max() == pytest.approx(best, abs=5e-5)
  for i in indices:
    assert table.index(table.arch(i)) == i and table.rank(table.arch(i), dataset) == 1


def test_rank_is_competition_rank_among_all_cells():
  table = nb201.BenchmarkTable.packaged()
  for d, acc in table.accuracy.items():
    order = np.argsort(-acc, kind="stable")
    expected = np.empty(len(acc), int)  # rank 1 + cells strictly better, by a walk down the sort
    for pos, i in enumerate(order):
      tied = pos > 0 and acc[i] == acc[order[pos - 1]]
      expected[i] = expected[order[pos - 1]] if tied else pos + 1
    sample = nb201.random_archs(300, seed=1) + [table.arch(int(order[-1]))]
    got = [table.rank(a, d) for a in sample]
    assert got == [int(expected[table.index(a)]) for a in sample], d
    assert got[-1] == 1 + int(np.sum(acc > acc.min()))  # the worst cell(s)


def _naslib_archs():
  with open(need(NASLIB_JSON)) as f:
    data = json.load(f)["cifar10"]
  naslib_ops = {0: "skip_connect", 1: "none", 2: "nor_conv_3x3", 3: "nor_conv_1x1", 4: "avg_pool_3x3"}
  for key, entry in data.items():
    e = [naslib_ops[int(t)] for t in key.strip("()").split(",")]
    # NASLib orders edges (1,2),(1,3),(1,4),(2,3),(2,4),(3,4); the genotype string is node-major.
    yield Arch((e[0], e[1], e[3], e[2], e[4], e[5])), entry


def test_params_and_flops_match_naslib_on_724_cells():
  n = 0
  for arch, entry in _naslib_archs():
    assert round(nb201.count_params(arch) / 1e6, 6) == pytest.approx(entry["params"]["score"], abs=5e-7)
    assert round(nb201.count_flops(arch) / 1e6, 6) == pytest.approx(entry["flops"]["score"], abs=5e-7)
    n += 1
  assert n == 724


def test_counters_by_hand():
  # All-none cell, C=16, N=5, CIFAR-10: the stem, two reduction blocks, last BN, classifier.
  stem = 3 * 16 * 9 + 32
  red1 = 16 * 32 * 9 + 64 + 32 * 32 * 9 + 64 + 16 * 32
  red2 = 32 * 64 * 9 + 128 + 64 * 64 * 9 + 128 + 32 * 64
  head = 128 + 64 * 10 + 10
  none = Arch(("none",) * 6)
  assert nb201.count_params(none) == stem + red1 + red2 + head
  # Each nor_conv_3x3 edge adds C*C*9 + 2C per cell, 5 cells a stage.
  one = Arch(("nor_conv_3x3",) + ("none",) * 5)
  assert nb201.count_params(one) - nb201.count_params(none) == 5 * sum(c * c * 9 + 2 * c for c in (16, 32, 64))
  # MAC convention: a 1x1 conv edge adds C*C*H*W per cell.
  one1 = Arch(("nor_conv_1x1",) + ("none",) * 5)
  diff = nb201.count_flops(one1, convention="macs") - nb201.count_flops(none, convention="macs")
  assert diff == 5 * (16 * 16 * 32 * 32 + 32 * 32 * 16 * 16 + 64 * 64 * 8 * 8)
  with pytest.raises(ValueError, match="valid: tensorwatch, macs"):
    nb201.count_flops(none, convention="fvcore")


def test_random_archs_seeded_and_distinct():
  a = nb201.random_archs(500, seed=3)
  assert a == nb201.random_archs(500, seed=3) and len(set(a)) == 500
  assert a != nb201.random_archs(500, seed=4)


def test_isomorphism_key_is_nats_unique_string():
  table = nb201.BenchmarkTable.load(need(NATS_CSV))
  keys = [nb201.isomorphism_key(a) for a in table.archs]
  assert keys == table.unique
  assert len(set(keys)) == 6466


@pytest.mark.parametrize("genotype,pruned", [
    ("|nor_conv_3x3~0|+|nor_conv_3x3~0|none~1|+|none~0|none~1|skip_connect~2|",
     "|none~0|+|nor_conv_3x3~0|none~1|+|none~0|none~1|skip_connect~2|"),  # node 1 feeds nothing
    ("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_1x1~0|none~1|none~2|",
     "|none~0|+|none~0|none~1|+|nor_conv_1x1~0|none~1|none~2|"),  # nodes 1 and 2 feed nothing
    ("|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|none~0|none~1|avg_pool_3x3~2|",
     "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|none~0|none~1|avg_pool_3x3~2|"),  # 1 -> 2 -> 3 live
    ("|none~0|+|none~0|nor_conv_3x3~1|+|none~0|none~1|nor_conv_3x3~2|",
     "|none~0|+|none~0|nor_conv_3x3~1|+|none~0|none~1|nor_conv_3x3~2|"),  # convs on zeros still add BN bias
])
def test_prune_dead_edges(genotype, pruned):
  arch = nb201.parse_genotype(genotype)
  assert nb201.prune_dead_edges(arch).genotype == pruned
  assert nb201.prune_dead_edges(nb201.prune_dead_edges(arch)) == nb201.prune_dead_edges(arch)
