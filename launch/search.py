"""Runs (or resumes) an RZ-NAS search: ``rznas_jax.search.run(config, workdir)``.

    python -m launch.search --config=launch/configs/nb201.py --workdir=runs/nb201
    python -m launch.search --config=launch/configs/nb201.py --workdir=runs/nb201 \
        --config.search.iterations=300 --config.proxy=zico --config.llm.backend=gemini

Rerunning the same command on the same --workdir resumes it from its last checkpoint.
"""

from absl import flags
from launch import cli

_CONFIG = cli.config_flag("launch/configs/nb201.py", "Search")
_WORKDIR = flags.DEFINE_string("workdir", "runs/search", "Run folder: created, or resumed if it "
                               "holds a checkpoint.")
_PROGRESS = flags.DEFINE_bool("progress", True, "Show a progress bar.")
_REPORT = flags.DEFINE_bool("report", True, "Write the HTML report (WORKDIR/report/index.html) at "
                            "the end of the run.")


def main(argv):
  del argv
  from rznas_jax import distributed  # pylint: disable=g-import-not-at-top
  d = _CONFIG.value.distributed
  distributed.initialize(d.enabled, d.coordinator_address, d.num_processes, d.process_id)
  from rznas_jax import search  # pylint: disable=g-import-not-at-top
  from rznas_jax.llm.base import LLMError  # pylint: disable=g-import-not-at-top
  try:
    summary = search.run(_CONFIG.value, _WORKDIR.value, progress=_PROGRESS.value)
  except (search.SearchAborted, LLMError) as e:
    cli.fail(str(e))
  except Exception as e:  # pylint: disable=broad-except  (bad input: one line; bugs: traceback)
    if not cli.is_user_error(e):
      raise
    cli.fail(str(e))
  if not summary:  # a pod host other than process 0: it only scored
    return
  print(f"best {summary['best_arch']} ({summary['proxy']} {summary['best_score']:.6g})")
  accuracy = summary.get("test_accuracy")
  if accuracy:
    print(f"NB201 test accuracy (index {summary['benchmark_index']}, {summary['benchmark']}; rank among "
          f"{summary['benchmark_cells']:,} cells, 1 = best):")
    for dataset, value in accuracy.items():
      print(f"  {dataset:<15} {value:6.2f} %   rank {summary['test_rank'][dataset]:,}")
  print(f"{summary['iterations_done']} iterations, {summary['evaluations']} evaluations, "
        f"invalid replies {summary['invalid_reply_rate']:.1%}, {summary['wall_seconds']:.0f} s; "
        f"results in {_WORKDIR.value}")
  if _REPORT.value:
    from rznas_jax import report  # pylint: disable=g-import-not-at-top
    path = report.write_report_or_warn(_WORKDIR.value)  # never loses the saved run
    if path:
      print(f"report in {path}")


if __name__ == "__main__":
  cli.run(main)
