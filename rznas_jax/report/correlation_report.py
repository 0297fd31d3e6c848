"""The correlation figure of a ``launch/correlate.py`` folder: proxy score against benchmark
accuracy, one panel per (proxy, dataset), Kendall τ and Spearman ρ in each title.

The folder's ``scores.csv`` has ``arch``, one column per proxy and one ``accuracy_<dataset>``
column per dataset; τ and ρ are recomputed from it (NaN scores left out), as
``correlation.json`` computes them.
"""

from __future__ import annotations

import json
import os

from rznas_jax import correlation
from rznas_jax import results
from rznas_jax.report import figures
from rznas_jax.report import html
from rznas_jax.report import run_folder

FIGURE_FILE = "correlation.png"
ACCURACY_PREFIX = "accuracy_"


def _read(corr_dir: str):
  path = os.path.join(corr_dir, run_folder.SCORES_CSV)
  if not os.path.isfile(path):
    raise run_folder.RunFolderError(f"{corr_dir!r} has no {run_folder.SCORES_CSV}; give the --out "
                                    "folder of launch/correlate.py.")
  _, columns = results.read_scores_csv(path)
  accuracies = {k[len(ACCURACY_PREFIX):]: v for k, v in columns.items() if k.startswith(ACCURACY_PREFIX)}
  scores = {k: v for k, v in columns.items() if not k.startswith(ACCURACY_PREFIX)}
  if not accuracies or not scores:
    raise run_folder.RunFolderError(f"{path} needs proxy columns and accuracy_<dataset> columns; it has "
                                    f"{', '.join(columns) or 'none'}.")
  return scores, accuracies


def plot_correlation(corr_dir: str, path: str | None = None) -> str:
  """Draws the correlation figure of a ``launch/correlate.py`` folder; returns its path.

  Args:
    corr_dir: the folder holding ``scores.csv`` with ``accuracy_<dataset>`` columns.
    path: the PNG to write; default ``corr_dir/correlation.png``.

  Raises:
    RunFolderError: the folder has no usable ``scores.csv``.

  Example:
    >>> plot_correlation("/tmp/corr")
    '/tmp/corr/correlation.png'
  """
  scores, accuracies = _read(corr_dir)
  n = len(next(iter(scores.values())))
  return figures.correlation_grid(scores, accuracies, path or os.path.join(corr_dir, FIGURE_FILE),
                                  title=f"Proxy score against NB201 test accuracy ({n} architectures)",
                                  nan_policy=_nan_policy(corr_dir))


def _nan_policy(corr_dir: str) -> str:
  """How the folder's ``correlation.json`` ranked NaN scores ("omit" for one that does not say)."""
  path = os.path.join(corr_dir, run_folder.CORRELATION_FILE)
  try:
    with open(path) as f:
      policy = json.load(f).get("settings", {}).get("nan_policy", "omit")
  except (OSError, ValueError):
    return "omit"
  return policy if policy in correlation.REPORT_NAN_POLICIES else "omit"


def write_correlation_report(corr_dir: str, out_dir: str | None = None, *, embed: bool = False) -> str:
  """Writes an HTML page with the correlation figure and table of a correlate folder.

  Args:
    corr_dir: a ``launch/correlate.py`` output folder.
    out_dir: where the page and the figure go; default ``corr_dir/report``.
    embed: inline the figure in the page.

  Returns:
    The HTML file's path.

  Raises:
    RunFolderError: the folder is not a correlate folder.
  """
  out_dir = out_dir or os.path.join(corr_dir, "report")
  figure = plot_correlation(corr_dir, os.path.join(out_dir, FIGURE_FILE))
  page = html.Page("Proxy correlation with NB201 accuracy", embed=embed)
  page.section("correlation", "Rank correlation")
  corr_path = os.path.join(corr_dir, run_folder.CORRELATION_FILE)
  if os.path.isfile(corr_path):
    with open(corr_path) as f:
      report = json.load(f)
    rows = []
    for proxy, by_dataset in report.items():
      if proxy in ("settings", "timing") or not isinstance(by_dataset, dict):
        continue
      for dataset, values in by_dataset.items():
        if isinstance(values, dict):
          rows.append((proxy, dataset, _num(values.get("kendall")), _num(values.get("spearman"))))
    page.table(["proxy", "dataset", "Kendall τ", "Spearman ρ"], rows)
    settings = report.get("settings", {})
    if settings:
      page.paragraph("Settings: " + html.escape(", ".join(f"{k}={v}" for k, v in settings.items())),
                     note=True)
  page.image(figure, "proxy score against accuracy", out_dir)
  return page.write(os.path.join(out_dir, "index.html"))


def _num(value) -> str:
  return "nan" if value is None else f"{float(value):.4f}"
