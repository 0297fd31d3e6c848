"""The RZ-NAS paper's NB201 tables (Tables 2 and 3) and our results beside them, as markdown.

Table 2 of the paper gives NB201 valid and test accuracy (mean ± std over 3 runs) for each proxy
X, searched with the original zero-cost evolutionary algorithm ("X": random mutation) and with
RZ-NAS ("Ours(X)"). Our rows come from our searches; the benchmark table this project reads
(NATS-Bench TSS, 200 epochs) has test accuracies only, so the valid columns are the paper's alone.

Table 3 (rank correlation of "Ours(X)") is not reproducible as written: the paper never says
over which architectures a *search method* changes a proxy's correlation (docs/search.md).
`table3_markdown` says so and shows the paper's numbers; it computes none.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np

DATASETS = ("cifar10", "cifar100", "imagenet16-120")
DATASET_HEADERS = {"cifar10": "C10", "cifar100": "C100", "imagenet16-120": "IN16"}
PROXIES = ("grasp", "grad_norm", "synflow", "zen", "zico")
PAPER_NAMES = {"grasp": "GraSP", "grad_norm": "Gradnorm", "synflow": "Synflow", "zen": "Zen-NAS",
               "zico": "ZiCo"}
METHODS = ("random", "ours")  # the original zero-cost EA, and RZ-NAS

# Table 2 of the RZ-NAS paper: {(proxy, method): {dataset: (test mean, std)}}.
PAPER_TABLE2_TEST: dict[tuple[str, str], dict[str, tuple[float, float]]] = {
    ("grasp", "random"): {"cifar10": (89.34, 2.16), "cifar100": (60.89, 3.88), "imagenet16-120": (22.99, 11.01)},
    ("grasp", "ours"): {"cifar10": (92.79, 0.80), "cifar100": (69.34, 1.98), "imagenet16-120": (43.16, 2.64)},
    ("grad_norm", "random"): {"cifar10": (89.27, 2.10), "cifar100": (61.06, 4.02), "imagenet16-120": (24.10, 11.36)},
    ("grad_norm", "ours"): {"cifar10": (93.99, 3.44), "cifar100": (71.61, 2.20), "imagenet16-120": (42.61, 1.38)},
    ("synflow", "random"): {"cifar10": (93.48, 0.00), "cifar100": (71.35, 1.51), "imagenet16-120": (45.12, 0.00)},
    ("synflow", "ours"): {"cifar10": (93.47, 0.74), "cifar100": (73.21, 0.12), "imagenet16-120": (46.16, 0.30)},
    ("zen", "random"): {"cifar10": (93.76, 0.00), "cifar100": (70.67, 0.62), "imagenet16-120": (41.44, 0.00)},
    ("zen", "ours"): {"cifar10": (93.48, 0.00), "cifar100": (71.35, 1.51), "imagenet16-120": (45.12, 0.00)},
    ("zico", "random"): {"cifar10": (93.35, 0.00), "cifar100": (70.71, 0.00), "imagenet16-120": (46.18, 0.04)},
    ("zico", "ours"): {"cifar10": (94.24, 0.12), "cifar100": (73.30, 0.21), "imagenet16-120": (46.24, 0.23)},
}
# The NB201 optimum of each dataset's test accuracy (the benchmark's best cells; the paper does not
# state them).
NB201_OPTIMUM = {"cifar10": 94.37, "cifar100": 73.51, "imagenet16-120": 47.31}

# Table 3 of the RZ-NAS paper: {(proxy, method): {dataset: (Kendall tau, Spearman rho)}}.
PAPER_TABLE3: dict[tuple[str, str], dict[str, tuple[float, float]]] = {
    ("grasp", "random"): {"cifar10": (0.37, 0.54), "cifar100": (0.36, 0.51), "imagenet16-120": (0.40, 0.56)},
    ("grasp", "ours"): {"cifar10": (0.43, 0.57), "cifar100": (0.41, 0.55), "imagenet16-120": (0.44, 0.59)},
    ("synflow", "random"): {"cifar10": (0.54, 0.73), "cifar100": (0.57, 0.76), "imagenet16-120": (0.56, 0.75)},
    ("synflow", "ours"): {"cifar10": (0.56, 0.73), "cifar100": (0.60, 0.79), "imagenet16-120": (0.58, 0.78)},
    ("zen", "random"): {"cifar10": (0.29, 0.38), "cifar100": (0.28, 0.36), "imagenet16-120": (0.29, 0.40)},
    ("zen", "ours"): {"cifar10": (0.37, 0.54), "cifar100": (0.36, 0.51), "imagenet16-120": (0.40, 0.56)},
    ("zico", "random"): {"cifar10": (0.61, 0.80), "cifar100": (0.61, 0.81), "imagenet16-120": (0.60, 0.79)},
    ("zico", "ours"): {"cifar10": (0.63, 0.82), "cifar100": (0.63, 0.84), "imagenet16-120": (0.64, 0.81)},
}


def mean_std(values: Sequence[float]) -> tuple[float, float]:
  """Mean and population standard deviation (ddof=0) of ``values``.

  The paper does not say which deviation it reports; ddof=0 is what ``numpy.std`` gives and what
  a "± over 3 runs" most often means in NAS tables.
  """
  v = np.asarray(values, np.float64)
  if v.size == 0:
    return math.nan, math.nan
  return float(v.mean()), float(v.std())


def _cell(mean: float, std: float) -> str:
  return "—" if math.isnan(mean) else f"{mean:.2f}±{std:.2f}"


def _row_name(proxy: str, method: str) -> str:
  name = PAPER_NAMES.get(proxy, proxy)
  return name if method == "random" else f"Ours({name})"


def table2_markdown(ours: Mapping[tuple[str, str], Mapping[str, Sequence[float]]],
                    proxies: Sequence[str] = PROXIES, *, ours_label: str = "this run") -> str:
  """Table 2 as markdown: for each proxy and method, the paper's row, then ours.

  Args:
    ours: {(proxy, method): {dataset: test accuracies of the found cells, one per seed}}; a
      missing entry gives a row of dashes.
    proxies: the proxies, in row order.
    ours_label: how our rows are marked in the "source" column.

  Returns:
    The table, one markdown table (header, separator, rows), ending with a newline.
  """
  head = ["method", "source", "runs"] + [f"{DATASET_HEADERS[d]} test" for d in DATASETS]
  lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for proxy in proxies:
    for method in METHODS:
      name = _row_name(proxy, method)
      paper = PAPER_TABLE2_TEST.get((proxy, method))
      if paper:
        lines.append(f"| {name} | paper | 3 | " + " | ".join(_cell(*paper[d]) for d in DATASETS) + " |")
      runs = ours.get((proxy, method), {})
      n = min((len(runs.get(d, ())) for d in DATASETS), default=0)
      cells = [_cell(*mean_std(runs.get(d, ()))) for d in DATASETS]
      lines.append(f"| {name} | {ours_label} | {n} | " + " | ".join(cells) + " |")
  lines.append("| NB201 optimum | benchmark | — | " +
               " | ".join(f"{NB201_OPTIMUM[d]:.2f}" for d in DATASETS) + " |")
  return "\n".join(lines) + "\n"


TABLE3_NOTE = (
    "Table 3 (rank correlation with NB201 test accuracy) is not reproduced: the paper does not say "
    "over which architectures the correlation of a *search method* (\"Ours(X)\") is computed, so "
    "those rows cannot be recomputed as written; its baseline rows equal ZiCo's "
    "published NATS-Bench correlations, and Ours(Zen-Score) repeats the GraSP row. A proxy's "
    "own correlation (the \"X\" rows) is measured by `python -m launch.correlate` "
    "(and benchmarks/nb201_reference.py); no number below was computed here.")


def table3_markdown(proxies: Sequence[str] = PROXIES) -> str:
  """The paper's Table 3 with a note on why it is not reproduced; no number is computed."""
  head = ["method", "source"] + [f"{DATASET_HEADERS[d]} KT/SPR" for d in DATASETS] + ["reproducible here?"]
  lines = [TABLE3_NOTE, "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for proxy in proxies:
    for method in METHODS:
      paper = PAPER_TABLE3.get((proxy, method))
      if paper is None:
        continue
      how = ("the proxy's correlation: yes, with launch/correlate.py" if method == "random"
             else "no: the set of architectures is undefined")
      lines.append(f"| {_row_name(proxy, method)} | paper | " +
                   " | ".join(f"{paper[d][0]:.2f}/{paper[d][1]:.2f}" for d in DATASETS) + f" | {how} |")
  return "\n".join(lines) + "\n"
