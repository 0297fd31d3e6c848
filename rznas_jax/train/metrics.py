"""Per-epoch metrics: a JSONL file, and TensorBoard event files when ``clu`` is installed."""

from __future__ import annotations

import json
import os
from typing import Any

from absl import logging


def _tensorboard_writer(logdir: str):
  """A ``clu`` metric writer for ``logdir``, or None when clu (or its backend) is missing."""
  try:
    from clu import metric_writers  # pylint: disable=g-import-not-at-top
    return metric_writers.create_default_writer(logdir, just_logging=False, asynchronous=False)
  except Exception as e:  # pylint: disable=broad-except  (optional: JSONL is always written)
    logging.info("no TensorBoard event files (%s); metrics go to metrics.jsonl only.", e)
    return None


class MetricsLog:
  """Appends one JSON line per epoch to ``workdir/metrics.jsonl`` (and to TensorBoard).

  Args:
    workdir: the run folder.
    resume_step: on a resumed run, lines of steps after the restored checkpoint are dropped
      (they will be written again), so every epoch appears once.
    enabled: False on processes other than 0.
  """

  def __init__(self, workdir: str, resume_step: int = 0, enabled: bool = True):
    self.path = os.path.join(workdir, "metrics.jsonl")
    self.enabled = enabled
    self._tb = None
    if not enabled:
      return
    if os.path.exists(self.path):
      with open(self.path) as f:
        kept = [line for line in f if line.strip() and json.loads(line)["step"] <= resume_step]
      with open(self.path, "w") as f:
        f.writelines(kept)
    self._tb = _tensorboard_writer(os.path.join(workdir, "tensorboard"))

  def write(self, record: dict[str, Any]) -> None:
    """Appends ``record`` (must hold ``step``); numbers also go to TensorBoard."""
    if not self.enabled:
      return
    with open(self.path, "a") as f:
      f.write(json.dumps(record, sort_keys=True) + "\n")
    if self._tb is not None:
      scalars = {k: v for k, v in record.items() if isinstance(v, (int, float)) and k != "step"}
      self._tb.write_scalars(record["step"], scalars)
      self._tb.flush()

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()


def read_metrics(workdir: str) -> list[dict[str, Any]]:
  """The records of ``workdir/metrics.jsonl``, in order (none when it does not exist)."""
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]
