"""The scoring launchers, run as subprocesses on tiny networks, and the result files they write.

The successful runs use the analytic proxies (params, flops), whose values have an independent
reference (`nb201.count_params` / `count_flops`), and share one persistent compilation cache so
that only the first run pays for initialising the network. The bad-input runs start together.
"""

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import CIFAR_NPZ, NATS_CSV, SHARED_DATA, need
from rznas_jax import correlation
from rznas_jax import results
from rznas_jax import score_job
from rznas_jax import spaces
from rznas_jax.errors import UserError
from rznas_jax.spaces import nb201

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FOOLBOX_NPZ = os.path.join(SHARED_DATA, "images", "foolbox_cifar10.DERIVED.npz")

TINY = ["--channels=2", "--cells_per_stage=1", "--batch_size=4"]
TINY_KW = dict(channels=2, cells_per_stage=1, num_classes=10)
GENOTYPES = [
    "|nor_conv_3x3~0|+|none~0|skip_connect~1|+|avg_pool_3x3~0|nor_conv_1x1~1|skip_connect~2|",
    "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|",
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|",
    "|skip_connect~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|none~0|skip_connect~1|nor_conv_1x1~2|",
]
GOOD = GENOTYPES[0]
TIMEOUT_S = 600


def start(module, args):
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  return subprocess.Popen([sys.executable, "-m", module, *args], cwd=REPO, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(process):
  stdout, stderr = process.communicate(timeout=TIMEOUT_S)
  return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def launch(module, args):
  return finish(start(module, args))


def read_csv(path):
  with open(path, newline="") as f:
    return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp("jax_cache"))


# --- launch.score ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def score_run(tmp_path_factory, cache_dir):
  out = tmp_path_factory.mktemp("score")
  args = ["--space=nb201", "--proxies=params,flops", f"--archs={','.join(GENOTYPES)}",
          f"--data={need(CIFAR_NPZ)}", *TINY, f"--compilation_cache_dir={cache_dir}", f"--out={out}"]
  return launch("launch.score", args), out


def test_score_writes_csv_with_exact_counts(score_run):
  run, out = score_run
  assert run.returncode == 0, run.stderr
  rows = read_csv(out / "scores.csv")
  assert list(rows[0]) == ["arch", "params", "flops"]
  assert [r["arch"] for r in rows] == GENOTYPES  # in the order given
  for row in rows:
    arch = nb201.parse_genotype(row["arch"])
    assert arch.genotype == row["arch"]
    assert float(row["params"]) == nb201.count_params(arch, **TINY_KW)
    assert float(row["flops"]) == nb201.count_flops(arch, resolution=32, **TINY_KW)


def test_score_json_holds_scores_settings_and_timing(score_run, cache_dir):
  run, out = score_run
  assert run.returncode == 0, run.stderr
  record = json.loads((out / "scores.json").read_text())
  rows = read_csv(out / "scores.csv")
  assert record["archs"] == GENOTYPES
  for proxy in ("params", "flops"):
    assert record["scores"][proxy] == [float(r[proxy]) for r in rows]
  settings = record["settings"]
  assert settings["space"] == "nb201" and settings["proxies"] == ["params", "flops"]
  assert (settings["channels"], settings["cells_per_stage"], settings["batch_size"]) == (2, 1, 4)
  assert settings["num_archs"] == len(GENOTYPES) and settings["data"] == CIFAR_NPZ
  assert settings["proxy_specs"]["params"]["data"] == "none"
  timing = record["timing"]
  assert 0 < timing["prepare_seconds"] < timing["total_seconds"]
  assert set(timing["proxy_seconds"]) == {"params", "flops"}
  assert sum(timing["proxy_seconds"].values()) <= timing["scoring_seconds"] < timing["total_seconds"]
  assert sorted(os.listdir(out)) == ["scores.csv", "scores.json"]  # no temporary files left
  assert os.listdir(cache_dir), "--compilation_cache_dir wrote no cache entries"
  assert "Traceback" not in run.stderr


# --- launch.correlate ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def correlate_run(tmp_path_factory, cache_dir, score_run):
  del score_run  # runs after it, so the compilation cache is warm
  out = tmp_path_factory.mktemp("correlate")
  args = ["--space=nb201", "--proxies=params", "--num_archs=12", "--seed=3", f"--data={need(FOOLBOX_NPZ)}",
          f"--benchmark={need(NATS_CSV)}", *TINY, f"--compilation_cache_dir={cache_dir}", f"--out={out}"]
  return launch("launch.correlate", args), out


@pytest.fixture(scope="module")
def table():
  return nb201.BenchmarkTable.load(need(NATS_CSV))


