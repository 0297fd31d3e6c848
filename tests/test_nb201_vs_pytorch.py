"""Our NB201 proxies against a second, independent implementation in PyTorch.

``benchmarks/nb201_vs_pytorch.py`` writes the NAS-Bench-201 network in PyTorch (xautodl's
``TinyNetwork``) and the proxies from their reference definitions (zero-cost-nas, Zen-NAS, ZiCo,
AZ-NAS). Given our initial variables and our batch, every proxy's float64 score on a tiny network
must equal ours, computed by the scorer's own path (``scoring.call_group`` on the switch network).
The PyTorch tests are skipped when PyTorch is not installed.
"""

import importlib.util
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from conftest import REPO
from rznas_jax import data as data_lib
from rznas_jax import proxies as proxy_lib
from rznas_jax import scoring
from rznas_jax.spaces import nb201

SCRIPT = os.path.join(REPO, "benchmarks", "nb201_vs_pytorch.py")
SETTING = scoring.NB201Setting(channels=4, cells_per_stage=1)
BATCH = 8
# Every op of the space in one cell, and a random one.
CELLS = [nb201.Arch(("nor_conv_3x3", "avg_pool_3x3", "nor_conv_1x1", "skip_connect", "none",
                     "nor_conv_3x3")), nb201.random_archs(1, seed=1)[0]]
# Compile fast, run slowly: the network is tiny.
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


@pytest.fixture(scope="module")
def bench():
  """The benchmark script as a module (loaded once per process: it defines absl flags)."""
  torch = pytest.importorskip("torch")
  if "nb201_vs_pytorch" not in sys.modules:
    spec = importlib.util.spec_from_file_location("nb201_vs_pytorch", SCRIPT)
    sys.modules[spec.name] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sys.modules[spec.name])
  threads = torch.get_num_threads()
  torch.set_num_threads(1)  # beside other work, PyTorch's threads wait for each other at every op
  yield sys.modules["nb201_vs_pytorch"]
  torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def inputs(bench):
  rng = np.random.default_rng(0)
  images = data_lib.ImageSet(rng.integers(0, 256, (32, 32, 32, 3), dtype=np.uint8),
                             rng.integers(0, 10, 32))
  return images, bench.proxy_inputs(SETTING, images, BATCH, seed=0)


def test_without_pytorch_the_script_says_so_and_exits_2():
  code = ("import runpy, sys; sys.modules['torch'] = None; "  # `import torch` fails
          f"sys.argv = [{SCRIPT!r}, '--proxies=synflow']; "
          f"runpy.run_path({SCRIPT!r}, run_name='__main__')")
  done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                        timeout=120, check=False)
  assert done.returncode == 2, done.stderr[-2000:]
  assert "PyTorch is not installed; pip install torch to run this benchmark" in done.stdout


def test_pytorch_network_has_the_nb201_parameter_count(bench):
  for arch in CELLS:
    net = bench.TorchNB201(arch, channels=16, cells_per_stage=5, num_classes=10)
    assert sum(p.numel() for p in net.parameters()) == nb201.count_params(arch)


@pytest.mark.parametrize("group", [("grad_norm", "snip"), ("synflow",), ("naswot",), ("zico",),
                                   ("az_nas",)])
def test_float64_scores_equal_pytorch(bench, inputs, group):
  images, proxy_inputs = inputs
  names = [n for measured in group for n in bench.MEASURED[measured]]
  spec = proxy_lib.get(names[0])
  scorer = scoring.NB201Scorer(names, SETTING, images=images, batch_size=BATCH, seed=0,
                               strategy="switch")  # compiles nothing: its variables only
  variables, batch = scorer.variables(spec.init), proxy_inputs.batch(spec)
  cotangents = (bench.az_cotangents(SETTING, BATCH, proxy_inputs.proxy_key, x64=True)
                if group == ("az_nas",) else None)
  theirs = {}
  for measured in group:
    theirs.update(bench.torch_scores(measured, SETTING, variables, batch, CELLS, "cpu", cotangents))
  ours = bench.jax_float64_scores(names, SETTING, "switch", variables, batch,
                                  proxy_inputs.proxy_key, CELLS, jax.devices("cpu")[0],
                                  compiler_options=FAST_COMPILE)
  for name in names:
    assert np.all(np.isfinite(ours[name])) and ours[name][0] != ours[name][1], (name, ours[name])
    difference = bench.max_relative_difference(ours[name], theirs[name])
    assert difference <= bench.FLOAT64_TOLERANCE, (name, ours[name], theirs[name])
