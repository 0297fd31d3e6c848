"""AZ-NAS's proxies against a NumPy reference on a tiny NAS-Bench-201 network.

The reference takes each block's output from the exact network, gets each block's input gradient
from that block's own module alone (``jax.vjp`` of one ``Cell``/``ResNetBlock``: no cuts, no switch
form), and does the rest in float64 NumPy: the channel covariance and its eigenvalues, PyTorch's
NCHW pixel unshuffle, the SVD. The proxies run on the masked and the switch form.
"""

from __future__ import annotations

import zlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rznas_jax import proxies
from rznas_jax import scoring
from rznas_jax.proxies import Batch
from rznas_jax.proxies.az_nas import az_nas_components
from rznas_jax.spaces import nb201
from rznas_jax.spaces import nb201_net
from rznas_jax.spaces import nb201_switch

SETTING = scoring.NB201Setting(channels=4, cells_per_stage=1)
SIZE, BATCH = 16, 8
ARCH = nb201.parse_genotype("|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+"
                            "|avg_pool_3x3~0|none~1|nor_conv_3x3~2|")
IDENTITY = nb201.parse_genotype("|none~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|")


def _variables():
  base = nb201_net.init_variables(SETTING.model(None), jax.random.key(0), (SIZE, SIZE, 3))
  return scoring.kaiming_init(base, jax.random.key(1))


def _images():
  return jax.random.normal(jax.random.key(2), (BATCH, SIZE, SIZE, 3))


def _block_modules(arch):
  """(variable name, module) of every block after the stem, in network order."""
  out, c = [], SETTING.channels
  for stage in range(3):
    if stage:
      c *= 2
      out.append((f"reduce{stage}", nb201_net.ResNetBlock(c)))
    out.append((f"stage{stage}_cell0", nb201_net.Cell(c, arch)))
  return out


