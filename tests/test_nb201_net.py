"""The exact and the masked NAS-Bench-201 networks agree, and unused ops contribute nothing."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rznas_jax.spaces import nb201, nb201_net
from rznas_jax.spaces.nb201 import Arch

C, N, R, B = 4, 1, 8, 4
CELLS = nb201.random_archs(3, seed=11) + [Arch(("none",) * 6), Arch(("avg_pool_3x3",) * 6)]


@pytest.fixture(scope="module")
def masked():
  model = nb201_net.NB201Network(None, channels=C, cells_per_stage=N, num_classes=10)
  variables = nb201_net.init_variables(model, jax.random.key(0), (R, R, 3))
  x = jax.random.normal(jax.random.key(1), (B, R, R, 3))
  y = jnp.arange(B) % 10
  return model, variables, x, y


def _loss(params, apply_fn, variables, x, y):
  out = apply_fn({**variables, "params": params}, x)
  logp = jax.nn.log_softmax(out.logits)
  return -jnp.mean(logp[jnp.arange(len(y)), y]), out


@pytest.mark.parametrize("arch", CELLS, ids=str)
def test_exact_and_masked_agree(masked, arch):
  model, variables, x, y = masked
  exact = nb201_net.NB201Network(arch, channels=C, cells_per_stage=N, num_classes=10)
  template = nb201_net.init_variables(exact, jax.random.key(0), (R, R, 3))
  sub = nb201_net.subset_for(arch, variables, template)
  grad = jax.value_and_grad(_loss, has_aux=True)
  (lm, om), gm = grad(variables["params"], nb201_net.make_apply_fn(model, arch.one_hot()), variables, x, y)
  (le, oe), ge = grad(sub["params"], nb201_net.make_apply_fn(exact), sub, x, y)
  np.testing.assert_allclose(lm, le, rtol=1e-6)
  np.testing.assert_allclose(om.logits, oe.logits, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(om.features, oe.features, rtol=1e-5, atol=1e-6)
  # Gradients of the parameters the cell uses are equal ...
  gm_sub = nb201_net.subset_for(arch, {"params": gm}, {"params": ge})["params"]
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), gm_sub, ge)
  # ... and every other parameter of the masked network gets exactly zero.
  used = sum(float(jnp.sum(jnp.abs(g))) for g in jax.tree.leaves(ge))
  total = sum(float(jnp.sum(jnp.abs(g))) for g in jax.tree.leaves(gm))
  assert total == pytest.approx(used, rel=1e-6)
  # ReLU inputs: the masked form's weighted codes equal the exact form's.
  active = [(x_, w) for x_, w in om.relu_inputs if float(w) > 0]
  assert len(active) == len(oe.relu_inputs)
  assert all(float(w) in (0.0, 1.0) for _, w in om.relu_inputs)
  codes_m = sorted(np.asarray(a > 0).sum() for a, _ in active)
  codes_e = sorted(np.asarray(a > 0).sum() for a, _ in oe.relu_inputs)
  assert codes_m == codes_e
  # Running statistics: unused BN layers keep their initial values; used ones match.
  bm = nb201_net.subset_for(arch, {"batch_stats": om.batch_stats}, {"batch_stats": oe.batch_stats})
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), bm["batch_stats"], oe.batch_stats)
  changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), om.batch_stats, variables["batch_stats"])
  n_changed = sum(jax.tree.leaves(changed))
  n_used = sum(jax.tree.leaves(jax.tree.map(lambda a, b: bool(jnp.any(a != b)), oe.batch_stats, sub["batch_stats"])))
  assert n_changed == n_used


def test_masked_vmaps_over_cells(masked):
  model, variables, x, _ = masked
  one_hots = jnp.stack([a.one_hot() for a in CELLS])
  batched = jax.vmap(lambda oh: nb201_net.make_apply_fn(model, oh)(variables, x).logits)(one_hots)
  for i, arch in enumerate(CELLS):
    single = nb201_net.make_apply_fn(model, arch.one_hot())(variables, x).logits
    np.testing.assert_allclose(batched[i], single, rtol=1e-5, atol=1e-6)


def test_network_shapes_follow_the_benchmark():
  model = nb201_net.NB201Network(Arch(("nor_conv_3x3",) * 6), channels=16, cells_per_stage=5, num_classes=100)
  shapes = nb201_net.init_variables(model, jax.random.key(0))
  n = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(shapes["params"]))
  assert n == nb201.count_params(Arch(("nor_conv_3x3",) * 6), num_classes=100)
  assert shapes["params"]["classifier"]["kernel"].shape == (64, 100)


def test_pytorch_default_init_bounds(masked):
  _, variables, _, _ = masked
  k = variables["params"]["stage0_cell0"]["edge0_nor_conv_3x3"]["op"]["conv"]["kernel"]
  bound = 1 / np.sqrt(3 * 3 * C)  # kaiming_uniform(a=sqrt(5)) = U(+-1/sqrt(fan_in))
  assert float(jnp.max(jnp.abs(k))) <= bound and float(jnp.max(jnp.abs(k))) > 0.7 * bound