def test_correlate_json_matches_own_correlations(correlate_run, table):
  run, out = correlate_run
  assert run.returncode == 0, run.stderr
  report = json.loads((out / "correlation.json").read_text())
  assert set(report) == {"params", "settings", "timing"}
  assert report["settings"]["num_archs"] == 12 and report["settings"]["seed"] == 3
  assert report["settings"]["nan_policy"] == "lowest"
  archs = nb201.random_archs(12, seed=3)
  params = [nb201.count_params(a, **TINY_KW) for a in archs]
  assert set(report["params"]) == {"cifar10", "cifar100", "imagenet16-120"}
  for dataset, entry in report["params"].items():
    accuracy = table.lookup(archs, dataset)
    assert set(entry) == {"spearman", "kendall"}
    assert entry["spearman"] == pytest.approx(correlation.spearman_rho(params, accuracy), abs=1e-12)
    assert entry["kendall"] == pytest.approx(correlation.kendall_tau(params, accuracy), abs=1e-12)
    assert -1 <= entry["kendall"] <= 1 and entry["spearman"] != 0


def test_correlate_csv_has_sampled_archs_and_accuracies(correlate_run, table):
  run, out = correlate_run
  assert run.returncode == 0, run.stderr
  rows = read_csv(out / "scores.csv")
  archs = nb201.random_archs(12, seed=3)
  assert [r["arch"] for r in rows] == [a.genotype for a in archs]
  assert list(rows[0]) == ["arch", "params", "accuracy_cifar10", "accuracy_cifar100",
                           "accuracy_imagenet16-120"]
  for dataset in ("cifar10", "cifar100", "imagenet16-120"):
    np.testing.assert_array_equal([float(r[f"accuracy_{dataset}"]) for r in rows],
                                  table.lookup(archs, dataset))
  assert "Traceback" not in run.stderr


def test_correlate_without_benchmark_uses_the_packaged_table(correlate_run, cache_dir, tmp_path):
  _, with_csv = correlate_run
  args = ["--space=nb201", "--proxies=params", "--num_archs=12", "--seed=3", f"--data={need(FOOLBOX_NPZ)}",
          *TINY, f"--compilation_cache_dir={cache_dir}", f"--out={tmp_path}", "--plot=false"]
  run = launch("launch.correlate", args)
  assert run.returncode == 0, run.stderr
  packaged = json.loads((tmp_path / "correlation.json").read_text())
  given = json.loads((with_csv / "correlation.json").read_text())
  assert packaged["settings"]["benchmark"] == nb201.PACKAGED_TABLE
  assert given["settings"]["benchmark"] == NATS_CSV
  assert packaged["params"] == given["params"]  # the same accuracies, so the same correlations
  assert read_csv(tmp_path / "scores.csv") == read_csv(with_csv / "scores.csv")


# --- bad input -------------------------------------------------------------------------------------

# (id, launcher, flags replacing the defaults, text the message must contain: the bad value and a
# valid one).
BAD_INPUTS = [
    ("unknown_op", "score", ["--archs=|nor_conv_3x3~0|+|none~0|conv_5x5~1|+|none~0|none~1|none~2|"],
     ["conv_5x5", "nor_conv_3x3"]),
    ("malformed_genotype", "score", ["--archs=|nor_conv_3x3~0|+|none~0|"], ["|nor_conv_3x3~0|+|none~0|"]),
    ("unknown_proxy", "score", ["--proxies=params,synflaw"], ["synflaw", "synflow"]),
    ("empty_proxies", "score", ["--proxies="], ["--proxies", "params"]),
    ("missing_data", "score", ["--data={tmp}/no_such_images.npz"], ["no_such_images.npz", ".npz"]),
    ("grayscale_images", "score", ["--data={tmp}/gray.npz"], ["(10, 28, 28)", "(N, H, W, 3)"]),
    ("wrong_resolution", "score", ["--data={tmp}/small.npz"], ["28x28", "32x32"]),
    ("unknown_dataset", "score", ["--dataset=mnist"], ["mnist", "cifar100"]),
    ("unknown_space", "score", ["--space=darts"], ["darts", "nb201"]),
    ("unknown_strategy", "score", ["--strategy=fastest"], ["fastest", "masked_vmap"]),
    ("bad_archs_count", "score", ["--archs=random:many"], ["random:many", "random:100"]),
    ("bad_archs_spec", "score", ["--archs=everything"], ["everything", "random:N"]),
    ("unknown_flag", "score", ["--chanels=2"], ["chanels"]),
    ("out_is_a_file", "score", ["--out={tmp}/gray.npz"], ["gray.npz", "folder"]),
    ("missing_benchmark", "correlate", ["--benchmark={tmp}/no_such_table.csv"], ["no_such_table.csv"]),
    ("benchmark_without_columns", "correlate", ["--benchmark={tmp}/bad_table.csv"],
     ["bad_table.csv", "CIFAR10TestAccuracy200Epochs"]),
    ("bad_num_archs", "correlate", ["--num_archs=lots"], ["lots", "all"]),
    # Aggregates (rznas_jax.fitness) and analytic proxies in a space lacking their costs.
    ("unknown_component", "score", ["--proxies=rank:synflow+synflaw"], ["synflaw", "synflow"]),
    ("aggregate_of_one", "score", ["--proxies=rank:synflow"], ["rank:synflow", "at least two"]),
    ("analytic_cost_missing", "score", ["--proxies=maedet"], ["maedet", "'arch'", "nb201"]),
]


