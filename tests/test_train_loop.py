"""Training end to end on tiny NB201 networks: learning on real CIFAR-10 images, exact resume after
an interruption, the export, eval-mode BN, and the launcher's one-line errors."""

import dataclasses
import functools
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import CIFAR_NPZ, REPO, need
from launch.configs import train_tiny_cpu
from rznas_jax import train
from rznas_jax.spaces import nb201
from rznas_jax.spaces import nb201_net
from rznas_jax.train import checkpoint as checkpoint_lib
from rznas_jax.train import driver
from rznas_jax.train import loop
from rznas_jax.train import metrics as metrics_lib


MACRO = "SuperConvK3BNRELU(3,8,1,1)SuperResK3K3(8,16,2,8,1)SuperConvK1BNRELU(16,32,1,1)"


class Interrupted(Exception):
  """Stands in for the process being killed after a step."""


def synthetic_config():
  c = train_tiny_cpu.get_config("synthetic")
  c.nb201.channels = 4
  c.synthetic_images = 96
  c.batch_size = 32  # 3 steps per epoch
  c.epochs = 3
  c.checkpoint_every_steps = 2
  c.label_smoothing = 0.1
  return c


def test_tiny_cpu_learns_real_cifar10_images(tmp_path):
  config = train_tiny_cpu.get_config()
  config.data = need(CIFAR_NPZ)
  config.epochs = 3
  workdir = str(tmp_path / "run")
  summary = train.run(config, workdir, progress=False)
  records = metrics_lib.read_metrics(workdir)
  assert [r["epoch"] for r in records] == [1, 2, 3]
  losses = [r["train_loss"] for r in records]
  assert losses[-1] < losses[0] - 0.1, losses  # the loss falls
  assert records[-1]["train_accuracy"] > 0.2  # chance is 0.1 on 800 images of 10 classes
  assert records[-1]["images_per_second"] > 0
  assert summary["test_images"] == 200 and summary["test_accuracy"] == records[-1]["test_accuracy"]
  with open(os.path.join(workdir, "final", "model.json")) as f:
    info = json.load(f)
  assert info["arch"] == train_tiny_cpu.GOOD_CELL and info["space"] == "nb201"
  assert 0.0 <= info["test_accuracy"] <= 1.0
  net = train.build_network(config, 10, (32, 32, 3))
  like = jax.tree.map(np.zeros_like, net.init(jax.random.key(0)))
  variables, _ = checkpoint_lib.load_final(os.path.join(workdir, "final"), like)
  assert not np.array_equal(variables["params"]["stem"]["conv"]["kernel"],
                            net.init(jax.random.key(0))["params"]["stem"]["conv"]["kernel"])


def _final_state(workdir, config):
  """The newest checkpoint's state, as host arrays."""
  ds = train.load_dataset("synthetic", num_classes=10, image_size=16, synthetic_images=96)
  net = train.build_network(config, ds.num_classes, ds.image_shape)
  from rznas_jax.train import optim
  tx, _ = optim.make_optimizer(config.optim, 3, config.epochs)
  like = loop.TrainState.create(net.init(jax.random.key(0)), tx, jax.random.key(1))
  ckpt = checkpoint_lib.Checkpoints(os.path.join(workdir, "checkpoints"))
  state, meta = ckpt.restore(ckpt.latest_step(), like)
  ckpt.close()
  return jax.device_get(state.replace(key=jax.random.key_data(state.key))), meta


def test_interrupted_run_resumes_to_the_same_parameters(tmp_path):
  config = synthetic_config()
  whole = str(tmp_path / "whole")
  train.run(config, whole, progress=False)

  broken = str(tmp_path / "broken")

  def kill_after_step_5(step):
    if step == 5:  # the last checkpoint is step 4: step 5 is lost and taken again
      raise Interrupted

  with pytest.raises(Interrupted):
    train.run(config, broken, progress=False, on_step=kill_after_step_5)
  assert sorted(os.listdir(os.path.join(broken, "checkpoints"))) == ["2", "4"]
  resumed_steps = []
  summary = train.run(config, broken, progress=False, on_step=resumed_steps.append)
  assert resumed_steps == [5, 6, 7, 8, 9]

  a, meta_a = _final_state(whole, config)
  b, meta_b = _final_state(broken, config)
  assert meta_a["step"] == meta_b["step"] == 9
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(x, y)  # bit for bit
  first = jax.tree.leaves(a.params)[0]
  assert not np.array_equal(first, jax.tree.leaves(_init_params(config))[0])  # it did train
  assert [r["epoch"] for r in metrics_lib.read_metrics(broken)] == [1, 2, 3]
  assert meta_a["epoch_sums"] == meta_b["epoch_sums"]
  assert summary == train.run(config, whole, progress=False)  # a finished run only re-exports
  config.arch = "|skip_connect~0|+|nor_conv_1x1~0|none~1|+|none~0|none~1|nor_conv_3x3~2|"
  with pytest.raises(train.ConfigError, match="holds a run with arch '[|]nor_conv_3x3~0"):
    train.run(config, whole, progress=False)


