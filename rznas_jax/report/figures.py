"""The report's plots, drawn with matplotlib's object API (no pyplot, so no GUI backend and no
global figure state): each function draws one figure and saves it as a PNG.

Figures are `matplotlib.figure.Figure` objects on an Agg canvas; the report therefore runs on
machines without a display, in threads, and never changes the process's matplotlib backend.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Mapping, Sequence

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
import numpy as np

from rznas_jax import correlation

DPI = 110
DATASET_LABELS = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "imagenet16-120": "ImageNet16-120"}


def save(fig: Figure, path: str) -> str:
  """Saves ``fig`` as a PNG at ``path`` (folders created); returns ``path``."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  FigureCanvasAgg(fig)  # the Agg canvas, explicitly: no GUI backend is ever selected
  fig.savefig(path, dpi=DPI)
  return path


WIDE_DECADES = 3.0  # scores whose magnitudes span more than this many decades get a log-type axis


@dataclasses.dataclass(frozen=True)
class AxisScale:
  """How to draw an axis of scores, chosen from the scores by `axis_scale`.

  Attributes:
    name: matplotlib's scale: "linear", "log" or "symlog".
    label_suffix: words for the end of the axis label, e.g. " (log scale)"; "" when linear.
    linthresh: for "symlog", the half-width of the linear band around 0; else None.
  """
  name: str
  label_suffix: str = ""
  linthresh: float | None = None


def axis_scale(values: np.ndarray) -> AxisScale:
  """Chooses a linear, log or symlog axis for ``values`` (NaN and ±inf ignored).

  A linear axis unless the nonzero magnitudes span more than `WIDE_DECADES` decades: then
  "log" when every value is positive (SynFlow's 1e20..1e48), and "symlog" when some are zero
  or negative (a log axis cannot show them). The symlog axis is linear within ±10^k, the power of
  ten at or below the smallest nonzero magnitude, so zeros sit at 0 and the rest are spread by
  order of magnitude on either side. Scores that change sign but span few decades (-3..5) stay
  linear, where they read best.

  Args:
    values: the scores to be drawn along the axis.

  Returns:
    The `AxisScale`; its ``label_suffix`` names any non-linear scale for the axis label.

  Example:
    >>> axis_scale(np.array([1e20, 3e35, 1e48])).name
    'log'
    >>> axis_scale(np.array([210.0, 640.0, 1180.0])).name
    'linear'
  """
  v = np.asarray(values, np.float64).ravel()
  v = v[np.isfinite(v)]
  magnitudes = np.abs(v[v != 0])
  if magnitudes.size < 2 or magnitudes.max() <= magnitudes.min() * 10 ** WIDE_DECADES:
    return AxisScale("linear")
  if v.min() > 0:
    return AxisScale("log", " (log scale)")
  linthresh = float(10 ** np.floor(np.log10(magnitudes.min())))  # a power of ten: ticks 0, 10^k, ...
  return AxisScale("symlog", f" (symlog scale, linear within ±{linthresh:.0e})", linthresh)


def _set_scale(ax, axis: str, scale: AxisScale) -> None:
  """Sets ``ax``'s ``axis`` ("x" or "y") to ``scale``."""
  setter = ax.set_xscale if axis == "x" else ax.set_yscale
  if scale.name == "symlog":
    setter("symlog", linthresh=scale.linthresh)
  else:
    setter(scale.name)


