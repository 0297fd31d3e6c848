r"""Writes the HTML report (and its PNG figures) of a run folder: ``rznas_jax.report.write_report``.

    python -m launch.report runs/nb201                     # -> runs/nb201/report/index.html
    python -m launch.report runs/nb201 --out=/tmp/r --embed \
        --benchmark=../shared/data/nb201/v-tao_nats-bench-landscape/nats_bench.csv
    python -m launch.report /tmp/corr                      # a launch/correlate.py --out folder
    python -m launch.report runs/train                     # a training run (metrics.jsonl)

A search run folder (``launch/search.py --workdir``) gets score, validity, accuracy (NB201: the
packaged NATS-Bench table, or --benchmark), architecture and reflection sections; a correlate
folder gets its correlation figure and table; a training run its curves and architecture.
"""

import sys

from absl import app
from absl import flags

from launch import cli

_OUT = flags.DEFINE_string("out", None, "Folder for index.html and the figures; default RUN_DIR/report.")
_BENCHMARK = flags.DEFINE_string("benchmark", None, "NB201 table (nats_bench.csv) for the accuracy "
                                 "figures of a search; default the run's config.benchmark, "
                                 "else the packaged NATS-Bench table.")
_EMBED = flags.DEFINE_bool("embed", False, "Inline the figures in the HTML (one self-contained "
                           "file); the PNGs are written beside it anyway.")


def main(argv):
  if len(argv) != 2:
    cli.fail(f"give exactly one run folder, e.g. python -m launch.report runs/nb201; got "
             f"{len(argv) - 1} argument(s).")
  from rznas_jax import report  # pylint: disable=g-import-not-at-top
  try:
    path = report.write_report(argv[1], _OUT.value, benchmark=_BENCHMARK.value, embed=_EMBED.value)
  except Exception as e:  # pylint: disable=broad-except  (bad input: one line; bugs: traceback)
    if not (isinstance(e, report.RunFolderError) or cli.is_user_error(e)):
      raise
    cli.fail(str(e))
  print(path)
  sys.stdout.flush()


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
