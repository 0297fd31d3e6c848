r"""Scores sampled architectures and correlates the scores with benchmark accuracies.

    python -m launch.correlate --space=nb201 --proxies=synflow,naswot --num_archs=1000 \
        --data=/path/to/cifar-10-batches-py --out=/tmp/corr

The network is built for ``--dataset`` (default cifar10); its scores are correlated with the
accuracies of every dataset in the space's table (NB201: the NATS-Bench table packaged with
rznas_jax, or ``--benchmark=PATH`` to a nats_bench.csv-format table). Writes ``correlation.json``
(``{proxy: {dataset: {"spearman": rho, "kendall": tau}}, "settings": ..., "timing": ...}``),
``scores.csv``/``scores.json`` with the accuracies as extra ``accuracy_<dataset>`` columns, and
(``--plot``, the default) ``correlation.png``. A NaN score (a proxy undefined on a cell) ranks
below every defined score (``--nan_policy=lowest``, NASLib's rule) or is left out (``omit``).
"""

from launch import cli
from launch import score_flags

_CONFIG = cli.config_flag("launch/configs/correlate.py", "Job")
TABLE = score_flags.SHARED + (
    ("num_archs", "archs", "string", "Architectures to sample with --seed; 'all' or 0 for all."),
    ("benchmark", "benchmark", "string", "Benchmark table (nats_bench.csv format); default the "
     "table packaged with rznas_jax."),
    ("nan_policy", "nan_policy", "string", "'lowest' (default) or 'omit'."),
    ("plot", "plot", "bool", "Also draw correlation.png (default true)."),
)
cli.define_overrides(TABLE)


def main(argv):
  del argv
  from rznas_jax import score_job  # pylint: disable=g-import-not-at-top
  with cli.user_input_errors():
    score_job.run(score_flags.config_from_flags(_CONFIG.value, TABLE))


if __name__ == "__main__":
  cli.run(main)