def _base_args(launcher, out):
  args = ["--proxies=params", *TINY, f"--out={out}"]
  if launcher == "score":
    return args + [f"--archs={GOOD}"]
  return args + ["--num_archs=5", f"--benchmark={NATS_CSV}"]


LAUNCHERS = {c[0]: c[1] for c in BAD_INPUTS}


@pytest.fixture(scope="module")
def bad_input_runs(tmp_path_factory):
  tmp = tmp_path_factory.mktemp("bad_inputs")
  np.savez(tmp / "gray.npz", images=np.zeros((10, 28, 28), np.uint8), labels=np.zeros(10, np.int64))
  np.savez(tmp / "small.npz", images=np.zeros((10, 28, 28, 3), np.uint8), labels=np.zeros(10, np.int64))
  (tmp / "bad_table.csv").write_text("ArchitectureString,Accuracy\n" + GOOD + ",90.0\n")
  processes = {}
  for case, launcher, flags, _ in BAD_INPUTS:
    out = tmp / f"out_{case}"
    args = _base_args(launcher, out)
    for flag in flags:
      flag = flag.format(tmp=tmp)
      name = flag.split("=")[0]
      args = [a for a in args if a.split("=")[0] != name] + [flag]
    processes[case] = (start(f"launch.{launcher}", args), out)
  return {case: (finish(p), out) for case, (p, out) in processes.items()}


@pytest.mark.parametrize("case,expected", [(c[0], c[3]) for c in BAD_INPUTS], ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_gets_one_sentence_and_exit_code_2(bad_input_runs, case, expected):
  if LAUNCHERS[case] == "correlate":  # every correlate run reads the benchmark table
    need(NATS_CSV)
  run, out = bad_input_runs[case]
  lines = run.stderr.strip().splitlines()
  assert run.returncode == 2, run.stderr
  assert "Traceback" not in run.stderr + run.stdout
  assert len(lines) == 1, run.stderr
  for text in expected:
    assert text in lines[0], lines[0]
  assert not os.path.exists(out / "scores.csv")


# --- in-process: the --archs spec and the result files ---------------------------------------------


def test_archs_spec_forms():
  space = spaces.get("nb201")
  every_code = list(range(nb201.NUM_ARCHS))
  assert space.archs("random:7", seed=5) == nb201.random_archs(7, seed=5)
  assert [a.code for a in space.archs("all", seed=0)] == every_code
  assert space.archs(f"{GOOD},{GENOTYPES[1]},", seed=0) == [nb201.parse_genotype(GOOD),
                                                            nb201.parse_genotype(GENOTYPES[1])]
  assert [a.code for a in score_job.sample(space, "all", seed=1)] == every_code
  assert [a.code for a in score_job.sample(space, "0", seed=1)] == every_code
  assert score_job.sample(space, "9", seed=1) == nb201.random_archs(9, seed=1)
  for bad in ("random:0", "random:15626", "random:-1", "", "some"):
    with pytest.raises(spaces.SpaceError, match="random:N|random:100"):
      space.archs(bad, seed=0)
  for bad in ("-3", "15626", "lots"):
    with pytest.raises(UserError, match="--num_archs"):
      score_job.sample(space, bad, seed=0)


def test_scores_files_round_trip_non_finite_values(tmp_path):
  archs = GENOTYPES[:3]
  scores = {"synflow": [1.5, -np.inf, np.nan], "naswot": np.array([0.1, 1e-300, 2.0 / 3.0])}
  results.write_scores(tmp_path, archs, scores, extra_columns={"accuracy_cifar10": [90.1, 10.0, 50.5]},
                       settings={"seed": np.int64(3)}, timing={"total_seconds": 1.0})
  read_archs, columns = results.read_scores_csv(tmp_path / "scores.csv")
  assert read_archs == archs
  assert list(columns) == ["synflow", "naswot", "accuracy_cifar10"]
  np.testing.assert_array_equal(columns["synflow"], scores["synflow"])  # nan == nan here
  np.testing.assert_array_equal(columns["naswot"], scores["naswot"])  # exact: written with repr
  record = json.loads((tmp_path / "scores.json").read_text())  # strict JSON: no NaN literals
  assert record["scores"]["synflow"] == [1.5, None, None]
  assert record["settings"] == {"seed": 3}
  assert sorted(os.listdir(tmp_path)) == ["scores.csv", "scores.json"]


def test_failed_write_leaves_old_file_and_no_temporary(tmp_path, monkeypatch):
  path = tmp_path / "scores.csv"
  results.write_atomic(path, "old\n")

  def broken_replace(src, dst):
    raise OSError("disk full")

  monkeypatch.setattr(os, "replace", broken_replace)
  with pytest.raises(OSError, match="disk full"):
    results.write_atomic(path, "new\n")
  assert path.read_text() == "old\n"
  assert os.listdir(tmp_path) == ["scores.csv"]


def test_mismatched_columns_are_rejected(tmp_path):
  with pytest.raises(ValueError, match="2 values for 3"):
    results.write_scores(tmp_path, GENOTYPES[:3], {"params": [1.0, 2.0]})
