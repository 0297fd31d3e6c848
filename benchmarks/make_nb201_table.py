"""Builds the packaged NAS-Bench-201 accuracy table (``spaces/data/nb201_accuracy.npz``).

Reads ``nats_bench.csv`` (NATS-Bench tss, MIT: 15,625 rows in the official index order, the
200-epoch seed mean of the test accuracy on CIFAR-10, CIFAR-100 and ImageNet16-120) and writes
each row's six op indices (uint8, in ``nb201.OPS`` order) and the three accuracy columns (the
csv's float64 values), then reads the file back and checks that it equals the csv exactly.

    python benchmarks/make_nb201_table.py
    python benchmarks/make_nb201_table.py --csv=/path/to/nats_bench.csv --out=/tmp/nb201_accuracy.npz
"""

import os

from absl import app, flags
import numpy as np

from rznas_jax.spaces import nb201

_HERE = os.path.dirname(os.path.abspath(__file__))
_SHARED = os.path.join(os.path.dirname(os.path.dirname(_HERE)), "shared", "data")

flags.DEFINE_string("csv", os.path.join(_SHARED, "nb201", "v-tao_nats-bench-landscape", "nats_bench.csv"),
                    "NAS-Bench-201 table in the nats_bench.csv format.")
flags.DEFINE_string("out", nb201.PACKAGED_TABLE_FILE, "The .npz to write.")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  table = nb201.BenchmarkTable.load(FLAGS.csv)
  if len(table) != nb201.NUM_ARCHS:
    raise app.UsageError(f"{FLAGS.csv!r} has {len(table)} rows; the full table has {nb201.NUM_ARCHS}.")
  os.makedirs(os.path.dirname(os.path.abspath(FLAGS.out)), exist_ok=True)
  table.save_compact(FLAGS.out)
  back = nb201.BenchmarkTable.load_compact(FLAGS.out)
  if back.archs != table.archs:
    raise SystemExit(f"the op indices in {FLAGS.out} do not read back as the csv's architectures.")
  for d, acc in table.accuracy.items():
    if not np.array_equal(back.accuracy[d], acc):
      raise SystemExit(f"the {d} accuracies in {FLAGS.out} do not read back exactly.")
  if table.unique is not None and back.unique != table.unique:
    raise SystemExit("nb201.isomorphism_key differs from the csv's UniqueString.")
  print(f"{FLAGS.out}: {os.path.getsize(FLAGS.out):,} bytes, {len(back)} rows, equal to {FLAGS.csv}")


if __name__ == "__main__":
  app.run(main)
