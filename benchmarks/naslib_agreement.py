"""Arch-by-arch agreement of our proxies with NASLib's stored scores on its 724 NB201 cells.

NASLib (automl/NASLib, ``naslib/data/zc_nasbench201.json``) stores, for 724 NAS-Bench-201 cells,
each zero-cost proxy computed by the zero-cost-nas PyTorch code on one batch of real CIFAR-10
images. We score the same cells with the same proxies and report the Spearman rank correlation
between our score and theirs, cell by cell (and each one's Spearman against NASLib's accuracy).

    python benchmarks/naslib_agreement.py \
      --naslib=../shared/data/nb201/automl_NASLib/zc_nasbench201_cifar10.DERIVED.json \
      --data=../shared/data/images/YoongiKim_CIFAR-10-images_test.DERIVED.npz \
      --out=benchmarks/results/naslib_agreement.json
"""

import json
import os
import time

from absl import app, flags
import numpy as np
import tqdm

from rznas_jax import correlation, data as data_lib, scoring
from rznas_jax.spaces import nb201

_HERE = os.path.dirname(os.path.abspath(__file__))
_SHARED = os.path.join(os.path.dirname(os.path.dirname(_HERE)), "shared", "data")

flags.DEFINE_string("naslib", os.path.join(_SHARED, "nb201/automl_NASLib/zc_nasbench201_cifar10.DERIVED.json"),
                    "NASLib's zc_nasbench201 JSON (cifar10 part).")
flags.DEFINE_string("data", os.path.join(_SHARED, "images/YoongiKim_CIFAR-10-images_test.DERIVED.npz"),
                    "Real CIFAR-10 images (.npz or python-pickle directory).")
flags.DEFINE_list("proxies", ["params", "flops", "synflow", "naswot", "grad_norm", "snip", "fisher", "jacov", "grasp"],
                  "Our proxies to compare.")
flags.DEFINE_integer("batch_size", 64, "Images per batch.")
flags.DEFINE_integer("seed", 0, "Seed for init and batch.")
flags.DEFINE_integer("limit", 0, "Score only the first N cells (0: all 724).")
flags.DEFINE_string("strategy", "auto", "Scoring strategy.")
flags.DEFINE_string("out", os.path.join(_HERE, "results", "naslib_agreement.json"), "Output JSON.")
FLAGS = flags.FLAGS

# Our name -> NASLib's key.
NASLIB_NAME = {"naswot": "nwot"}
NASLIB_OPS = {0: "skip_connect", 1: "none", 2: "nor_conv_3x3", 3: "nor_conv_1x1", 4: "avg_pool_3x3"}


def load_naslib(path):
  with open(path) as f:
    entries = json.load(f)["cifar10"]
  archs, rows = [], []
  for key, entry in entries.items():
    e = [NASLIB_OPS[int(t)] for t in key.strip("()").split(",")]
    archs.append(nb201.Arch((e[0], e[1], e[3], e[2], e[4], e[5])))
    rows.append(entry)
  return archs, rows


def main(_):
  archs, rows = load_naslib(FLAGS.naslib)
  if FLAGS.limit:
    archs, rows = archs[:FLAGS.limit], rows[:FLAGS.limit]
  images = data_lib.load_images(FLAGS.data)
  acc = np.array([r["val_accuracy"] for r in rows])
  results = {"settings": {k: FLAGS[k].value for k in ("batch_size", "seed", "strategy", "data")},
             "num_archs": len(archs), "proxies": {}}
  for proxy in FLAGS.proxies:
    scorer = scoring.NB201Scorer([proxy], images=images, batch_size=FLAGS.batch_size, seed=FLAGS.seed,
                                 strategy=FLAGS.strategy)
    t0 = time.perf_counter()
    with tqdm.tqdm(total=len(archs), desc=proxy) as bar:
      ours = scorer.score(archs, progress=bar.update)[proxy]
    seconds = time.perf_counter() - t0
    theirs = np.array([r[NASLIB_NAME.get(proxy, proxy)]["score"] for r in rows])
    finite = np.isfinite(ours) & np.isfinite(theirs)
    entry = {
        "spearman_vs_naslib": correlation.spearman(ours[finite], theirs[finite]),
        "spearman_ours_vs_acc": correlation.spearman(ours[finite], acc[finite]),
        "spearman_naslib_vs_acc": correlation.spearman(theirs[finite], acc[finite]),
        "non_finite": int((~finite).sum()),
        "seconds": seconds,
        "compile_seconds": scorer.compile_seconds.get(proxy),
    }
    results["proxies"][proxy] = entry
    print(f"{proxy:12s} rho(ours, NASLib)={entry['spearman_vs_naslib']:.3f}  "
          f"rho(ours, acc)={entry['spearman_ours_vs_acc']:.3f}  rho(NASLib, acc)={entry['spearman_naslib_vs_acc']:.3f}  "
          f"{seconds:.0f}s", flush=True)
    os.makedirs(os.path.dirname(os.path.abspath(FLAGS.out)), exist_ok=True)
    with open(FLAGS.out, "w") as f:
      json.dump(results, f, indent=2)


if __name__ == "__main__":
  app.run(main)
