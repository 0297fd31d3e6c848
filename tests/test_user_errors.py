"""User errors against bugs, across the launchers: bad input and every proxy/space mismatch is one
sentence and exit 2, with no traceback; an error inside the library keeps its traceback (exit 1).

The runs start together as subprocesses (each fails before any network is compiled) and are read
back by the parametrized tests.
"""

import os
import subprocess
import sys

import pytest

from rznas_jax import spaces
from rznas_jax.search import config as search_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_SEARCH = ["-m", "launch.search", "--config=launch/configs/tiny_cpu.py", "--progress=false",
               "--report=false"]
NB201_CELL = "|nor_conv_3x3~0|+|none~0|skip_connect~1|+|avg_pool_3x3~0|nor_conv_1x1~1|skip_connect~2|"

# (id, argv after the interpreter with {tmp} for the test's folder, texts the one line must hold)
USER_ERRORS = [
    ("maedet_on_nb201_score", ["-m", "launch.score", "--proxies=maedet", "--archs=random:2",
                               "--out={tmp}/a"], ["maedet", "nb201"]),
    ("maedet_on_zen_cifar_score", ["-m", "launch.score", "--space=zen_cifar", "--proxies=maedet",
                                   "--archs=initial", "--out={tmp}/b"], ["maedet", "zen_cifar"]),
    ("joint_proxy_on_macro_score", ["-m", "launch.score", "--space=zen_cifar",
                                    "--proxies=az_progressivity", "--archs=initial", "--out={tmp}/c"],
     ["az_progressivity", "zen_cifar"]),
    ("nb201_flag_on_macro_space", ["-m", "launch.score", "--space=zen_cifar", "--channels=4",
                                   "--proxies=params", "--archs=initial", "--out={tmp}/d"],
     ["--channels", "zen_cifar"]),
    ("maedet_on_nb201_search", [*TINY_SEARCH, "--workdir={tmp}/e", "--config.proxy=maedet"],
     ["maedet", "nb201"]),
    ("maedet_in_an_aggregate_search", [*TINY_SEARCH, "--workdir={tmp}/f",
                                       "--config.proxy=rank:synflow+maedet"], ["maedet", "nb201"]),
    ("no_llm_failures_allowed", [*TINY_SEARCH, "--workdir={tmp}/g",
                                 "--config.search.max_llm_failures=0"], ["max_llm_failures", "1"]),
    ("unknown_space_search", [*TINY_SEARCH, "--workdir={tmp}/h", "--config.space=nb101"],
     ["nb101", "nb201"]),
    ("bad_nb201_dataset_search", [*TINY_SEARCH, "--workdir={tmp}/i", "--config.dataset=mnist"],
     ["mnist", "cifar100"]),
    ("bad_train_genotype", ["-m", "launch.train", "--config=launch/configs/train_tiny_cpu.py:synthetic",
                            "--workdir={tmp}/j", "--config.arch=|conv_9x9~0|+|none~0|none~1|"],
     ["conv_9x9"]),
    ("missing_llm_key", [*TINY_SEARCH, "--workdir={tmp}/k", "--config.llm.backend=openai"],
     ["OPENAI_API_KEY"]),
    ("misspelt_config_key", [*TINY_SEARCH, "--workdir={tmp}/l", "--config.nb201.chanels=2"],
     ["chanels", "channels"]),
    ("misspelt_score_config_key", ["-m", "launch.score", "--config.macro.budget_flop=1e8"],
     ["budget_flop", "budget_flops"]),
    ("too_many_workers", ["-m", "launch.score", "--proxies=params", "--workers=999",
                          "--out={tmp}/m"], ["--workers=999", "CPU cores"]),
    ("workers_and_all_devices", ["-m", "launch.correlate", "--proxies=params", "--workers=1",
                                 "--all_devices", "--out={tmp}/n"], ["--workers", "--all_devices"]),
]

# A bug inside the library, injected: `score_job.run` raises a plain ValueError.
INJECTED = ("-c", "import sys; sys.argv = ['launch.score', '--proxies=params', '--out={tmp}/z'];"
            "from launch import cli, score; from rznas_jax import score_job;\n"
            "def broken(config): raise ValueError('an internal error')\n"
            "score_job.run = broken; cli.run(score.main)")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  tmp = tmp_path_factory.mktemp("user_errors")
  env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
  env["JAX_PLATFORMS"] = "cpu"
  cases = [(c[0], c[1]) for c in USER_ERRORS] + [("injected", list(INJECTED))]
  procs = {}
  for case, argv in cases:
    argv = [a.format(tmp=tmp) for a in argv]
    procs[case] = subprocess.Popen([sys.executable, *argv], cwd=REPO, env=env, text=True,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
  return {case: (p.wait(timeout=600), *p.communicate()) for case, p in procs.items()}


@pytest.mark.parametrize("case,expected", [(c[0], c[2]) for c in USER_ERRORS],
                         ids=[c[0] for c in USER_ERRORS])
def test_user_error_is_one_sentence_and_exit_2(runs, case, expected):
  code, stdout, stderr = runs[case]
  lines = stderr.strip().splitlines()
  assert code == 2, stderr
  assert "Traceback" not in stderr + stdout
  assert len(lines) == 1, stderr
  for text in expected:
    assert text in lines[0], lines[0]


def test_an_internal_error_keeps_its_traceback_and_exits_1(runs):
  code, _, stderr = runs["injected"]
  assert code == 1, stderr
  assert "Traceback" in stderr and "ValueError: an internal error" in stderr


def test_search_and_launcher_agree_on_macro_budgets():
  # launch.score's --budget_flops and the search's config.macro.budget_flops reach the same space.
  config = search_config.default_config()
  config.space = "zen_cifar"
  config.macro.budget_flops = 2e8
  search_config.check_config(config)
  assert search_config.make_space(config) == spaces.get("zen_cifar", budget_flops=2e8)
  assert spaces.get("zen_cifar", budget_flops=2e8).budget_flops == 2e8
  # A budget the factory takes changes the layer limit it derives, in both places.
  config.macro.budget_params = 2e6
  assert search_config.make_space(config).max_layers == 20 == spaces.get(
      "zen_cifar", budget_params=2e6).max_layers
