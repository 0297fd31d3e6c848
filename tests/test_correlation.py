"""Kendall tau-b and Spearman rho against scipy.stats and hand computations."""

import itertools
import math

import numpy as np
import pytest

from rznas_jax import correlation

stats = pytest.importorskip("scipy.stats")


def brute_force_tau_b(x, y):
  """tau-b straight from its definition, over all pairs (Kendall 1945)."""
  concordant = discordant = x_only = y_only = 0
  for i, j in itertools.combinations(range(len(x)), 2):
    dx, dy = np.sign(x[i] - x[j]), np.sign(y[i] - y[j])
    if dx == 0 and dy == 0:
      continue
    if dx == 0:
      x_only += 1
    elif dy == 0:
      y_only += 1
    elif dx == dy:
      concordant += 1
    else:
      discordant += 1
  return (concordant - discordant) / math.sqrt((concordant + discordant + x_only) *
                                               (concordant + discordant + y_only))


def tied_data(rng, n, levels):
  """Scores and accuracies with many ties (few distinct values), the case that needs tau-b."""
  x = rng.integers(0, levels, n).astype(np.float64)
  y = np.round(0.5 * x + rng.normal(0, 1.5, n))
  return x, y


# --- hand-computed cases ---------------------------------------------------------------------------


def test_hand_computed_small_cases():
  # One swapped pair out of 6: tau = (5 - 1) / 6; d^2 = 2, rho = 1 - 6*2 / (4*15) = 0.8.
  assert correlation.kendall_tau([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(2 / 3, abs=1e-15)
  assert correlation.spearman_rho([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8, abs=1e-15)
  # Reversal.
  assert correlation.kendall_tau([1, 2, 3], [3, 2, 1]) == -1.0
  assert correlation.spearman_rho([1, 2, 3], [30, 20, 10]) == -1.0
  # x = (1, 1, 2), y = (1, 2, 3): pairs (0,1) tied in x, (0,2), (1,2) concordant:
  # tau_b = 2 / sqrt((3 - 1) * 3) = 0.8165; ranks x = (1.5, 1.5, 3) vs (1, 2, 3): rho = 0.8660.
  assert correlation.kendall_tau([1, 1, 2], [1, 2, 3]) == pytest.approx(2 / math.sqrt(6), abs=1e-15)
  assert correlation.spearman_rho([1, 1, 2], [1, 2, 3]) == pytest.approx(math.sqrt(3) / 2, abs=1e-15)


def test_rankdata_averages_ties():
  np.testing.assert_array_equal(correlation.rankdata([10, 20, 20, 5]), [2, 3.5, 3.5, 1])
  np.testing.assert_array_equal(correlation.rankdata([7, 7, 7]), [2, 2, 2])
  np.testing.assert_array_equal(correlation.rankdata([-np.inf, 3, np.inf]), [1, 2, 3])


def test_count_inversions_matches_brute_force():
  rng = np.random.default_rng(0)
  for n in [0, 1, 2, 3, 5, 8, 13, 64, 100]:
    v = rng.integers(0, 6, n)
    expected = sum(int(v[i] > v[j]) for i, j in itertools.combinations(range(n), 2))
    assert correlation.count_inversions(v) == expected, n


def test_undefined_cases_are_nan():
  assert math.isnan(correlation.kendall_tau([1, 1, 1], [1, 2, 3]))
  assert math.isnan(correlation.spearman_rho([1, 2, 3], [5, 5, 5]))
  assert math.isnan(correlation.kendall_tau([1], [2]))
  assert math.isnan(correlation.spearman_rho([], []))


# --- against scipy ---------------------------------------------------------------------------------


@pytest.mark.parametrize("n,levels", [(2, 2), (7, 3), (50, 4), (200, 10), (1000, 30), (3000, 3000)])
def test_matches_scipy_with_ties(n, levels):
  rng = np.random.default_rng(n)
  x, y = tied_data(rng, n, levels)
  if np.unique(x).size < 2 or np.unique(y).size < 2:
    pytest.skip("constant sample")
  assert correlation.kendall_tau(x, y) == pytest.approx(
      stats.kendalltau(x, y, variant="b").statistic, abs=1e-12)
  assert correlation.spearman_rho(x, y) == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)


def test_matches_brute_force_tau_b():
  rng = np.random.default_rng(1)
  for n in [3, 10, 40]:
    x, y = tied_data(rng, n, 4)
    assert correlation.kendall_tau(x, y) == pytest.approx(brute_force_tau_b(x, y), abs=1e-12)


def test_continuous_data_and_infinities_match_scipy():
  rng = np.random.default_rng(2)
  x = rng.normal(size=500)
  y = x + rng.normal(size=500)
  x[:5] = -np.inf  # e.g. log-synflow of cells with no path from input to output
  assert correlation.kendall_tau(x, y) == pytest.approx(stats.kendalltau(x, y).statistic, abs=1e-12)
  assert correlation.spearman_rho(x, y) == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)


def test_nan_policies_match_scipy():
  rng = np.random.default_rng(3)
  x, y = tied_data(rng, 100, 8)
  x[[3, 17]] = np.nan
  y[40] = np.nan
  assert math.isnan(correlation.kendall_tau(x, y))
  assert math.isnan(correlation.spearman_rho(x, y))
  assert correlation.kendall_tau(x, y, nan_policy="omit") == pytest.approx(
      stats.kendalltau(x, y, nan_policy="omit").statistic, abs=1e-12)
  assert correlation.spearman_rho(x, y, nan_policy="omit") == pytest.approx(
      stats.spearmanr(x, y, nan_policy="omit").statistic, abs=1e-12)
  # "lowest": NaN scores rank with -inf, below every score (NASLib's -1e8); NaN accuracies dropped
  # (scipy's own "omit" path masks infinities too, so the pairs are dropped by hand here)
  keep = ~np.isnan(y)
  low = np.where(np.isnan(x), -np.inf, x)[keep]
  assert correlation.spearman_rho(x, y, nan_policy="lowest") == pytest.approx(
      stats.spearmanr(low, y[keep]).statistic, abs=1e-12)
  assert correlation.kendall_tau(x, y, nan_policy="lowest") == pytest.approx(
      stats.kendalltau(low, y[keep]).statistic, abs=1e-12)
  assert correlation.spearman_rho(x, y, nan_policy="lowest") != pytest.approx(
      correlation.spearman_rho(x, y, nan_policy="omit"), abs=1e-6)
  with pytest.raises(ValueError, match="nan_policy"):
    correlation.kendall_tau(x, y, nan_policy="raise")


def test_length_mismatch_is_an_error():
  with pytest.raises(ValueError, match="same length"):
    correlation.spearman_rho([1, 2, 3], [1, 2])


# --- the report ------------------------------------------------------------------------------------


def test_correlation_report_structure_and_values():
  rng = np.random.default_rng(4)
  acc = {"cifar10": rng.normal(size=30), "cifar100": rng.normal(size=30)}
  scores = {"a": rng.normal(size=30), "b": np.full(30, 2.0)}
  scores["a"][0] = np.nan
  report = correlation.correlation_report(scores, acc)
  assert set(report) == {"a", "b"}
  for dataset in acc:
    entry = report["a"][dataset]
    assert set(entry) == {"spearman", "kendall"}
    assert entry["spearman"] == pytest.approx(
        stats.spearmanr(scores["a"], acc[dataset], nan_policy="omit").statistic, abs=1e-12)
    assert entry["kendall"] == pytest.approx(
        stats.kendalltau(scores["a"], acc[dataset], nan_policy="omit").statistic, abs=1e-12)
    # A constant proxy has no rank correlation: None, so the report is plain JSON.
    assert report["b"][dataset] == {"spearman": None, "kendall": None}


def test_correlation_report_ranks_nan_scores_lowest_when_asked():
  rng = np.random.default_rng(5)
  acc = {"cifar10": rng.normal(size=30)}
  acc["cifar10"][7] = np.nan  # an accuracy that is missing is always left out
  score = rng.normal(size=30)
  score[[0, 11]] = np.nan
  report = correlation.correlation_report({"a": score}, acc, nan_policy="lowest")["a"]["cifar10"]
  keep = ~np.isnan(acc["cifar10"])
  floored = np.where(np.isnan(score), score[~np.isnan(score)].min() - 1.0, score)  # NASLib's -1e8
  assert report["spearman"] == pytest.approx(
      stats.spearmanr(floored[keep], acc["cifar10"][keep]).statistic, abs=1e-12)
  assert report["kendall"] == pytest.approx(
      stats.kendalltau(floored[keep], acc["cifar10"][keep]).statistic, abs=1e-12)
  with pytest.raises(ValueError, match="nan_policy"):
    correlation.correlation_report({"a": score}, acc, nan_policy="drop")
