r"""Scores sampled architectures and correlates the scores with benchmark accuracies.

  python -m launch.correlate --space=nb201 --proxies=synflow,naswot --num_archs=1000 \
      --data=/path/to/cifar-10-batches-py --out=/tmp/corr

The network is built for ``--dataset`` (default cifar10); its scores are correlated with the
accuracies of every dataset in the NB201 table (the NATS-Bench table packaged with rznas_jax, or
``--benchmark=PATH`` to a nats_bench.csv-format table). Writes ``correlation.json``
(``{proxy: {dataset: {"spearman": rho, "kendall": tau}}, "settings": ..., "timing": ...}``) and
``scores.csv``/``scores.json`` with the accuracies as extra ``accuracy_<dataset>`` columns, and
(``--plot``, the default) ``correlation.png``.
"""

import os
import time

from absl import flags
import numpy as np

from launch import common
from rznas_jax import correlation
from rznas_jax import results

flags.DEFINE_string("num_archs", "1000", "Architectures to sample with --seed; 'all' or 0 for all.")
flags.DEFINE_string("benchmark", None, "Benchmark table in the nats_bench.csv format; default the "
                    "NATS-Bench table packaged with rznas_jax.")
flags.DEFINE_enum("nan_policy", "lowest", list(correlation.REPORT_NAN_POLICIES),
                  "A NaN score (a proxy undefined on a cell, e.g. jacov where no path joins input and "
                  "output): 'lowest' ranks it below every defined score, as NASLib does and as the "
                  "search does (it never keeps such a child); 'omit' leaves the cell out.")
flags.DEFINE_bool("plot", True, "Also draw correlation.png: score against accuracy per proxy and "
                  "dataset, Kendall tau and Spearman rho in the titles.")

flags.adopt_module_key_flags(common)  # --helpshort lists the shared flags too
FLAGS = flags.FLAGS
CORRELATION_JSON = "correlation.json"


def main(argv):
  del argv
  start = time.perf_counter()
  with common.user_input_errors():
    space = common.get_space(FLAGS.space)
    archs = space.sample(FLAGS.num_archs, FLAGS.seed)
    table = space.load_benchmark(FLAGS.benchmark)
    space.check_in_benchmark(archs, table, table.source)
    images = common.load_data(FLAGS.data)
    proxies = common.check_proxies(FLAGS.proxies)
    out = common.prepare_out_dir(FLAGS.out)
    common.enable_compilation_cache(FLAGS.compilation_cache_dir)
    scored = common.proxies_to_score(proxies)  # an aggregate's components
    scorer = space.scorer(scored, images)
  prepare_seconds = time.perf_counter() - start  # data, network init
  scores, timing = common.score_with_progress(scorer, scored, archs)
  scores = common.with_aggregates(proxies, scores)  # ranked among the scored architectures
  accuracies = {d: table.lookup(archs, d) for d in space.benchmark_datasets()}
  report = correlation.correlation_report(scores, accuracies, nan_policy=FLAGS.nan_policy)
  settings = {**common.flag_settings(common.SHARED_FLAGS + ("num_archs", "benchmark", "nan_policy")),
              "num_archs": len(archs), "benchmark": table.source, "correlated_with": list(accuracies),
              "nan_scores": {p: int(np.isnan(scores[p]).sum()) for p in scores},
              **common.environment(scorer)}
  timing.update(prepare_seconds=prepare_seconds, total_seconds=time.perf_counter() - start)
  genotypes = [space.genotype(a) for a in archs]
  extra = {f"accuracy_{d}": acc for d, acc in accuracies.items()}
  results.write_scores(out, genotypes, scores, extra_columns=extra, settings=settings, timing=timing)
  results.write_json(os.path.join(out, CORRELATION_JSON), {**report, "settings": settings, "timing": timing})
  if FLAGS.plot:
    from rznas_jax.report import plot_correlation  # pylint: disable=g-import-not-at-top
    plot_correlation(out)


if __name__ == "__main__":
  common.run(main)
