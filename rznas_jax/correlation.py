"""Rank correlations between proxy scores and benchmark accuracies, in NumPy alone.

Kendall's tau-b and Spearman's rho are the two numbers every zero-cost-proxy paper reports
(Abdelfattah et al., ICLR 2021; Mellor et al., ICML 2021; RZ-NAS, Ji et al., ICML 2025). Both
handle ties the way ``scipy.stats.kendalltau`` (variant ``"b"``) and ``scipy.stats.spearmanr`` do,
so numbers computed here are comparable with published ones; scipy is needed only by the tests.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np

NAN_POLICIES = ("propagate", "omit", "lowest")
# The rules a correlation report offers (a report always gives a number, so not "propagate").
REPORT_NAN_POLICIES = ("lowest", "omit")


def _pairs(x: Sequence[float], y: Sequence[float], nan_policy: str) -> tuple[np.ndarray, np.ndarray] | None:
  """Validated float64 copies of ``x`` and ``y``; None when the result must be NaN."""
  if nan_policy not in NAN_POLICIES:
    raise ValueError(f"unknown nan_policy {nan_policy!r}; valid: {', '.join(NAN_POLICIES)}.")
  x = np.asarray(x, np.float64).reshape(-1)
  y = np.asarray(y, np.float64).reshape(-1)
  if x.shape != y.shape:
    raise ValueError(f"x and y must have the same length, got {x.size} and {y.size}.")
  if nan_policy == "lowest":  # an undefined score ranks below every defined one
    x = np.where(np.isnan(x), -np.inf, x)
  nan = np.isnan(x) | np.isnan(y)
  if nan.any():
    if nan_policy == "propagate":
      return None
    x, y = x[~nan], y[~nan]
  if x.size < 2:
    return None
  return x, y


def rankdata(values: Sequence[float]) -> np.ndarray:
  """Ranks 1..n, ties given the mean of the ranks they span (``scipy.stats.rankdata``'s "average").

  Example:
    >>> rankdata([10, 20, 20, 5])
    array([2. , 3.5, 3.5, 1. ])
  """
  values = np.asarray(values).reshape(-1)
  order = np.argsort(values, kind="stable")
  sorted_values = values[order]
  # Start of every run of equal values in sorted order.
  starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
  ends = np.r_[starts[1:], values.size]
  mean_rank = (starts + ends + 1) / 2.0  # mean of the 1-based ranks starts+1..ends
  ranks = np.empty(values.size, np.float64)
  ranks[order] = np.repeat(mean_rank, ends - starts)
  return ranks


def _dense_codes(values: np.ndarray) -> np.ndarray:
  """Integer codes 0..k-1 that preserve order and equality."""
  return np.unique(values, return_inverse=True)[1].reshape(-1)


def _tie_pairs(codes: np.ndarray) -> int:
  """Pairs that share a value: sum of t(t-1)/2 over groups of size t."""
  counts = np.bincount(codes).astype(np.int64)
  return int((counts * (counts - 1) // 2).sum())


def count_inversions(values: Sequence[int]) -> int:
  """Pairs ``i < j`` with ``values[i] > values[j]`` (strictly), in O(n log^2 n) NumPy.

  A bottom-up merge sort: at width ``w`` the array is sorted within blocks of ``w``; every element
  of a right block counts the elements of its left neighbour that are larger, found with one
  ``searchsorted`` over all blocks at once (each block's values offset by its block number).
  """
  v = _dense_codes(np.asarray(values))
  n = v.size
  if n < 2:
    return 0
  span = int(v.max()) + 1
  index = np.arange(n)
  total = 0
  width = 1
  while width < n:
    pair = index // (2 * width)
    is_right = (index // width) % 2 == 1
    left_keys = pair[~is_right] * span + v[~is_right]  # sorted: blocks are sorted, offsets grow
    right = np.flatnonzero(is_right)
    right_pair = pair[right]
    # Elements of the left block that are <= the right element, then the rest are larger.
    not_larger = np.searchsorted(left_keys, right_pair * span + v[right], side="right")
    left_start = right_pair * width  # left blocks before pair p hold exactly p*width elements
    total += int((width - (not_larger - left_start)).sum())
    # Merge: sort within blocks of 2*width.
    v = v[np.argsort(pair * span + v, kind="stable")]
    width *= 2
  return total


def kendall_tau(x: Sequence[float], y: Sequence[float], *, nan_policy: str = "propagate") -> float:
  """Kendall's tau-b, as ``scipy.stats.kendalltau(x, y, variant="b").statistic``.

  ``tau_b = (P - Q) / sqrt((n0 - n1) (n0 - n2))`` with ``P``/``Q`` the concordant/discordant pairs,
  ``n0 = n(n-1)/2`` and ``n1``/``n2`` the pairs tied in ``x``/``y`` (Kendall 1945; Knight's
  O(n log n) counting, JASA 1966). NaN when there are fewer than two pairs or either side is
  constant.

  Args:
    x, y: equal-length sequences.
    nan_policy: ``"propagate"`` (a NaN anywhere gives NaN), ``"omit"`` (drop pairs with a NaN) or
      ``"lowest"`` (a NaN in ``x`` ranks below every other value, tied with ``-inf``; pairs with a
      NaN in ``y`` are dropped). "lowest" is NASLib's convention for a proxy whose score is
      undefined, e.g. jacov on a cell whose output ignores its input (it stores -1e8).

  Returns:
    tau-b in [-1, 1], or NaN.

  Example:
    >>> kendall_tau([1, 2, 3, 4], [1, 3, 2, 4])
    0.6666666666666666
  """
  pair = _pairs(x, y, nan_policy)
  if pair is None:
    return math.nan
  x, y = pair
  n = x.size
  total = n * (n - 1) // 2
  cx, cy = _dense_codes(x), _dense_codes(y)
  x_ties = _tie_pairs(cx)
  y_ties = _tie_pairs(cy)
  both_ties = _tie_pairs(_dense_codes(cx.astype(np.int64) * (int(cy.max()) + 1) + cy))
  if x_ties == total or y_ties == total:
    return math.nan
  # Sorted by (x, y), a strict inversion of y is a discordant pair; pairs tied in x are in y order.
  order = np.lexsort((cy, cx))
  discordant = count_inversions(cy[order])
  concordant_minus_discordant = total - x_ties - y_ties + both_ties - 2 * discordant
  tau = concordant_minus_discordant / math.sqrt(total - x_ties) / math.sqrt(total - y_ties)
  return float(min(1.0, max(-1.0, tau)))


def spearman_rho(x: Sequence[float], y: Sequence[float], *, nan_policy: str = "propagate") -> float:
  """Spearman's rho: the Pearson correlation of average ranks (``scipy.stats.spearmanr``).

  Args:
    x, y: equal-length sequences.
    nan_policy: ``"propagate"``, ``"omit"`` or ``"lowest"``, as in `kendall_tau`.

  Returns:
    rho in [-1, 1], or NaN for fewer than two pairs or a constant side.

  Example:
    >>> spearman_rho([1, 2, 3, 4], [1, 3, 2, 4])
    0.8
  """
  pair = _pairs(x, y, nan_policy)
  if pair is None:
    return math.nan
  rx = rankdata(pair[0])
  ry = rankdata(pair[1])
  rx -= rx.mean()
  ry -= ry.mean()
  denom = math.sqrt(float(rx @ rx) * float(ry @ ry))
  if denom == 0.0:
    return math.nan
  return float(min(1.0, max(-1.0, float(rx @ ry) / denom)))


def _json_number(value: float) -> float | None:
  return float(value) if math.isfinite(value) else None


def correlation_report(scores: Mapping[str, Sequence[float]],
                       accuracies: Mapping[str, Sequence[float]], *,
                       nan_policy: str = "omit") -> dict[str, dict[str, dict[str, float | None]]]:
  """Spearman and Kendall of every proxy against every dataset's accuracies.

  A NaN score (a proxy undefined on a cell, e.g. jacov on a cell whose output ignores its input)
  is left out with ``nan_policy="omit"`` and ranked below every defined score with ``"lowest"``
  (NASLib stores -1e8 for such a cell); a NaN accuracy is always left out. A correlation that is
  undefined (a constant score) is ``None``, so the result is plain JSON.

  Args:
    scores: {proxy: scores}, all in the same order of architectures.
    accuracies: {dataset: accuracies} in that order.
    nan_policy: ``"omit"`` or ``"lowest"``.

  Returns:
    ``{proxy: {dataset: {"spearman": rho, "kendall": tau}}}``.

  Example:
    >>> correlation_report({"params": [1, 2, 3]}, {"cifar10": [0.1, 0.3, 0.2]})
    {'params': {'cifar10': {'spearman': 0.5, 'kendall': 0.3333333333333333}}}
  """
  if nan_policy not in REPORT_NAN_POLICIES:
    raise ValueError(f"unknown nan_policy {nan_policy!r}; valid: {', '.join(REPORT_NAN_POLICIES)}.")
  report = {}
  for proxy, s in scores.items():
    report[proxy] = {}
    for dataset, acc in accuracies.items():
      report[proxy][dataset] = {
          "spearman": _json_number(spearman_rho(s, acc, nan_policy=nan_policy)),
          "kendall": _json_number(kendall_tau(s, acc, nan_policy=nan_policy)),
      }
  return report
