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
# Sharding splits the cells over the devices and leaves each proxy's function alone, so the check
# covers what can differ between proxies under a mesh, not every proxy (each costs two compiles):
# one proxy of every (init, data, dtype) group that scoring compiles as one program, the proxies
# that read the key (zen, AZ-NAS), the perturbation path (fisher) and a joint family (AZ-NAS, with
# its block cuts). Every proxy's own value is checked against references in test_proxies.py.
SHARDED_PROXIES = ["synflow", "naswot", "zen", "grad_norm", "fisher", "az_expressivity",
                   "az_progressivity", "az_trainability"]
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


def test_every_sharded_proxy_is_registered_with_the_kind_it_stands_for():
  def kind(name):
    spec = proxies.get(name)
    return spec.init, spec.data, spec.dtype

  groups = {kind(n) for n in proxies.names()
            if proxies.get(n).data != "none" and not n.endswith("_real")}
  covered = {kind(n) for n in SHARDED_PROXIES}
  assert groups - covered <= {("gaussian", "gaussian", "float64")}  # synflow_zen: synflow's code


def test_switch_form_sharded_over_8_devices_gives_the_single_device_scores():
  out = _check("switch", ",".join(SHARDED_PROXIES))
  _assert_same(out, SHARDED_PROXIES)
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


# The devices argument, in a fresh process with 8 simulated devices: a scorer given some of them
# scores on exactly those and says which device scored each architecture.
DEVICES_CHECK = """
import json
import jax
from rznas_jax import macro_scoring, scoring
from rznas_jax.spaces import nb201

devices = jax.devices()
setting = scoring.NB201Setting("imagenet16-120", channels=4, cells_per_stage=1)
archs = nb201.random_archs(11, seed=3)
kw = dict(batch_size=8, seed=0, strategy="switch")
single = scoring.NB201Scorer(["naswot"], setting, **kw).score(archs)["naswot"]
four = scoring.NB201Scorer(["naswot"], setting, devices=devices[2:6], chunk_size=1, **kw)
one = scoring.NB201Scorer(["naswot"], setting, devices=[devices[5]], **kw)
fast = dict(batch_size=4, resolution=16, compiler_options={"xla_backend_optimization_level": 0})
structures = macro_scoring.random_archs(macro_scoring.macro_spaces.zen_cifar(resolution=16), 3, seed=0)
macro_single = macro_scoring.MacroScorer(["zen"], "zen_cifar", **fast).score(structures)["zen"]
macro_two = macro_scoring.MacroScorer(["zen"], "zen_cifar", devices=devices[5:7], **fast)
macro_one = macro_scoring.MacroScorer(["zen"], "zen_cifar", devices=[devices[3]], **fast)
out = {"single": single.tolist(), "four": four.score(archs)["naswot"].tolist(),
       "one": one.score(archs)["naswot"].tolist(),
       "four_devices": [str(d.id) for d in four.devices], "four_last": four.last_devices,
       "four_output": sorted(d.id for d in four.last_output_sharding.device_set),
       "one_last": one.last_devices, "one_output": sorted(d.id for d in one.last_output_sharding.device_set),
       "macro_single": macro_single.tolist(), "macro_two": macro_two.score(structures)["zen"].tolist(),
       "macro_one": macro_one.score(structures)["zen"].tolist(),
       "macro_two_last": macro_two.last_devices, "macro_one_last": macro_one.last_devices,
       "macro_two_compiled_on": sorted({k[2] for k in macro_two._fns}),
       "macro_one_compiled_on": sorted({k[2] for k in macro_one._fns})}
print(json.dumps(out))
"""


def test_scorers_score_on_exactly_the_devices_given():
  env = {**os.environ, "XLA_FLAGS": EIGHT_DEVICES, "JAX_PLATFORMS": "cpu"}
  proc = subprocess.run([sys.executable, "-c", DEVICES_CHECK], env=env, capture_output=True,
                        text=True, timeout=900, cwd=os.path.dirname(HERE))
  assert proc.returncode == 0, proc.stderr[-3000:]
  out = json.loads(proc.stdout.strip().splitlines()[-1])
  # NB201 on devices 2..5: a cell mesh of exactly those, one cell per device per call.
  assert out["four_devices"] == ["2", "3", "4", "5"] and out["four_output"] == [2, 3, 4, 5]
  assert out["four_last"] == [f"cpu:{2 + i % 4}" for i in range(11)]
  np.testing.assert_allclose(out["four"], out["single"], rtol=1e-4, atol=1e-6)
  # One device given: everything runs there.
  assert out["one_output"] == [5] and out["one_last"] == ["cpu:5"] * 11
  np.testing.assert_array_equal(out["one"], out["single"])
  # Macro: distinct structures alternate over devices 5 and 6; one device given, all on it.
  assert out["macro_two_last"] == ["cpu:5", "cpu:6", "cpu:5"] and out["macro_two_compiled_on"] == [5, 6]
  assert out["macro_one_last"] == ["cpu:3"] * 3 and out["macro_one_compiled_on"] == [3]
  for key in ("macro_two", "macro_one"):
    np.testing.assert_allclose(out[key], out["macro_single"], rtol=1e-4, atol=1e-6, err_msg=key)