def _reference(arch, variables, images, key):
  """AZ-NAS's three scores, the reference way (see the module docstring)."""
  exact = nb201_net.NB201Network(arch, SETTING.channels, SETTING.cells_per_stage, 10)
  _, state = exact.apply(variables, images, mutable=["batch_stats", "intermediates"])
  blocks = list(state["intermediates"]["blocks"])
  modules = _block_modules(arch)
  keys = jax.random.split(key, len(blocks) - 1)
  g_outs = [jax.random.rademacher(k, b.shape, b.dtype) for k, b in zip(keys, blocks[1:])]
  g_ins = []
  for (name, module), f_in, g_out in zip(modules, blocks[:-1], g_outs):
    block_vars = {col: variables[col][name] for col in ("params", "batch_stats")}
    fn = lambda x, m=module, v=block_vars: m.apply(v, x, mutable=["batch_stats", "intermediates"])[0]
    g_ins.append(jax.vjp(fn, f_in)[1](g_out)[0])

  def entropy(f):
    x = np.asarray(f, np.float64).reshape(-1, f.shape[-1])
    x = x - x.mean(0)
    eig = np.linalg.eigvalsh(x.T @ x / x.shape[0])
    p = eig / eig.sum()
    return -np.sum(p * np.log(p + 1e-8))

  def unshuffle_nchw(g, r):  # torch.nn.PixelUnshuffle on (B, C, H, W)
    b, c, h, w = g.shape
    return g.reshape(b, c, h // r, r, w // r, r).transpose(0, 1, 3, 5, 2, 4).reshape(
        b, c * r * r, h // r, w // r)

  entropies = np.array([entropy(f) for f in blocks])
  t = []
  for g_in, g_out in zip(g_ins, g_outs):
    g_in = np.asarray(g_in, np.float64).transpose(0, 3, 1, 2)
    g_out = np.asarray(g_out, np.float64).transpose(0, 3, 1, 2)
    if g_in.shape == g_out.shape and np.array_equal(g_in, g_out):
      t.append(-np.inf)
      continue
    if g_in.shape[2] != g_out.shape[2]:
      g_in = unshuffle_nchw(g_in, g_in.shape[2] // g_out.shape[2])
    rows = g_out.shape[0] * g_out.shape[2] * g_out.shape[3]
    m = g_in.transpose(0, 2, 3, 1).reshape(rows, -1).T @ g_out.transpose(0, 2, 3, 1).reshape(rows, -1)
    s = np.linalg.svd(m / rows, compute_uv=False).max()
    t.append(-s - 1 / (s + 1e-6) + 2)
  return {"az_expressivity": entropies.sum(),
          "az_progressivity": np.min(entropies[1:] - entropies[:-1]),
          "az_trainability": np.mean(t)}


@jax.jit
def _switch_components(variables, images, key, op_indices):
  """AZ-NAS on the switch form; the cell is an array, so every test cell shares one compile."""
  apply_fn = nb201_switch.make_apply_fn(SETTING, op_indices)
  return az_nas_components(apply_fn, variables, Batch(images, None), key)


@pytest.mark.parametrize("form", ["masked", "switch"])
def test_az_nas_matches_numpy_reference(form):
  variables, images, key = _variables(), _images(), jax.random.key(3)
  expected = _reference(ARCH, variables, images, key)
  if form == "masked":
    apply_fn = nb201_net.make_apply_fn(SETTING.model(None), jnp.asarray(ARCH.one_hot()))
    got = jax.jit(lambda v, x, k: az_nas_components(apply_fn, v, Batch(x, None), k))(
        variables, images, key)
  else:
    got = _switch_components(variables, images, key, jnp.asarray(ARCH.op_indices))
  for name, value in expected.items():
    np.testing.assert_allclose(float(got[name]), value, rtol=2e-4, atol=2e-4, err_msg=name)
  # Not vacuous: the network has 6 blocks, so expressivity sums 6 entropies of 4..16 channels.
  assert 6 < expected["az_expressivity"] < 6 * np.log(16)


def test_identity_cell_has_lowest_trainability():
  variables, images, key = _variables(), _images(), jax.random.key(3)
  got = _switch_components(variables, images, key, jnp.asarray(IDENTITY.op_indices))
  assert float(got["az_trainability"]) == -np.inf
  assert _reference(IDENTITY, variables, images, key)["az_trainability"] == -np.inf
  assert np.isfinite(float(got["az_expressivity"]))


def test_registered_proxies_share_one_joint_call():
  specs = [proxies.get(n) for n in ("az_expressivity", "az_progressivity", "az_trainability")]
  assert {s.joint for s in specs} == {az_nas_components}
  assert all(s.init == "kaiming" and s.dead_edge_exact for s in specs)
  calls = []

  def counting(*args):
    calls.append(1)
    return az_nas_components(*args)

  fake = [s.__class__(**{**s.__dict__, "joint": counting}) for s in specs]
  apply_fn = nb201_switch.make_apply_fn(SETTING, jnp.asarray(ARCH.op_indices))
  values = jax.eval_shape(lambda v, x: scoring.call_group(fake, apply_fn, v, Batch(x, None),
                                                          jax.random.key(0)),
                          _variables(), _images())  # traced once, nothing computed
  assert len(calls) == 1 and len(values) == 3


def test_scorer_scores_az_nas_like_direct_call():
  """The harness (kaiming init, pruned switch form, fused group) gives the direct call's scores."""
  archs = [ARCH, nb201.parse_genotype("|nor_conv_1x1~0|+|none~0|nor_conv_3x3~1|+"
                                      "|skip_connect~0|nor_conv_3x3~1|none~2|")]
  scorer = scoring.NB201Scorer(["az_expressivity", "az_trainability", "az_progressivity"], SETTING,
                               batch_size=BATCH, seed=0, strategy="switch")
  got = scorer.score(archs)
  assert scorer.trace_counts == {"az_expressivity": 1, "az_trainability": 1, "az_progressivity": 1}
  variables = scorer.variables("kaiming")
  batch = scorer._batches["gaussian"]  # pylint: disable=protected-access
  key = jax.random.fold_in(scorer._proxy_key,  # pylint: disable=protected-access
                           zlib.crc32(b"az_nas_components"))
  for i, arch in enumerate(archs):  # the unpruned cell, unfused
    direct = _switch_components(variables, batch.images, key, jnp.asarray(arch.op_indices))
    for name in got:
      np.testing.assert_allclose(got[name][i], float(direct[name]), rtol=2e-4, err_msg=name)
