"""Result files of a scoring run: ``scores.csv``, ``scores.json`` and other JSON, written atomically.

Every file is written to a temporary file in the same folder and moved into place with
``os.replace``, so a reader (or a run that was killed) never sees half a file.

``scores.csv`` has a column ``arch`` (the genotype string) and one column per proxy, then any extra
columns (benchmark accuracies); numbers are written with ``repr`` so they read back exactly, and
non-finite scores as ``nan``, ``inf`` or ``-inf`` (which ``float()`` reads). ``scores.json`` holds
the same scores (non-finite ones as ``null``) with the run's settings and timing.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
from typing import Any, Mapping, Sequence

import numpy as np

SCORES_CSV = "scores.csv"
SCORES_JSON = "scores.json"


def write_atomic(path: str | os.PathLike, text: str) -> None:
  """Writes ``text`` to ``path`` through a temporary file and ``os.replace``."""
  path = os.fspath(path)
  folder = os.path.dirname(os.path.abspath(path))
  os.makedirs(folder, exist_ok=True)
  fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
  try:
    with os.fdopen(fd, "w", newline="") as f:
      f.write(text)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise


def _to_json(value: Any) -> Any:
  """Plain JSON values: NumPy scalars and arrays become Python ones, NaN and infinities ``None``."""
  if isinstance(value, Mapping):
    return {str(k): _to_json(v) for k, v in value.items()}
  if isinstance(value, np.ndarray):
    return _to_json(value.tolist())
  if isinstance(value, (list, tuple)):
    return [_to_json(v) for v in value]
  if isinstance(value, (np.floating, float)):
    value = float(value)
    return value if math.isfinite(value) else None
  if isinstance(value, np.integer):
    return int(value)
  if isinstance(value, np.bool_):
    return bool(value)
  return value


def write_json(path: str | os.PathLike, value: Any) -> None:
  """Writes ``value`` as strict JSON (no NaN literals), atomically."""
  write_atomic(path, json.dumps(_to_json(value), indent=2, allow_nan=False) + "\n")


def _csv_number(value: float) -> str:
  return repr(float(value))  # 'nan', 'inf', '-inf' for non-finite values


def scores_csv_text(archs: Sequence[str], scores: Mapping[str, Sequence[float]],
                    extra_columns: Mapping[str, Sequence[float]] | None = None) -> str:
  """The text of ``scores.csv``: ``arch``, one column per proxy, then ``extra_columns``."""
  extra_columns = dict(extra_columns or {})
  columns = {**scores, **extra_columns}
  if len(columns) != len(scores) + len(extra_columns) or "arch" in columns:
    raise ValueError(f"column names must be distinct and not 'arch', got {list(columns)}.")
  for name, values in columns.items():
    if len(values) != len(archs):
      raise ValueError(f"column {name!r} has {len(values)} values for {len(archs)} architectures.")
  buffer = io.StringIO()
  writer = csv.writer(buffer, lineterminator="\n")
  writer.writerow(["arch", *columns])
  for i, arch in enumerate(archs):
    writer.writerow([arch, *(_csv_number(values[i]) for values in columns.values())])
  return buffer.getvalue()


def write_scores(out_dir: str | os.PathLike, archs: Sequence[str], scores: Mapping[str, Sequence[float]],
                 *, extra_columns: Mapping[str, Sequence[float]] | None = None,
                 settings: Mapping[str, Any] | None = None,
                 timing: Mapping[str, Any] | None = None) -> None:
  """Writes ``out_dir/scores.csv`` and ``out_dir/scores.json``.

  Args:
    out_dir: created if missing.
    archs: genotype strings, one per row.
    scores: {proxy: scores in the order of ``archs``}.
    extra_columns: more columns for the CSV and the JSON (e.g. {"cifar10_accuracy": [...]}).
    settings: the run's settings, stored in the JSON.
    timing: the run's timing in seconds, stored in the JSON.

  Example:
    >>> write_scores("/tmp/run", ["|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"], {"params": [1.0]})
  """
  write_atomic(os.path.join(out_dir, SCORES_CSV), scores_csv_text(archs, scores, extra_columns))
  write_json(os.path.join(out_dir, SCORES_JSON), {
      "archs": list(archs),
      "scores": {name: list(values) for name, values in scores.items()},
      **({"extra_columns": {k: list(v) for k, v in extra_columns.items()}} if extra_columns else {}),
      "settings": dict(settings or {}),
      "timing": dict(timing or {}),
  })


def read_scores_csv(path: str | os.PathLike) -> tuple[list[str], dict[str, np.ndarray]]:
  """Reads a ``scores.csv``: (genotype strings, {column: float64 array}) for every other column."""
  with open(path, newline="") as f:
    rows = list(csv.reader(f))
  if not rows or not rows[0] or rows[0][0] != "arch":
    raise ValueError(f"{os.fspath(path)!r} is not a scores.csv file (its first column must be 'arch').")
  header, body = rows[0], rows[1:]
  archs = [r[0] for r in body]
  columns = {name: np.array([float(r[j]) for r in body], np.float64) for j, name in enumerate(header) if j}
  return archs, columns
