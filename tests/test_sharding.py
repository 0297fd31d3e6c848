"""Scoring over 8 simulated CPU devices equals scoring on one (tests run the check in a fresh
process, since the device count is fixed when JAX starts)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from rznas_jax import proxies

from conftest import NATS_CSV, need

HERE = os.path.dirname(os.path.abspath(__file__))
# The `_real` AZ-NAS variants run their Gaussian twins' code on another batch: one family is enough.
NETWORK_PROXIES = [n for n in proxies.names()
                   if proxies.get(n).data != "none" and not n.endswith("_real")]
# 8 simulated devices; XLA's LLVM optimisations cost most of the compile and change no result.
EIGHT_DEVICES = ("--xla_force_host_platform_device_count=8 --xla_backend_optimization_level=0 "
                 "--xla_llvm_disable_expensive_passes=true")


def _check(*args):
  env = {**os.environ, "XLA_FLAGS": EIGHT_DEVICES, "JAX_PLATFORMS": "cpu"}
  proc = subprocess.run([sys.executable, os.path.join(HERE, "sharded_scoring_check.py"), *args],
                        env=env, capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return json.loads(proc.stdout.strip().splitlines()[-1])


def _assert_same(out, names):
  assert out["devices"] == 8
  for name in names:
    np.testing.assert_allclose(out["sharded"][name], out["single"][name], rtol=1e-4, atol=1e-6,
                               err_msg=name)


# Two halves of the proxies, so that the test run's two workers check them side by side.
# Proxies computed together (one joint function) stay together; families alternate between halves.
_FAMILIES = list(dict.fromkeys(getattr(proxies.get(n).joint, "__name__", n) for n in NETWORK_PROXIES))
HALVES = [[n for n in NETWORK_PROXIES
           if _FAMILIES.index(getattr(proxies.get(n).joint, "__name__", n)) % 2 == half]
          for half in (0, 1)]


@pytest.mark.parametrize("names", HALVES, ids=["first_half", "second_half"])
def test_switch_form_sharded_over_8_devices_gives_the_single_device_scores_for_every_proxy(names):
  out = _check("switch", ",".join(names))
  _assert_same(out, names)
  assert out["output_spec"] == "P('cells',)" and out["output_mesh_axes"] == ["cells"]
  assert out["output_devices"] == 8
  assert all(count == 1 for count in out["trace_counts"].values())  # 11 cells, 2 calls, 1 trace


def test_masked_vmap_sharded_over_8_devices():
  names = ["naswot"]
  out = _check("masked_vmap", ",".join(names))
  _assert_same(out, names)
  assert out["output_spec"] == "P('cells',)" and out["output_devices"] == 8


def test_macro_architectures_spread_over_devices():
  out = _check("macro", "zen")
  _assert_same(out, ["zen"])
  assert out["devices_used"] == [0, 1, 2]  # three distinct structures, one per device


def test_correlate_all_devices_equals_one_device(tmp_path):
  need(NATS_CSV)
  root = os.path.dirname(HERE)
  env = {**os.environ, "XLA_FLAGS": EIGHT_DEVICES, "JAX_PLATFORMS": "cpu"}
  common = [sys.executable, "-m", "launch.correlate", "--space=nb201", "--proxies=synflow,params",
            "--num_archs=13", "--channels=4", "--cells_per_stage=1", "--dataset=imagenet16-120",
            "--batch_size=8", f"--benchmark={NATS_CSV}", "--plot=false"]
  for name, extra in (("one", []), ("all", ["--all_devices"])):
    subprocess.run(common + [f"--out={tmp_path / name}", *extra], cwd=root, env=env, check=True,
                   capture_output=True, timeout=900)
  one = json.loads((tmp_path / "one" / "correlation.json").read_text())
  every = json.loads((tmp_path / "all" / "correlation.json").read_text())
  assert every["settings"]["all_devices"] is True
  for proxy in ("synflow", "params"):
    assert every[proxy] == one[proxy]
