"""Records, or checks against the record, every proxy's score on a fixed set of architectures.

Step 10 (one Space interface, one scoring core) must not change a single score. This script scores
200 NAS-Bench-201 cells (seed 0, an 8-channel, one-cell-per-stage network, batch 16, Gaussian
data) and 5 architectures of each macro space (seed 0, 32x32 inputs, batch 4) with every proxy
that applies to the space, through `python -m launch.score`, and either writes the scores to
``benchmarks/data/score_identity/`` (``--record``) or compares a new run with them, bit for bit
(``--check``, the default): it prints, per space and proxy, how many scores differ and the
largest relative difference, writes the same as JSON, and exits 1 on any difference.

    python benchmarks/score_identity.py --record    # before a refactor
    python benchmarks/score_identity.py             # after it

The record in the repository was made at the commit that added this script (Step 9, before
Step 10's refactor) for nb201 (200 cells, 21 proxies: 7 min on 2 cores with a search running
beside it) and zen_cifar (13 min, likewise). nb201 was recorded again (24 proxies, 3 min idle)
in Step 12, after the 3x3 weight gradient became a convolution: against the Step 9 record that
moved grad_norm and snip by at most 4e-7, grad_norm_zen 8e-8, TE-NAS 4e-6, GraSP 3e-5 and ZiCo
2e-3 (float32 rounding), and no other proxy; mobilenet_imagenet (one XLA compile per structure and
proxy group: about 10 min by its progress bar) and maedet_coco were not recorded: record them from that commit with --record --spaces=... before
changing the scoring code.
"""

import csv
import json
import os
import subprocess
import sys
import tempfile

from absl import app, flags
import numpy as np

_HERE = os.path.dirname(os.path.abspath(__file__))
_ROOT = os.path.dirname(_HERE)
RECORD = os.path.join(_HERE, "data", "score_identity")

flags.DEFINE_bool("record", False, "Write the record instead of checking against it.")
flags.DEFINE_string("out", os.path.join(_HERE, "results", "score_identity.json"), "Check's JSON.")
flags.DEFINE_list("spaces", None, "Spaces to record or check (default: every space with a record; "
                  "with --record, every space).")
FLAGS = flags.FLAGS

ARGS = {
    "nb201": ["--space=nb201", "--archs=random:200", "--channels=8", "--cells_per_stage=1",
              "--batch_size=16"],
    **{space: [f"--space={space}", "--archs=random:5", "--resolution=32", "--batch_size=4"]
       for space in ("zen_cifar", "mobilenet_imagenet", "maedet_coco")},
}


def runnable(space: str) -> list[str]:
  """Every registered proxy the space can score (the space's own check decides)."""
  from rznas_jax import proxies  # pylint: disable=g-import-not-at-top
  from rznas_jax import spaces  # pylint: disable=g-import-not-at-top
  out = []
  for name in proxies.names():
    try:
      spaces.get(space).check_proxies([name])
      out.append(name)
    except proxies.base.ProxySpaceError:
      pass
  return out


def score(space: str, out: str) -> None:
  extra, proxies = ARGS[space], runnable(space)
  command = [sys.executable, "-m", "launch.score", *extra, "--seed=0", "--data=gaussian",
             f"--proxies={','.join(proxies)}", f"--out={out}"]
  print(" ".join(command[1:]), flush=True)
  subprocess.run(command, cwd=_ROOT, check=True)


def read(path: str) -> tuple[list[str], dict[str, np.ndarray]]:
  with open(path, newline="") as f:
    rows = list(csv.DictReader(f))
  archs = [r["arch"] for r in rows]
  # float(str) round-trips: the csv holds repr()s of the float64 scores.
  return archs, {k: np.array([float(r[k]) for r in rows]) for k in rows[0] if k != "arch"}


def main(argv):
  del argv
  report = {}
  failed = False
  spaces = FLAGS.spaces or [s for s in ARGS if FLAGS.record or os.path.exists(
      os.path.join(RECORD, f"{s}.csv"))]
  for space in spaces:
    if space not in ARGS:
      raise app.UsageError(f"--spaces: {space!r} is not one of {', '.join(ARGS)}.")
    recorded_csv = os.path.join(RECORD, f"{space}.csv")
    if FLAGS.record:
      with tempfile.TemporaryDirectory() as out:
        score(space, out)
        os.makedirs(RECORD, exist_ok=True)
        os.replace(os.path.join(out, "scores.csv"), recorded_csv)
      continue
    with tempfile.TemporaryDirectory() as out:
      score(space, out)
      archs, new = read(os.path.join(out, "scores.csv"))
    old_archs, old = read(recorded_csv)
    if archs != old_archs:
      print(f"{space}: the architectures differ from the record", flush=True)
      failed = True
      continue
    report[space] = {}
    for proxy, values in old.items():
      got = new.get(proxy)
      if got is None:
        report[space][proxy] = {"missing": True}
        failed = True
        continue
      same = (got == values) | (np.isnan(got) & np.isnan(values))
      scale = np.maximum(np.abs(values), 1e-30)
      finite = np.isfinite(values) & np.isfinite(got)
      rel = float(np.max(np.abs(got - values)[finite] / scale[finite])) if finite.any() else 0.0
      report[space][proxy] = {"differ": int((~same).sum()), "of": len(values), "max_rel": rel}
      failed |= bool((~same).any())
      print(f"{space:20s} {proxy:24s} differ {int((~same).sum()):3d}/{len(values)}  max rel {rel:.3g}")
  if not FLAGS.record:
    os.makedirs(os.path.dirname(FLAGS.out), exist_ok=True)
    with open(FLAGS.out, "w") as f:
      json.dump(report, f, indent=1)
    print("bit-identical" if not failed else "SCORES CHANGED", flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
  app.run(main)
