"""The lax.switch NB201 network equals the masked network: outputs, running statistics, ReLU
codes, gradients (params and perturbations); one compiled function serves every cell; and its two
custom derivative rules (the switched edge, the conv) are right to second order and in float64.

The masked network runs op by op and vmapped over the cells (compiling its gradient takes minutes
on two cores). Second derivatives and float64 are checked where the custom rules live, on one cell
and on the conv, against the masked cell and XLA's convolution; the rest of the network is plain
JAX, whose derivatives of any order follow from the first-order check. (tests/test_scoring.py
compares whole-network scores, SynFlow in float64 among them, with the masked network's.)
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rznas_jax import scoring
from rznas_jax.proxies import network
from rznas_jax.spaces import nb201, nb201_net, nb201_switch
from rznas_jax.spaces.nb201 import Arch

C, N, R, B = 4, 1, 8, 4
SETTING = scoring.NB201Setting(channels=C, cells_per_stage=N)
CELLS = (nb201.random_archs(3, seed=5)
         + [Arch(("none",) * 6), Arch(("skip_connect",) * 6), Arch(("nor_conv_3x3",) * 6)])
# Compile fast, run slowly: the networks here are tiny.
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}
HVP_CELLS = [nb201.Arch(("nor_conv_3x3", "avg_pool_3x3", "nor_conv_1x1", "skip_connect", "none",
                         "nor_conv_3x3"))]


@pytest.fixture(scope="module")
def net():
  model = nb201_net.NB201Network(None, channels=C, cells_per_stage=N, num_classes=10)
  variables = nb201_net.init_variables(model, jax.random.key(0), (R, R, 3))
  # Running statistics away from their initial values, so that updates and no-updates differ.
  variables["batch_stats"] = jax.tree.map(lambda a: a + 0.5, variables["batch_stats"])
  x = jax.random.normal(jax.random.key(1), (B, R, R, 3))
  y = jnp.arange(B) % 10
  return model, variables, x, y


def _everything(apply_fn, variables, x, y):
  """Outputs, gradients w.r.t. params and perturbations of the cross-entropy loss."""
  out = apply_fn(variables, x)

  def loss(params, perturbations):
    o = apply_fn({**variables, "params": params, "perturbations": perturbations}, x)
    return network.cross_entropy(o.logits, y)

  zeros = jax.tree.map(jnp.zeros_like, out.activations)
  grads, pert_grads = jax.grad(loss, argnums=(0, 1))(variables["params"], zeros)
  return dict(logits=out.logits, features=out.features, batch_stats=out.batch_stats,
              relu_x=[a for a, _ in out.relu_inputs], relu_w=[w for _, w in out.relu_inputs],
              activations=out.activations, grads=grads, pert_grads=pert_grads)


def _switch_jit(fn, counter=None):
  """``fn`` of the switch network, jitted with the cell as a traced argument, compiled for speed of
  compilation (a test runs it a few times; the benchmark uses the default options)."""

  def run(op_indices, *args):
    if counter is not None:
      counter.append(1)
    return fn(nb201_switch.make_apply_fn(SETTING, op_indices), *args)

  return jax.jit(run, compiler_options=FAST_COMPILE)


@pytest.fixture(scope="module")
def switch_everything():
  traces = []
  return _switch_jit(_everything, traces), traces


@pytest.fixture(scope="module")
def masked_everything(net):
  """The masked network's results for every cell of CELLS, op by op and vmapped over the cells."""
  model, variables, x, y = net
  one_hots = jnp.stack([a.one_hot() for a in CELLS])
  batched = jax.vmap(lambda oh: _everything(nb201_net.make_apply_fn(model, oh), variables, x, y))(
      one_hots)
  return {arch: jax.tree.map(lambda a, i=i: a[i], batched) for i, arch in enumerate(CELLS)}


