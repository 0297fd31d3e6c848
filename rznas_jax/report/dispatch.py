"""`write_report`: the report of any run folder this project writes, by what the folder holds."""

from __future__ import annotations

import os
import sys

from rznas_jax.report import correlation_report
from rznas_jax.report import run_folder
from rznas_jax.report import search_report
from rznas_jax.report import training_report


def write_report(run_dir: str, out_dir: str | None = None, *, benchmark: str | None = None,
                 embed: bool = False) -> str:
  """Writes the report of ``run_dir``; returns the HTML file's path.

  A search run folder (``launch/search.py --workdir``) gets `search_report.write_search_report`;
  a ``launch/correlate.py --out`` folder gets `correlation_report.write_correlation_report`; a
  training run folder (``metrics.jsonl``) gets `training_report.write_training_report`.

  Args:
    run_dir: the folder.
    out_dir: where the HTML and its PNGs go; default ``run_dir/report``.
    benchmark: NB201 table for a search's accuracy figures (default: the run's own, else the packaged NATS-Bench table).
    embed: inline the figures in the HTML.

  Raises:
    RunFolderError: ``run_dir`` is neither kind of folder, or is damaged.
  """
  if not os.path.isdir(run_dir):
    raise run_folder.RunFolderError(f"{run_dir!r} is not a folder; give a search --workdir or a "
                                    "launch/correlate.py --out folder.")
  if run_folder.is_search_run(run_dir):
    return search_report.write_search_report(run_dir, out_dir, benchmark=benchmark, embed=embed)
  if run_folder.is_correlation_run(run_dir):
    return correlation_report.write_correlation_report(run_dir, out_dir, embed=embed)
  if training_report.is_training_run(run_dir):
    return training_report.write_training_report(run_dir, out_dir, embed=embed)
  raise run_folder.RunFolderError(
      f"{run_dir!r} is not a run folder: it has neither {run_folder.CHECKPOINT_FILE} (a search "
      f"--workdir), nor {run_folder.CORRELATION_FILE} and {run_folder.SCORES_CSV} (a "
      f"launch/correlate.py --out folder), nor {training_report.METRICS_FILE} (a training run).")


def write_report_or_warn(run_dir: str, **kwargs) -> str | None:
  """`write_report`, but a failure is one warning line on stderr instead of an exception.

  For the end of a search: the run is saved already, and a report that cannot be drawn must not
  turn a finished run into a failed one.

  Returns:
    The HTML file's path, or None when the report could not be written.
  """
  try:
    return write_report(run_dir, **kwargs)
  except Exception as e:  # pylint: disable=broad-except  (reported in one line, never raised)
    sys.stderr.write(f"warning: the report could not be written ({type(e).__name__}: "
                     f"{' '.join(str(e).split())}); rerun python -m launch.report {run_dir}\n")
    return None
