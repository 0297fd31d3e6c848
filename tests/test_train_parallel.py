"""Data parallelism on 8 simulated CPU devices: the sharded step equals the single-device step.

The check runs in a subprocess because the device count must be fixed before JAX starts.
"""

import os
import subprocess
import sys
import textwrap

from conftest import REPO

SCRIPT = textwrap.dedent("""
    import jax
    import numpy as np
    from launch.configs import train_tiny_cpu
    from rznas_jax.train import architecture, data, loop, optim, parallel

    assert jax.device_count() == 8, jax.devices()
    c = train_tiny_cpu.get_config("synthetic")
    c.arch = "|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|avg_pool_3x3~0|none~1|skip_connect~2|"
    c.nb201.channels = 4
    c.optim.warmup_epochs = 0.0
    ds = data.load_dataset("synthetic", num_classes=10, image_size=16, synthetic_images=64)
    net = architecture.build_network(c, 10, ds.image_shape)
    tx, _ = optim.make_optimizer(c.optim, 2, 3)
    spec = loop.StepSpec(10, ds.mean, ds.std, label_smoothing=0.1)
    state0 = loop.TrainState.create(net.init(jax.random.key(0)), tx, jax.random.key(1))
    state0 = state0.replace(step=state0.step + 3)  # another augmentation key than step 0's
    images, labels = ds.train.images[:32], ds.train.labels[:32]

    def placed(n):
      mesh = parallel.data_mesh(jax.devices()[:n])
      x, y = parallel.shard_batch([images, labels], mesh)
      assert x.sharding.spec == jax.P("data") and len(x.sharding.device_set) == n
      assert {s.data.shape[0] for s in x.addressable_shards} == {32 // n}
      return mesh, parallel.replicate(state0, mesh), x, y

    # The single-device reference: loss, BN statistics and gradients of the global batch.
    mesh, state, x, y = placed(1)
    grad_fn = jax.jit(lambda s, x, y: loop.loss_and_grads(net.module, spec, s, x, y))
    (loss, (_, stats)), grads = jax.device_get(grad_fn(state, x, y))

    # The data-parallel train step on 8 devices, as the driver runs it.
    mesh, state, x, y = placed(8)
    train_fn, _ = loop.jit_steps(net.module, tx, spec, mesh)
    stepped, sums = train_fn(state, x, y)
    assert all(len(p.sharding.device_set) == 8 and p.sharding.is_fully_replicated
               for p in jax.tree.leaves(stepped.params))
    stepped, sums = jax.device_get((stepped, sums))

    np.testing.assert_allclose(sums["loss"] / 32, loss, rtol=1e-6)
    assert sums["count"] == 32
    for a, b in zip(jax.tree.leaves(stepped.batch_stats), jax.tree.leaves(stats)):
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)  # BN saw the global batch
    # From a fresh optimiser state the update is an invertible affine map of the gradients,
    # -lr (1 + momentum) (g + wd w), so equal updates mean equal gradients.
    updates, _ = tx.update(grads, state0.opt_state, state0.params)
    got = jax.tree.map(lambda new, old: np.asarray(new) - np.asarray(old), stepped.params, state0.params)
    scale = max(float(np.abs(u).max()) for u in jax.tree.leaves(updates))
    assert scale > 1e-4, scale
    rounding = lambda w: 4 * np.finfo(np.float32).eps * float(np.abs(w).max())  # of w + update
    for a, b, w in zip(jax.tree.leaves(got), jax.tree.leaves(updates), jax.tree.leaves(state0.params)):
      np.testing.assert_allclose(a, b, rtol=1e-4, atol=rounding(w) + 1e-7 * scale)
    grads8 = jax.tree.map(lambda u, w: -u / (0.1 * 1.9) - 5e-4 * np.asarray(w), got, state0.params)
    for a, b, w in zip(jax.tree.leaves(grads8), jax.tree.leaves(grads), jax.tree.leaves(state0.params)):
      np.testing.assert_allclose(a, b, rtol=1e-3, atol=rounding(w) / 0.19 + 1e-6 * scale)
    print("PARALLEL_OK", float(loss))
""")


def test_eight_device_step_equals_one_device_step():
  env = {**os.environ, "JAX_PLATFORMS": "cpu",
         "XLA_FLAGS": (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()}
  result = subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=600)
  assert result.returncode == 0 and "PARALLEL_OK" in result.stdout, result.stderr[-4000:]