def _assert_trees_close(got, want, rtol, what, per_leaf=True):
  """Equal up to ``rtol`` of each leaf's largest value, or of the whole tree's (``per_leaf=False``,
  for gradients, where leaves that are zero in exact arithmetic hold rounding noise)."""
  assert jax.tree.structure(got) == jax.tree.structure(want), what
  top = max(float(np.max(np.abs(np.asarray(w)))) for w in jax.tree.leaves(want))
  for (path, g), w in zip(jax.tree_util.tree_flatten_with_path(got)[0], jax.tree.leaves(want)):
    w = np.asarray(w)
    scale = float(np.max(np.abs(w))) if per_leaf else top
    np.testing.assert_allclose(np.asarray(g), w, rtol=rtol, atol=rtol * scale + 1e-30,
                               err_msg=f"{what} {jax.tree_util.keystr(path)}")


def _used_activations(activations, arch):
  """Activations with the unused conv ops zeroed (the switch network returns zeros there)."""

  def keep(path, a):
    keys = [getattr(k, "key", "") for k in path]
    for e, op in enumerate(arch.ops):
      for name in ("nor_conv_1x1", "nor_conv_3x3"):
        if f"edge{e}_{name}" in keys and op != name:
          return jnp.zeros_like(a)
    return a

  return jax.tree_util.tree_map_with_path(keep, activations)


@pytest.mark.parametrize("arch", CELLS, ids=str)
def test_outputs_and_gradients_equal_the_masked_network(net, switch_everything, masked_everything,
                                                        arch):
  _, variables, x, y = net
  fn, _ = switch_everything
  got = fn(jnp.asarray(arch.op_indices), variables, x, y)
  want = dict(masked_everything[arch])
  want["activations"] = _used_activations(want["activations"], arch)
  for key in ("logits", "features", "batch_stats", "relu_x", "activations"):
    _assert_trees_close(got[key], want[key], 1e-5, key)
  # NASWOT reads (x > 0) weighted by relu_w: the same pairs, the same 0/1 weights, in the same order.
  np.testing.assert_array_equal(np.asarray(got["relu_w"]), np.asarray(want["relu_w"]))
  for key in ("grads", "pert_grads"):
    _assert_trees_close(got[key], want[key], 1e-5, key, per_leaf=False)
  # Unused ops get exactly zero gradient and keep exactly their running statistics.
  for e, op in enumerate(arch.ops):
    for name in ("nor_conv_1x1", "nor_conv_3x3"):
      if op != name:
        module = f"stage0_cell0/edge{e}_{name}"
        for leaf in jax.tree.leaves(got["grads"]["stage0_cell0"][f"edge{e}_{name}"]):
          assert not np.any(np.asarray(leaf)), module
        stats = got["batch_stats"]["stage0_cell0"][f"edge{e}_{name}"]["bn"]
        old = variables["batch_stats"]["stage0_cell0"][f"edge{e}_{name}"]["bn"]
        jax.tree.map(np.testing.assert_array_equal, stats, old)


def test_one_compile_serves_every_cell(net, switch_everything):
  _, variables, x, y = net
  fn, traces = switch_everything
  for arch in CELLS[:3]:
    fn(jnp.asarray(arch.op_indices), variables, x, y)
  assert len(traces) == 1


def _cell_fns(net, arch, bn):
  """Masked and switch versions of ``(cell params, cell input) -> cell output`` for stage 0."""
  _, variables, _, _ = net
  cell_vars = {name: tree["stage0_cell0"] for name, tree in variables.items()}
  stats = {"batch_stats": cell_vars["batch_stats"]}

  def masked(params, inputs):
    out, _ = nb201_net.Cell(C).apply({"params": params, **stats}, inputs, jnp.asarray(arch.one_hot()),
                                     use_bn=bn, mutable=["batch_stats", "intermediates"])
    return out

  def switch(op_indices, params, inputs):
    return nb201_switch.apply_cell({"params": params, **stats}, inputs, op_indices, bn=bn)[0]

  inputs = jax.random.normal(jax.random.key(2), (B, R, R, C))
  return masked, switch, cell_vars["params"], inputs


