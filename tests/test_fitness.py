"""Rank-aggregated fitness (`rznas_jax.fitness`) against scipy and hand-computed values."""

import numpy as np
import pytest
from scipy import stats

from rznas_jax import fitness

VALID = ["az_expressivity", "az_progressivity", "az_trainability", "flops", "synflow", "zico"]


def test_ranks_equal_scipy_with_nan_and_minus_inf_lowest():
  rng = np.random.default_rng(0)
  for _ in range(100):
    v = rng.integers(0, 6, size=rng.integers(1, 40)).astype(float)
    v[rng.random(v.size) < 0.2] = np.nan
    v[rng.random(v.size) < 0.1] = -np.inf
    expected = stats.rankdata(np.where(np.isnan(v), -np.inf, v), method="average")
    np.testing.assert_array_equal(fitness.ranks(v), expected)


def test_log_and_linear_aggregates_by_hand():
  scores = {"synflow": np.array([3.0, 1.0, 2.0, 2.0]), "zico": np.array([10.0, 40.0, 30.0, 20.0])}
  # synflow ranks 4, 1, 2.5, 2.5; zico ranks 1, 4, 3, 2; n = 4.
  log = fitness.aggregate(fitness.parse("rank:synflow+zico", VALID), scores)
  np.testing.assert_allclose(log, [np.log(4 / 4) + np.log(1 / 4), np.log(1 / 4) + np.log(4 / 4),
                                   np.log(2.5 / 4) + np.log(3 / 4), np.log(2.5 / 4) + np.log(2 / 4)])
  linear = fitness.aggregate(fitness.parse("rank_linear:synflow+zico", VALID), scores)
  np.testing.assert_allclose(linear, [5 / 4, 5 / 4, 5.5 / 4, 4.5 / 4])
  single = fitness.aggregate(fitness.parse("synflow", VALID), scores)
  np.testing.assert_array_equal(single, scores["synflow"])


def test_az_nas_is_the_four_proxy_log_aggregate():
  f = fitness.parse("az_nas", VALID)
  assert f.components == ("az_expressivity", "az_progressivity", "az_trainability", "flops")
  assert f.aggregate == fitness.LOG and f.name == "az_nas"


def test_a_members_fitness_falls_when_better_ones_join_the_reference_set():
  f = fitness.parse("rank:synflow+zico", VALID)
  small = fitness.aggregate(f, {"synflow": np.array([2.0, 1.0]), "zico": np.array([2.0, 1.0])})
  grown = fitness.aggregate(f, {"synflow": np.array([2.0, 1.0, 5.0]), "zico": np.array([2.0, 1.0, 5.0])})
  assert small[0] == 0.0 and grown[0] < small[0]  # best of 2, then second of 3


def test_percentiles():
  np.testing.assert_allclose(fitness.percentiles(np.array([1.0, 3.0, 2.0])), [0.0, 100.0, 50.0])


@pytest.mark.parametrize("name,words", [
    ("rank:synflow+synflaw", ["synflaw", "synflow"]),
    ("rank:synflow", ["rank:synflow", "at least two"]),
    ("rank:synflow+synflow", ["twice"]),
    ("rank:synflow+", ["empty"]),
    ("synflaw", ["synflaw", "az_nas"]),
])
def test_bad_names_get_one_sentence(name, words):
  with pytest.raises(fitness.FitnessError) as e:
    fitness.parse(name, VALID)
  message = str(e.value)
  assert "\n" not in message and all(w in message for w in words), message