def _init_params(config):
  return train.build_network(config, 10, (16, 16, 3)).init(jax.random.key(0))["params"]


def test_eval_mode_uses_running_statistics_and_bf16_stays_close():
  arch = nb201.parse_genotype(train_tiny_cpu.GOOD_CELL)
  net = nb201_net.NB201Network(arch, channels=4, cells_per_stage=1, num_classes=10)
  variables = nb201_net.init_variables(net, jax.random.key(0), (16, 16, 3))
  variables["batch_stats"] = jax.tree.map(lambda v: v * 0.5, variables["batch_stats"])  # var 0.5
  images = jax.random.uniform(jax.random.key(1), (6, 16, 16, 3), maxval=255.0)
  others = images.at[2:].set(255.0 - images[2:] * 0.2)  # same first two images, another batch
  spec = loop.StepSpec(10, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
  eval_fn = jax.jit(lambda v, x: net.apply(v, (x / 255.0 - 0.5) / 0.25, train=False))
  logits = np.asarray(eval_fn(variables, images))
  np.testing.assert_allclose(np.asarray(eval_fn(variables, others))[:2], logits[:2], rtol=1e-5,
                             atol=1e-6)  # no batch statistics in eval mode
  assert np.abs(logits[0] - logits[1]).max() > 1e-3  # the images reach the logits
  shifted = dict(variables, batch_stats=jax.tree.map(lambda v: v * 2.0, variables["batch_stats"]))
  assert not np.allclose(eval_fn(shifted, images), logits, atol=1e-3)  # running stats are used
  # eval_step (bf16 compute) against a float32 NumPy cross-entropy of the same logits.
  labels = np.arange(6) % 10
  weights = np.asarray([1, 1, 1, 1, 0, 0], np.float32)
  bf16 = jax.jit(functools.partial(loop.eval_step, net, dataclasses.replace(spec, compute_dtype="bfloat16")))
  got = bf16(variables, images, labels, weights)
  log_p = logits - logits.max(1, keepdims=True)
  log_p -= np.log(np.exp(log_p).sum(1, keepdims=True))
  assert float(got["count"]) == 4.0
  np.testing.assert_allclose(float(got["loss"]), -log_p[np.arange(4), labels[:4]].sum(), rtol=0.03)
  assert abs(float(got["correct"]) - float((logits[:4].argmax(1) == labels[:4]).sum())) <= 1  # bf16 ties


@pytest.fixture(scope="module")
def launcher_runs(tmp_path_factory):
  tmp = tmp_path_factory.mktemp("launch")
  cases = {
      "arch": ["--config.arch=|conv~0|+|none~0|none~1|+|none~0|none~1|none~2|", "--config.data=/x.npz"],
      "data": [f"--config.data={tmp}/missing"],
      "value": ["--config.epochs=0", "--config.data=/x.npz"],
  }
  search = tmp / "search"
  search.mkdir()
  (search / "summary.json").write_text(json.dumps({"best_arch": MACRO, "space": "zen_cifar"}))
  cases["good"] = ["--config=launch/configs/train_tiny_cpu.py:synthetic", f"--config.arch={search}",
                   "--config.epochs=1", "--config.synthetic_images=64", "--config.batch_size=32",
                   "--config.optim.warmup_epochs=0", "--noprogress"]
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  procs = {k: subprocess.Popen(
      [sys.executable, "-m", "launch.train", f"--workdir={tmp}/{k}",
       *(args if k == "good" else ["--config=launch/configs/train_tiny_cpu.py", *args])], cwd=REPO, env=env,
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for k, args in cases.items()}
  outputs = {k: p.communicate(timeout=300) for k, p in procs.items()}
  return {k: (procs[k].returncode, *outputs[k], str(tmp / k)) for k in procs}


@pytest.mark.parametrize("case, needle", [
    ("arch", "unknown op 'conv'"),
    ("data", "missing' does not exist"),
    ("value", "config.epochs is 0; it must be at least 1"),
])
def test_launcher_bad_input_is_one_sentence_and_exit_2(launcher_runs, case, needle):
  code, _, stderr, _ = launcher_runs[case]
  assert code == 2, stderr
  assert stderr.count("\n") == 1 and stderr.startswith("error: ") and needle in stderr, stderr


def test_launcher_trains_a_macro_structure_from_a_search_summary(launcher_runs):
  code, stdout, stderr, workdir = launcher_runs["good"]
  assert code == 0, stderr
  info = driver.read_summary(workdir)
  assert info["arch"] == MACRO and info["space"] == "zen_cifar" and info["no_reslink"] is False
  assert f"test accuracy {info['test_accuracy']:.2%}" in stdout
  [record] = metrics_lib.read_metrics(workdir)
  assert record["epoch"] == 1 and record["step"] == 2 and np.isfinite(record["train_loss"])
