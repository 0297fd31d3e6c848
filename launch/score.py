r"""Scores architectures with zero-cost proxies and writes ``scores.csv`` and ``scores.json``.

    python -m launch.score --space=nb201 --proxies=synflow,naswot --archs=random:100 \
        --data=gaussian --out=/tmp/scores
    python -m launch.score --config=launch/configs/score.py --config.proxies=zico --out=/tmp/s

``--archs`` is ``all``, ``random:N`` (N distinct architectures drawn with ``--seed``) or a list
of the space's genotypes (commas between NB201 cells; ';' or spaces between macro structures,
``initial`` for the space's initial one). ``scores.csv`` has a column ``arch`` and one per proxy;
``scores.json`` holds the same scores with the run's settings and timing. Every flag overrides
the config key of the same meaning (`rznas_jax.score_job.default_config`).
"""

from launch import cli
from launch import score_flags

_CONFIG = cli.config_flag("launch/configs/score.py", "Job")
TABLE = score_flags.SHARED + (("archs", "archs", "string", "all, random:N or a list of genotypes."),)
cli.define_overrides(TABLE)


def main(argv):
  del argv
  from rznas_jax import score_job  # pylint: disable=g-import-not-at-top
  with cli.user_input_errors():
    score_job.run(score_flags.config_from_flags(_CONFIG.value, TABLE))


if __name__ == "__main__":
  cli.run(main)
