"""The scoring harness: one compile whatever the number of cells, strategies agree, seeds repeat,
proxies NB201 cannot serve are refused, scores stay on the device until one fetch."""

import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from rznas_jax import data as data_lib
from rznas_jax import proxies as proxy_lib
from rznas_jax import scorer as scorer_lib
from rznas_jax import scoring
from rznas_jax.proxies import base
from rznas_jax.spaces import nb201

from conftest import CIFAR_NPZ, need

TINY = scoring.NB201Setting(channels=4, cells_per_stage=1)


def test_one_compile_for_1_and_100_cells():
  scorer = scoring.NB201Scorer(["naswot"], TINY, batch_size=8, strategy="masked_vmap", chunk_size=8)
  one = scorer.score(nb201.random_archs(1, seed=0))
  hundred = scorer.score(nb201.random_archs(100, seed=1))
  assert scorer.trace_counts == {"naswot": 1}
  assert one["naswot"].shape == (1,) and hundred["naswot"].shape == (100,)
  assert np.all(np.isfinite(hundred["naswot"]))


def test_switch_strategy_gives_the_masked_scores():
  archs = nb201.random_archs(5, seed=2) + [nb201.Arch(("none",) * 6)]
  proxies = ["naswot", "synflow"]  # gradients of every op: tests/test_nb201_switch.py
  ref = scoring.NB201Scorer(proxies, TINY, batch_size=8, strategy="masked_vmap", chunk_size=4).score(archs)
  scorer = scoring.NB201Scorer(proxies, TINY, batch_size=8, strategy="switch")
  got = scorer.score(archs)
  for p in proxies:
    np.testing.assert_allclose(got[p], ref[p], rtol=2e-4, atol=1e-6, err_msg=p)
  assert all(n == 1 for n in scorer.trace_counts.values())


def test_dead_edges_pruned_on_the_switch_form_change_no_score():
  dead = ["|nor_conv_3x3~0|+|nor_conv_1x1~0|none~1|+|skip_connect~0|none~1|none~2|",  # 1 and 2 dead
          "|nor_conv_1x1~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_1x1~1|none~2|"]
  archs = [nb201.parse_genotype(g) for g in dead]
  assert all(nb201.prune_dead_edges(a) != a for a in archs)
  proxies = ["grad_norm", "fisher", "jacov", "synflow"]  # gradient, perturbation, input, float64
  # The unpruned switch form equals the masked network: test_switch_strategy_gives_the_masked_scores
  # and tests/test_nb201_switch.py.
  ref = scoring.NB201Scorer(proxies, TINY, batch_size=8, strategy="switch", prune=False).score(archs)
  got = scoring.NB201Scorer(proxies, TINY, batch_size=8, strategy="switch").score(archs)
  for p in proxies:
    np.testing.assert_allclose(got[p], ref[p], rtol=2e-4, err_msg=p)
    assert np.all(got[p] != 0), p


def test_fused_and_separate_proxies_agree():
  archs = nb201.random_archs(3, seed=5)
  proxies = ["naswot", "zen"]  # same init, batch and dtype: one group
  fused = scoring.NB201Scorer(proxies, TINY, batch_size=8, strategy="switch")
  separate = scoring.NB201Scorer(proxies, TINY, batch_size=8, strategy="switch", fuse=False)
  a, b = fused.score(archs), separate.score(archs)
  for p in proxies:
    np.testing.assert_allclose(a[p], b[p], rtol=1e-5)
  assert len(fused._fns) == 1 and len(separate._fns) == 2


def test_same_seed_same_scores_other_seed_other_scores():
  archs = nb201.random_archs(5, seed=3)
  a = scoring.NB201Scorer(["naswot"], TINY, batch_size=8, seed=7, strategy="masked").score(archs)
  b = scoring.NB201Scorer(["naswot"], TINY, batch_size=8, seed=7, strategy="masked").score(archs)
  c = scoring.NB201Scorer(["naswot"], TINY, batch_size=8, seed=8, strategy="masked").score(archs)
  np.testing.assert_array_equal(a["naswot"], b["naswot"])
  assert not np.allclose(a["naswot"], c["naswot"])


def test_analytic_proxies_use_the_counters():
  archs = nb201.random_archs(20, seed=4)
  got = scoring.NB201Scorer(["params", "flops"], TINY).score(archs)
  np.testing.assert_array_equal(got["params"], [nb201.count_params(a, 4, 1) for a in archs])
  np.testing.assert_array_equal(got["flops"], [nb201.count_flops(a, 4, 1) for a in archs])


def test_real_images_batch():
  images = data_lib.load_images(need(CIFAR_NPZ))
  assert images.images.shape == (1000, 32, 32, 3)
  x, y = data_lib.real_batch(images, 64, seed=0, dataset="cifar10", resolution=32)
  assert x.shape == (64, 32, 32, 3) and x.dtype == np.float32
  assert abs(float(x.mean())) < 0.5 and 0.5 < float(x.std()) < 1.5  # normalised
  with pytest.raises(data_lib.DataError, match="16x16"):
    data_lib.real_batch(images, 64, seed=0, dataset="imagenet16-120", resolution=16)


def test_unknown_strategy_and_dataset():
  with pytest.raises(ValueError, match="valid: auto, switch"):
    scoring.resolve_strategy("pmap")
  with pytest.raises(ValueError, match="valid: cifar10"):
    scoring.NB201Setting(dataset="mnist")


