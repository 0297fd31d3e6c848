"""Scoring the whole NAS-Bench-201 space, and how throughput scales with the number of devices.

For each device count, a fresh process (the device count is fixed when JAX starts; on a CPU the
devices are simulated with ``--xla_force_host_platform_device_count``) scores ``--num_archs``
cells (default: all 15,625) with each proxy through `NB201Scorer` with a mesh of all its devices
(``chunk_size`` cells per device per call), and reports architectures per second after the
compile, the compile time apart. Simulated CPU devices share the machine's cores, so on a 2-core
CPU the scaling shows the sharding overhead, not a speed-up; on a GPU/TPU host the same script
measures the real thing.

    python benchmarks/nb201_full_sweep.py --num_archs=256 --devices=1,2,4,8        # 2-core CPU
    python benchmarks/nb201_full_sweep.py --devices=1 --strategy=masked_vmap --chunk_size=256 \
        --out=benchmarks/results/nb201_full_sweep_gpu.json                         # one GPU
    python benchmarks/nb201_full_sweep.py --devices=8 --simulate=false --strategy=masked_vmap \
        --chunk_size=256 --out=...                                                 # a TPU v5e-8 host
"""

import json
import os
import subprocess
import sys
import time

from absl import app, flags
import numpy as np

_HERE = os.path.dirname(os.path.abspath(__file__))

flags.DEFINE_list("proxies", ["synflow", "naswot"], "Proxies.")
flags.DEFINE_list("devices", ["1", "2", "4", "8"], "Device counts to measure.")
flags.DEFINE_integer("num_archs", 0, "Cells to score (0: all 15,625; fewer: a uniform sample).")
flags.DEFINE_bool("unique", False, "Score one cell per isomorphism class (6,466) instead.")
flags.DEFINE_string("strategy", "auto", "Scoring strategy (auto: switch on CPU, masked_vmap else).")
flags.DEFINE_integer("chunk_size", 1, "Cells per device per call.")
flags.DEFINE_integer("batch_size", 64, "Images per proxy batch.")
flags.DEFINE_bool("simulate", True, "Simulate the device counts with CPU devices.")
flags.DEFINE_string("worker", None, "Internal: run one device count in this process.")
flags.DEFINE_string("out", os.path.join(_HERE, "results", "nb201_full_sweep.json"), "Output JSON.")
FLAGS = flags.FLAGS


def cells():
  from rznas_jax.spaces import nb201  # pylint: disable=g-import-not-at-top
  archs = nb201.all_archs()
  if FLAGS.unique:
    seen, unique = set(), []
    for a in archs:
      key = nb201.isomorphism_key(a)
      if key not in seen:
        seen.add(key)
        unique.append(a)
    archs = unique
  if not FLAGS.num_archs or FLAGS.num_archs >= len(archs):
    return archs
  # a uniform sample: the first cells in code order are mostly `none` and would flatter the rate
  pick = np.random.default_rng(0).choice(len(archs), FLAGS.num_archs, replace=False)
  return [archs[i] for i in sorted(pick)]


def worker():
  import jax  # pylint: disable=g-import-not-at-top
  from rznas_jax import scoring  # pylint: disable=g-import-not-at-top
  archs = cells()
  rows = []
  for proxy in FLAGS.proxies:
    scorer = scoring.NB201Scorer([proxy], batch_size=FLAGS.batch_size, strategy=FLAGS.strategy,
                                 chunk_size=FLAGS.chunk_size, mesh=scoring.cell_mesh())
    warm = archs[:scorer.cells_per_call]
    t0 = time.perf_counter()
    scorer.score(warm)
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    scores = scorer.score(archs)[proxy]
    seconds = time.perf_counter() - t0
    rows.append({"proxy": proxy, "devices": jax.device_count(), "cells": len(archs),
                 "compile_and_first_call_s": compile_s, "seconds": seconds,
                 "archs_per_second": len(archs) / seconds, "strategy": scorer.strategy,
                 "backend": jax.default_backend(), "finite": int(sum(map(bool, scores == scores)))})
  print(json.dumps(rows))


def main(argv):
  del argv
  if FLAGS.worker:
    return worker()
  results = []
  for count in map(int, FLAGS.devices):
    env = dict(os.environ)
    if FLAGS.simulate:
      env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={count}"
      env["JAX_PLATFORMS"] = "cpu"
    args = [sys.executable, os.path.abspath(__file__), f"--worker={count}",
            f"--proxies={','.join(FLAGS.proxies)}", f"--num_archs={FLAGS.num_archs}",
            f"--unique={FLAGS.unique}", f"--strategy={FLAGS.strategy}",
            f"--chunk_size={FLAGS.chunk_size}", f"--batch_size={FLAGS.batch_size}"]
    proc = subprocess.run(args, env=env, capture_output=True, text=True)
    if proc.returncode:
      raise SystemExit(f"the {count}-device run failed:\n{proc.stderr[-3000:]}")
    rows = json.loads(proc.stdout.strip().splitlines()[-1])
    results += rows
    for r in rows:
      print(f"{r['proxy']:8s} {r['devices']} devices: {r['archs_per_second']:8.2f} archs/s "
            f"({r['cells']} cells in {r['seconds']:.1f} s; compile {r['compile_and_first_call_s']:.1f} s)",
            flush=True)
  base = {r["proxy"]: r["archs_per_second"] for r in results if r["devices"] == int(FLAGS.devices[0])}
  for r in results:
    r["speedup_vs_first"] = r["archs_per_second"] / base[r["proxy"]]
  os.makedirs(os.path.dirname(FLAGS.out), exist_ok=True)
  with open(FLAGS.out, "w") as f:
    json.dump({"settings": {k: FLAGS[k].value for k in ("proxies", "devices", "num_archs", "unique",
                                                         "strategy", "chunk_size", "batch_size",
                                                         "simulate")},
               "cpu_count": os.cpu_count(), "results": results}, f, indent=1)
  print("proxy     " + "  ".join(f"{d:>8s} dev" for d in FLAGS.devices) + "   (archs/s)")
  for proxy in FLAGS.proxies:
    print(f"{proxy:9s} " + "  ".join(f"{r['archs_per_second']:12.2f}" for r in results
                                     if r["proxy"] == proxy))
  print(f"wrote {FLAGS.out}")


if __name__ == "__main__":
  app.run(main)
