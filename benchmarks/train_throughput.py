"""Training throughput of an NB201 network: images per second of the real train step.

Times ``rznas_jax.train.loop.jit_steps`` (augmentation, forward, backward, SGD update, BN
statistics) and the eval step, data-parallel over every local device, on random uint8 CIFAR-sized
batches, with compile time reported apart. The same command runs on a CPU, a GPU or a TPU host and
writes one JSON (device kind and count, settings, compile seconds, images/s per dtype) so results
from different machines can be compared:

    python benchmarks/train_throughput.py                                 # full NB201 net, C=16 N=5
    python benchmarks/train_throughput.py --channels=8 --cells_per_stage=1 --batch_size=64 --steps=5
    python benchmarks/train_throughput.py --dtypes=float32,bfloat16 --out=benchmarks/results/train_gpu.json
"""

import json
import os
import platform
import time

from absl import app, flags
import jax
import numpy as np

from rznas_jax.train import architecture, config as config_lib, loop, optim, parallel

_HERE = os.path.dirname(os.path.abspath(__file__))
BEST_CELL = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"

flags.DEFINE_string("arch", BEST_CELL, "NB201 genotype (default: NB201's best CIFAR-10 cell).")
flags.DEFINE_integer("channels", 16, "C of the first stage (16 in NB201).")
flags.DEFINE_integer("cells_per_stage", 5, "N (5 in NB201).")
flags.DEFINE_integer("resolution", 32, "Image side (32 CIFAR, 16 ImageNet16-120).")
flags.DEFINE_integer("batch_size", 256, "Global batch (NB201's recipe: 256).")
flags.DEFINE_integer("steps", 10, "Timed steps per measurement (after one compile-and-warm-up step).")
flags.DEFINE_list("dtypes", ["float32"], "Compute dtypes to time: float32, bfloat16.")
flags.DEFINE_string("out", os.path.join(_HERE, "results", "train_throughput.json"), "Output JSON.")
FLAGS = flags.FLAGS


def _time(fn, args_for_step, steps):
  """(seconds of the first call, seconds per call over ``steps`` further calls)."""
  start = time.perf_counter()
  out = fn(*args_for_step(0))
  jax.block_until_ready(out)
  first = time.perf_counter() - start
  start = time.perf_counter()
  for i in range(1, steps + 1):
    out = fn(*args_for_step(i, out))
  jax.block_until_ready(out)
  return first, (time.perf_counter() - start) / steps


def measure(dtype: str) -> dict:
  config = config_lib.default_config()
  config.arch = FLAGS.arch
  config.nb201.channels, config.nb201.cells_per_stage = FLAGS.channels, FLAGS.cells_per_stage
  shape = (FLAGS.resolution, FLAGS.resolution, 3)
  net = architecture.build_network(config, 10, shape)
  mesh = parallel.data_mesh(jax.local_devices())
  parallel.check_batch_size(FLAGS.batch_size, mesh)
  tx, _ = optim.make_optimizer(config.optim, 100, 1)
  spec = loop.StepSpec(10, (0.5,) * 3, (0.25,) * 3, compute_dtype=dtype)
  train_fn, eval_fn = loop.jit_steps(net.module, tx, spec, mesh)
  variables = net.init(jax.random.key(0))
  state = parallel.replicate(loop.TrainState.create(variables, tx, jax.random.key(1)), mesh)
  variables = parallel.replicate(variables, mesh)  # eval's own copy: the train step donates off CPU
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (FLAGS.batch_size, *shape), dtype=np.uint8)
  labels = rng.integers(0, 10, FLAGS.batch_size).astype(np.int32)
  x, y = parallel.shard_batch([images, labels], mesh)
  w = parallel.shard_batch([np.ones(FLAGS.batch_size, np.float32)], mesh)[0]
  train_first, train_step = _time(train_fn, lambda i, out=None: (state if out is None else out[0], x, y),
                                  FLAGS.steps)
  eval_first, eval_step = _time(eval_fn, lambda i, out=None: (variables, x, y, w), FLAGS.steps)
  return {
      "dtype": dtype,
      "train_compile_and_first_step_s": train_first,
      "train_step_s": train_step,
      "train_images_per_second": FLAGS.batch_size / train_step,
      "eval_compile_and_first_step_s": eval_first,
      "eval_images_per_second": FLAGS.batch_size / eval_step,
  }


def main(argv):
  del argv
  devices = jax.local_devices()
  results = {
      "benchmark": "train_throughput",
      "arch": FLAGS.arch, "channels": FLAGS.channels, "cells_per_stage": FLAGS.cells_per_stage,
      "resolution": FLAGS.resolution, "batch_size": FLAGS.batch_size, "steps": FLAGS.steps,
      "platform": devices[0].platform, "device_kind": devices[0].device_kind,
      "device_count": len(devices), "host": platform.node(), "cpu_count": os.cpu_count(),
      "jax": jax.__version__, "measurements": [],
  }
  for dtype in FLAGS.dtypes:
    m = measure(dtype)
    results["measurements"].append(m)
    print(f"{results['device_kind']} x{len(devices)}, {dtype}: train {m['train_images_per_second']:.1f} "
          f"images/s ({m['train_step_s'] * 1e3:.1f} ms/step, compile+first "
          f"{m['train_compile_and_first_step_s']:.1f} s), eval {m['eval_images_per_second']:.1f} images/s")
  os.makedirs(os.path.dirname(os.path.abspath(FLAGS.out)), exist_ok=True)
  with open(FLAGS.out, "w") as f:
    json.dump(results, f, indent=2)
  print(f"wrote {FLAGS.out}")


if __name__ == "__main__":
  app.run(main)