def score_curves(best: np.ndarray, median: np.ndarray, seconds: np.ndarray | None, proxy: str,
                 path: str, *, time_note: str = "") -> str:
  """Best and median population score against iteration and (when known) wall time.

  Args:
    best, median: length T + 1 (index 0: the initial population).
    seconds: wall seconds at each of the T + 1 points, or None.
    proxy: the score's name, for the axis label.
    path: the PNG to write.
    time_note: a note for the wall-time axis (e.g. how the times were obtained).
  """
  panels = 2 if seconds is not None else 1
  fig = Figure(figsize=(5.2 * panels, 3.6), layout="constrained")
  iterations = np.arange(best.size)
  scale = axis_scale(np.concatenate([best, median]))
  xs = [(iterations, "iteration (mutation attempts)")]
  if seconds is not None:
    xs.append((seconds, "wall time (s)" + (f" — {time_note}" if time_note else "")))
  for k, (x, label) in enumerate(xs):
    ax = fig.add_subplot(1, panels, k + 1)
    ax.step(x, best, where="post", label="best in population", color="tab:blue")
    ax.step(x, median, where="post", label="median of population", color="tab:orange")
    ax.set_xlabel(label)
    ax.set_ylabel(f"{proxy} score{scale.label_suffix}")
    _set_scale(ax, "y", scale)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
  fig.suptitle("Population score during the search")
  return save(fig, path)


def rejection_curves(cumulative: np.ndarray, moving: np.ndarray, window: int, path: str) -> str:
  """The invalid-reply rate after each attempt: cumulative and over a moving window."""
  fig = Figure(figsize=(6.4, 3.4), layout="constrained")
  ax = fig.add_subplot(1, 1, 1)
  x = np.arange(1, cumulative.size + 1)
  ax.plot(x, 100 * moving, label=f"last {window} attempts", color="tab:red", alpha=0.7)
  ax.plot(x, 100 * cumulative, label="since the start", color="black")
  ax.set_xlabel("iteration (mutation attempts)")
  ax.set_ylabel("rejected replies (%)")
  ax.set_ylim(-2, 102)
  ax.grid(alpha=0.3)
  ax.legend(loc="upper right", fontsize=8)
  ax.set_title("Invalid-reply rate")
  return save(fig, path)


def accuracy_curves(accuracy_of_best: Mapping[str, np.ndarray],
                    best_accuracy_in_population: Mapping[str, np.ndarray] | None,
                    optimum: Mapping[str, float], path: str) -> str:
  """Test accuracy of the best-scoring member against iteration, one panel per dataset (the
  paper's Fig. 5, against iterations).

  Args:
    accuracy_of_best: {dataset: accuracy of the population's top-scoring member, T + 1 values}.
    best_accuracy_in_population: {dataset: highest accuracy of any member}, or None.
    optimum: {dataset: the benchmark's best accuracy}, drawn as a dotted line.
    path: the PNG to write.
  """
  datasets = list(accuracy_of_best)
  fig = Figure(figsize=(4.4 * len(datasets), 3.4), layout="constrained")
  for k, d in enumerate(datasets):
    ax = fig.add_subplot(1, len(datasets), k + 1)
    x = np.arange(accuracy_of_best[d].size)
    ax.step(x, accuracy_of_best[d], where="post", label="top-scoring member", color="tab:blue")
    if best_accuracy_in_population is not None:
      ax.step(x, best_accuracy_in_population[d], where="post", color="tab:green", alpha=0.6,
              linestyle="--", label="most accurate member (oracle)")
    if d in optimum:
      ax.axhline(optimum[d], color="gray", linestyle=":", label=f"benchmark best {optimum[d]:.2f}")
    ax.set_title(DATASET_LABELS.get(d, d))
    ax.set_xlabel("iteration")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=7)
  fig.suptitle("NB201 test accuracy of the population's best (cf. the paper's Fig. 5)")
  return save(fig, path)


