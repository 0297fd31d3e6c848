r"""Scores architectures with zero-cost proxies and writes ``scores.csv`` and ``scores.json``.

  python -m launch.score --space=nb201 --proxies=synflow,naswot --archs=random:100 \
      --data=gaussian --out=/tmp/scores

``--archs`` is ``all``, ``random:N`` (N distinct cells drawn with ``--seed``) or a comma-separated
list of genotypes. ``scores.csv`` has a column ``arch`` (the genotype) and one per proxy;
``scores.json`` holds the same scores with the run's settings and timing.
"""

import time

from absl import flags

from launch import common
from rznas_jax import results

flags.DEFINE_string("archs", "random:100", "all, random:N or comma-separated genotypes.")

flags.adopt_module_key_flags(common)  # --helpshort lists the shared flags too
FLAGS = flags.FLAGS


def main(argv):
  del argv
  start = time.perf_counter()
  with common.user_input_errors():
    space = common.get_space(FLAGS.space)
    archs = space.parse_archs(FLAGS.archs, FLAGS.seed)
    images = common.load_data(FLAGS.data)
    proxies = common.check_proxies(FLAGS.proxies)
    out = common.prepare_out_dir(FLAGS.out)
    common.enable_compilation_cache(FLAGS.compilation_cache_dir)
    scored = common.proxies_to_score(proxies)  # an aggregate's components
    scorer = space.scorer(scored, images)
  prepare_seconds = time.perf_counter() - start  # data, network init
  scores, timing = common.score_with_progress(scorer, scored, archs)
  scores = common.with_aggregates(proxies, scores)  # ranked among the scored architectures
  settings = {**common.flag_settings(common.SHARED_FLAGS + ("archs",)), "num_archs": len(archs),
              **common.environment(scorer)}
  timing.update(prepare_seconds=prepare_seconds, total_seconds=time.perf_counter() - start)
  results.write_scores(out, [space.genotype(a) for a in archs], scores, settings=settings, timing=timing)


if __name__ == "__main__":
  common.run(main)