def _cell_hvp(cell, params, inputs):
  """Hessian of a smooth loss of the cell output times its own gradient, w.r.t. params and input;
  reverse over reverse, as GraSP differentiates."""

  def loss(p, x):
    return jnp.sum(jnp.sin(cell(p, x)) ** 2)

  g = jax.lax.stop_gradient(jax.grad(loss, (0, 1))(params, inputs))

  def g_dot_grad(p, x):
    grads = jax.grad(loss, (0, 1))(p, x)
    return sum(jnp.vdot(a, b) for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(grads)))

  return jax.grad(g_dot_grad, (0, 1))(params, inputs)


@pytest.mark.parametrize("arch", HVP_CELLS, ids=str)
def test_cell_hessian_vector_product_equals_the_masked_cell(net, arch):
  masked, switch, params, inputs = _cell_fns(net, arch, bn=True)
  got = jax.jit(lambda ops: _cell_hvp(lambda p, x: switch(ops, p, x), params, inputs),
                compiler_options=FAST_COMPILE)(jnp.asarray(arch.op_indices))
  want = _cell_hvp(masked, params, inputs)
  _assert_trees_close(got, want, 2e-5, "cell hvp", per_leaf=False)


def test_cell_float64_without_batch_norm_equals_the_masked_cell(net):
  arch = HVP_CELLS[0]
  with jax.enable_x64(True):
    masked, switch, params, inputs = _cell_fns(net, arch, bn=False)
    params, inputs = network.cast(params, jnp.float64), inputs.astype(jnp.float64)

    def value_and_grads(cell):
      """Per-sample Jacobians of the output sums, by a vmapped pullback (as TE-NAS)."""
      sums, pullback = jax.vjp(lambda p, x: jnp.sum(cell(p, x) ** 2, axis=(1, 2, 3)), params, inputs)
      return sums, jax.vmap(pullback)(jnp.eye(B, dtype=sums.dtype))

    got = jax.jit(lambda ops: value_and_grads(lambda p, x: switch(ops, p, x)),
                  compiler_options=FAST_COMPILE)(jnp.asarray(arch.op_indices))
    want = value_and_grads(masked)
    assert all(leaf.dtype == jnp.float64 for leaf in jax.tree.leaves(got))
    _assert_trees_close(got, want, 1e-12, "float64 cell", per_leaf=False)


@pytest.mark.parametrize("kernel,stride,dtype", [(3, 1, jnp.float32), (3, 2, jnp.float32),
                                                 (1, 1, jnp.float64), (3, 2, jnp.float64)])
def test_conv2d_equals_lax_conv_to_second_order(kernel, stride, dtype):
  """The custom-VJP conv against XLA's convolution and JAX's own derivatives of it."""
  with jax.enable_x64(dtype == jnp.float64):
    x = jax.random.normal(jax.random.key(3), (2, 6, 6, 3), dtype)
    w = jax.random.normal(jax.random.key(4), (kernel, kernel, 3, 5), dtype)
    pad = (kernel - 1) // 2

    def reference(x, w):
      return jax.lax.conv_general_dilated(x, w, (stride, stride), ((pad, pad), (pad, pad)),
                                          dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                          precision=jax.lax.Precision.HIGHEST)

    def derivatives(conv):
      loss = lambda x, w: jnp.sum(jnp.sin(conv(x, w)))
      grad = jax.grad(loss, (0, 1))
      hvp = jax.grad(lambda x, w: sum(jnp.sum(jnp.cos(g)) for g in grad(x, w)), (0, 1))
      y, pullback = jax.vjp(conv, x, w)
      batched = jax.vmap(pullback)(jnp.stack([jnp.ones_like(y), jnp.cos(y)]))  # as TE-NAS does
      return y, grad(x, w), hvp(x, w), batched

    got = jax.jit(lambda: derivatives(lambda x, w: nb201_switch.conv2d(x, w, stride)),
                  compiler_options=FAST_COMPILE)()
    want = jax.jit(lambda: derivatives(reference), compiler_options=FAST_COMPILE)()
    _assert_trees_close(got, want, 1e-5 if dtype == jnp.float32 else 1e-12, "conv2d")


def test_bad_op_indices_are_an_error():
  with pytest.raises(ValueError, match=r"shape \(6,\)"):
    nb201_switch.make_apply_fn(SETTING, jnp.zeros((6, 5), jnp.int32))
