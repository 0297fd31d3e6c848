"""`figures.axis_scale` and the score-against-accuracy figures that use it (issue 20: SynFlow's
1e20..1e48 scores drawn on a linear axis put nearly every point in one vertical line)."""

import numpy as np
import pytest

from rznas_jax.report import figures

RNG = np.random.default_rng(0)
SYNFLOW_LIKE = 10.0 ** RNG.uniform(20, 48, 150)
NASWOT_LIKE = RNG.uniform(200, 1200, 150)


@pytest.mark.parametrize("values, name, suffix", [
    (SYNFLOW_LIKE, "log", " (log scale)"),
    (np.append(SYNFLOW_LIKE, [np.nan, np.inf]), "log", " (log scale)"),  # non-finite ignored
    (NASWOT_LIKE, "linear", ""),
    (np.array([1.0, 999.0]), "linear", ""),  # three decades exactly: still linear
    (np.array([1.0, 1001.0]), "log", " (log scale)"),
    (np.array([-2.0, 0.5, 3.0]), "linear", ""),  # changes sign within a decade
    (np.array([7.0, 7.0, np.nan]), "linear", ""),
    (np.array([]), "linear", ""),
])
def test_scale_from_the_data(values, name, suffix):
  scale = figures.axis_scale(values)
  assert (scale.name, scale.label_suffix) == (name, suffix)


def test_sign_change_or_zeros_over_many_decades_is_symlog():
  grasp_like = np.concatenate([-10.0 ** RNG.uniform(-2, 5, 50), 10.0 ** RNG.uniform(-2.5, 6, 50)])
  scale = figures.axis_scale(grasp_like)
  smallest = np.abs(grasp_like).min()
  assert scale.name == "symlog"
  assert scale.linthresh <= smallest < 10 * scale.linthresh  # the power of ten below it
  assert np.log10(scale.linthresh) == np.round(np.log10(scale.linthresh))
  assert scale.label_suffix == f" (symlog scale, linear within ±{scale.linthresh:.0e})"
  with_zeros = figures.axis_scale(np.append(SYNFLOW_LIKE, [0.0, 0.0]))  # dead cells: SynFlow 0
  assert with_zeros.name == "symlog" and with_zeros.linthresh <= SYNFLOW_LIKE.min()


def _drawn(monkeypatch, draw):
  """The figure ``draw`` saves, kept instead of written."""
  kept = []
  monkeypatch.setattr(figures, "save", lambda fig, path: kept.append(fig) or path)
  draw()
  return kept[0]


def test_correlation_grid_and_search_scatter_use_the_scale(monkeypatch):
  accuracy = {"cifar10": RNG.uniform(10, 94, 150), "cifar100": RNG.uniform(1, 73, 150)}
  fig = _drawn(monkeypatch, lambda: figures.correlation_grid(
      {"synflow": SYNFLOW_LIKE, "naswot": NASWOT_LIKE}, accuracy, "unused.png", title="t"))
  got = [(ax.get_xscale(), ax.get_xlabel()) for ax in fig.axes]
  assert got == [("log", "synflow score (log scale)")] * 2 + [("linear", "naswot score")] * 2
  fig = _drawn(monkeypatch, lambda: figures.scatter_panels(
      SYNFLOW_LIKE, accuracy, "synflow", "unused.png", title="t", highlight=3))
  assert [(ax.get_xscale(), ax.get_xlabel()) for ax in fig.axes] == [("log", "synflow score (log scale)")] * 2