def test_analytic_proxies_the_space_cannot_count_are_refused_in_one_sentence(monkeypatch):
  with pytest.raises(proxy_lib.ProxySpaceError) as err:
    scoring.NB201Scorer(["synflow", "maedet"], TINY)
  message = str(err.value)
  assert message == ("proxy 'maedet' reads the cost 'arch', which the nb201 space does not provide "
                     "(it counts params, flops); in nb201 use a network proxy or the analytic "
                     "proxies flops, params.")
  assert isinstance(err.value, ValueError)
  # Any analytic proxy that reads a cost NB201 does not count, e.g. a layer count.
  monkeypatch.setattr(base, "_REGISTRY", dict(base._REGISTRY))  # pylint: disable=protected-access
  base.register_analytic("depth", costs=("layers",))(lambda costs: float(costs["layers"]))
  with pytest.raises(proxy_lib.ProxySpaceError, match="'depth' reads the cost 'layers', which the nb201"):
    scoring.NB201Scorer(["depth"], TINY)


def test_launcher_refuses_maedet_on_nb201_with_one_line():
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  proc = subprocess.run([sys.executable, "-m", "launch.score", "--space=nb201", "--archs=random:2",
                         "--proxies=maedet"], cwd=root, capture_output=True, text=True, timeout=300,
                        env={**os.environ, "JAX_PLATFORMS": "cpu"})
  lines = proc.stderr.strip().splitlines()
  assert proc.returncode != 0 and len(lines) == 1, proc.stderr  # no traceback
  assert lines[0].endswith(
      "proxy 'maedet' reads the cost 'arch', which the nb201 space does not provide (it counts "
      "params, flops); in nb201 use a network proxy or the analytic proxies flops, params."), lines


def test_scores_stay_on_the_device_until_one_fetch_per_call(monkeypatch):
  scorer = scoring.NB201Scorer(["naswot", "params", "zen"], TINY, batch_size=8,
                               strategy="masked_vmap", chunk_size=4, fuse=False)
  archs = nb201.random_archs(10, seed=6)
  reference = scoring.NB201Scorer(["naswot", "zen"], TINY, batch_size=8, strategy="switch").score(archs)
  fetched, device_gets = [], []
  real_fetch, real_get = scorer_lib.PendingScores.fetch, jax.device_get

  def fetch(pending, proxies):  # what is still on a device when the call fetches
    fetched.append([isinstance(v, jax.Array) for v in pending.values()])
    return real_fetch(pending, proxies)

  monkeypatch.setattr(scorer_lib.PendingScores, "fetch", fetch)
  monkeypatch.setattr(jax, "device_get", lambda x: device_gets.append(1) or real_get(x))
  got = scorer.score(archs)
  assert len(fetched) == 1 and len(device_gets) == 1
  # params on the host; naswot and zen (unfused: two functions) in 3 chunks of 4 each.
  assert fetched[0] == [False] + [True] * 6
  for proxy, expected in reference.items():  # unpadded, in order, whatever the chunking
    np.testing.assert_allclose(got[proxy], expected, rtol=2e-4, err_msg=proxy)
    assert got[proxy].dtype == np.float64
  assert isinstance(scorer, scorer_lib.Scorer) and scorer.proxies == ("naswot", "params", "zen")
  assert scorer.last_devices == [scorer_lib.device_name(jax.local_devices()[0])] * 10
  assert scorer.score([])["zen"].shape == (0,)


def test_one_given_device_scores_there_and_bad_device_arguments_are_refused():
  archs = nb201.random_archs(3, seed=8)
  device = jax.local_devices()[-1]
  scorer = scoring.NB201Scorer(["naswot"], TINY, batch_size=8, devices=[device])
  got = scorer.score(archs)
  default = scoring.NB201Scorer(["naswot"], TINY, batch_size=8).score(archs)
  np.testing.assert_array_equal(got["naswot"], default["naswot"])
  assert scorer.devices == [device] and scorer.last_output_sharding.device_set == {device}
  assert scorer.last_devices == [scorer_lib.device_name(device)] * 3
  with pytest.raises(ValueError, match="devices or a mesh, not both"):
    scoring.NB201Scorer(["naswot"], TINY, devices=[device], mesh=scoring.cell_mesh([device]))
  with pytest.raises(ValueError, match="the device list is empty"):
    scoring.NB201Scorer(["naswot"], TINY, devices=[])
  analytic_only = scoring.NB201Scorer(["params"], TINY)
  analytic_only.score(archs)
  assert analytic_only.last_devices == ["host"] * 3


def test_real_batch_is_the_shared_cores_and_equals_data_real_batch():
  rng = np.random.default_rng(0)
  images = data_lib.ImageSet(rng.integers(0, 256, (40, 16, 16, 3), dtype=np.uint8), rng.integers(0, 120, 40))
  setting = scoring.NB201Setting("imagenet16-120", channels=4, cells_per_stage=1)
  scorer = scoring.NB201Scorer(["grad_norm"], setting, images=images, batch_size=8, seed=5)
  x, y = data_lib.real_batch(images, 8, 5, "imagenet16-120", 16)
  np.testing.assert_array_equal(scorer._batches["real"].images, x)  # pylint: disable=protected-access
  np.testing.assert_array_equal(scorer._batches["real"].labels, y)  # pylint: disable=protected-access
  with pytest.raises(data_lib.DataError, match="has label 1.., but cifar10 has 10 classes"):
    scoring.NB201Scorer(["grad_norm"], TINY, images=data_lib.ImageSet(
        rng.integers(0, 256, (40, 32, 32, 3), dtype=np.uint8), rng.integers(0, 120, 40)), batch_size=8)
