"""The scoring harness: one compile whatever the number of cells, strategies agree, seeds repeat."""

import jax
import numpy as np
import pytest

from rznas_jax import data as data_lib
from rznas_jax import scoring
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
  proxies = ["grad_norm", "snip", "fisher", "jacov", "synflow"]
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
