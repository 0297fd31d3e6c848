"""`write_training_report`: the HTML report of a training run folder (``metrics.jsonl``, one JSON
line per epoch, and ``final/model.json`` once it finished, as `rznas_jax.train` writes them).

Sections: ``summary`` (the final model's facts, or the last epoch's), ``curves`` (loss, accuracy
and learning rate against epoch) and ``architecture`` (the trained network drawn).
"""

from __future__ import annotations

import json
import os
from typing import Any

from matplotlib.figure import Figure
import numpy as np

from rznas_jax import spaces
from rznas_jax.report import figures
from rznas_jax.report import html
from rznas_jax.report import run_folder

METRICS_FILE = "metrics.jsonl"
MODEL_FILE = os.path.join("final", "model.json")
PANELS = (("loss", "loss"), ("accuracy", "accuracy"), ("learning_rate", "learning rate"))


def is_training_run(path: str) -> bool:
  """Whether ``path`` holds a training run's ``metrics.jsonl``."""
  return os.path.isfile(os.path.join(path, METRICS_FILE))


def read_metrics(path: str) -> list[dict[str, Any]]:
  """The epoch records of ``path/metrics.jsonl``; a damaged line ends the list."""
  records = []
  with open(os.path.join(path, METRICS_FILE)) as f:
    for line in f:
      try:
        records.append(json.loads(line))
      except json.JSONDecodeError:
        break
  if not records:
    raise run_folder.RunFolderError(f"{os.path.join(path, METRICS_FILE)} holds no epoch yet.")
  return records


def training_curves(records: list[dict[str, Any]], path: str) -> str:
  """One panel per kind of metric (keys ending in loss, in accuracy, the learning rate)."""
  epochs = np.array([r.get("epoch", i + 1) for i, r in enumerate(records)], np.float64)
  fig = Figure(figsize=(4.4 * len(PANELS), 3.4), layout="constrained")
  for k, (suffix, label) in enumerate(PANELS):
    ax = fig.add_subplot(1, len(PANELS), k + 1)
    keys = sorted({key for r in records for key in r if key.endswith(suffix)})
    for key in keys:
      y = np.array([r.get(key) if isinstance(r.get(key), (int, float)) else np.nan for r in records],
                   np.float64)
      ax.plot(epochs, y, marker="o", markersize=3, label=key)
    ax.set_xlabel("epoch")
    ax.set_ylabel(label)
    ax.grid(alpha=0.3)
    if keys:
      ax.legend(fontsize=7)
  fig.suptitle("Training")
  return figures.save(fig, path)


def write_training_report(run_dir: str, out_dir: str | None = None, *, embed: bool = False) -> str:
  """Writes the report of the training run in ``run_dir``; returns the HTML file's path.

  Raises:
    RunFolderError: the folder has no readable ``metrics.jsonl``.
  """
  records = read_metrics(run_dir)
  out_dir = out_dir or os.path.join(run_dir, "report")
  model_path = os.path.join(run_dir, MODEL_FILE)
  model = None
  if os.path.isfile(model_path):
    with open(model_path) as f:
      model = json.load(f)
  page = html.Page("RZ-NAS training report", embed=embed)
  page.section("summary", "Summary")
  facts = model if model is not None else records[-1]
  page.table(["", ""], [(k, v) for k, v in facts.items() if not isinstance(v, (dict, list))])
  if model is None:
    page.paragraph("The run has not finished (no final/model.json): the last epoch is shown.", note=True)
  page.section("curves", "Curves")
  page.image(training_curves(records, os.path.join(out_dir, "training.png")), "training curves", out_dir)
  if model is not None and model.get("arch"):
    page.section("architecture", "Architecture")
    page.paragraph(html.code(model["arch"]))
    path = os.path.join(out_dir, "architecture.png")
    spaces.get(model.get("space") or spaces.guess(model["arch"])).draw(model["arch"], path)
    page.image(path, "the trained architecture", out_dir)
  return page.write(os.path.join(out_dir, "index.html"))