def scatter_panels(scores: np.ndarray, accuracies: Mapping[str, np.ndarray], proxy: str, path: str,
                   *, title: str, highlight: int | None = None) -> str:
  """Proxy score against accuracy, one panel per dataset, Kendall τ and Spearman ρ in the titles.

  Args:
    scores: one score per architecture.
    accuracies: {dataset: accuracies in the order of ``scores``}.
    proxy: the score's name.
    path: the PNG to write.
    title: the figure's title.
    highlight: index of an architecture to mark (the search's answer), or None.
  """
  scores = np.asarray(scores, np.float64)
  datasets = list(accuracies)
  fig = Figure(figsize=(4.4 * len(datasets), 3.6), layout="constrained")
  scale = axis_scale(scores)
  for k, d in enumerate(datasets):
    acc = np.asarray(accuracies[d], np.float64)
    tau = correlation.kendall_tau(scores, acc, nan_policy="omit")
    rho = correlation.spearman_rho(scores, acc, nan_policy="omit")
    ax = fig.add_subplot(1, len(datasets), k + 1)
    ax.scatter(scores, acc, s=8, alpha=0.5, color="tab:blue", linewidths=0)
    if highlight is not None:
      ax.scatter([scores[highlight]], [acc[highlight]], s=60, marker="*", color="tab:red",
                 label="search result", zorder=3)
      ax.legend(loc="lower right", fontsize=7)
    _set_scale(ax, "x", scale)
    ax.set_xlabel(f"{proxy} score{scale.label_suffix}")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"{DATASET_LABELS.get(d, d)}: τ={tau:.3f}, ρ={rho:.3f} (n={np.isfinite(scores).sum()})",
                 fontsize=9)
    ax.grid(alpha=0.3)
  fig.suptitle(title)
  return save(fig, path)


def correlation_titles(scores: Mapping[str, np.ndarray], accuracies: Mapping[str, np.ndarray],
                       nan_policy: str = "omit") -> list[list[str]]:
  """The panel titles of `correlation_grid`: ``proxy / dataset: Kendall τ=…, Spearman ρ=…``
  (tau-b and rho as scipy computes them; NaN scores left out or ranked lowest, as in
  `correlation.correlation_report`), one row per proxy."""
  out = []
  for p, s in scores.items():
    row = []
    for d, acc in accuracies.items():
      tau = correlation.kendall_tau(s, acc, nan_policy=nan_policy)
      rho = correlation.spearman_rho(s, acc, nan_policy=nan_policy)
      row.append(f"{p} / {DATASET_LABELS.get(d, d)}: Kendall τ={tau:.3f}, Spearman ρ={rho:.3f}")
    out.append(row)
  return out


def correlation_grid(scores: Mapping[str, np.ndarray], accuracies: Mapping[str, np.ndarray],
                     path: str, *, title: str, nan_policy: str = "omit") -> str:
  """One row per proxy, one column per dataset: score against accuracy, τ and ρ in each title."""
  proxies, datasets = list(scores), list(accuracies)
  titles = correlation_titles(scores, accuracies, nan_policy)
  fig = Figure(figsize=(4.2 * len(datasets), 3.3 * len(proxies)), layout="constrained")
  for i, p in enumerate(proxies):
    s = np.asarray(scores[p], np.float64)
    scale = axis_scale(s)
    for j, d in enumerate(datasets):
      ax = fig.add_subplot(len(proxies), len(datasets), i * len(datasets) + j + 1)
      ax.scatter(s, np.asarray(accuracies[d], np.float64), s=6, alpha=0.4, color="tab:blue",
                 linewidths=0)
      _set_scale(ax, "x", scale)
      ax.set_xlabel(f"{p} score{scale.label_suffix}")
      ax.set_ylabel(f"{DATASET_LABELS.get(d, d)} accuracy (%)")
      ax.set_title(titles[i][j], fontsize=8)
      ax.grid(alpha=0.3)
  fig.suptitle(title)
  return save(fig, path)


def bar_counts(labels: Sequence[str], counts: Sequence[int], path: str, *, title: str) -> str:
  """A horizontal bar chart of counts (e.g. attempts by kind)."""
  fig = Figure(figsize=(6.0, 0.35 * len(labels) + 1.2), layout="constrained")
  ax = fig.add_subplot(1, 1, 1)
  y = np.arange(len(labels))
  ax.barh(y, counts, color="tab:gray")
  ax.set_yticks(y, labels)
  ax.invert_yaxis()
  for yi, c in zip(y, counts):
    ax.text(c, yi, f" {c}", va="center", fontsize=8)
  ax.set_xlabel("attempts")
  ax.set_title(title)
  return save(fig, path)
