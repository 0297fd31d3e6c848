"""Our NB201 proxies against the published figures: correlation with accuracy, and NASLib's scores.

One run scores a set of cells with one batch of 64 real CIFAR-10 images and then reports

* Spearman rho and Kendall tau against the NAS-Bench-201 test accuracies (CIFAR-10, CIFAR-100,
  ImageNet16-120) over every scored cell, beside the published rho of the zero-cost-nas paper
  (``published_spearman_nb201.csv``) for grad_norm, snip, grasp, fisher, synflow and jacov. A NaN
  score ranks lowest, as NASLib and ``launch/correlate.py`` rank it; the CIFAR-10 rho without
  those cells is reported beside it;
* for the 724 cells that NASLib stores with its own PyTorch scores, the Spearman rho between our
  score and theirs, cell by cell.

The cells are NASLib's 724 (drawn at random by NASLib) plus ``--extra`` cells drawn uniformly
with ``--seed`` from the rest, so one scoring pass serves both comparisons. Scores are appended to
``OUT/scores-<proxies>.csv`` in chunks, and a rerun resumes where the last one stopped. Runs
with different ``--proxies`` write different files and ``--report_only`` merges them, so a slow
proxy can be scored in a run of its own.

    python benchmarks/nb201_reference.py --out=benchmarks/results/nb201_reference
"""

import csv
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
flags.DEFINE_string("benchmark", os.path.join(_SHARED, "nb201/v-tao_nats-bench-landscape/nats_bench.csv"),
                    "NAS-Bench-201 table in the nats_bench.csv format.")
flags.DEFINE_string("published", os.path.join(_SHARED, "nb201/SamsungLabs_zero-cost-nas/published_spearman_nb201.csv"),
                    "Published |Spearman| table of the zero-cost-nas paper.")
flags.DEFINE_string("data", os.path.join(_SHARED, "images/YoongiKim_CIFAR-10-images_test.DERIVED.npz"),
                    "Real CIFAR-10 images (.npz or python-pickle directory).")
flags.DEFINE_list("proxies", ["synflow", "naswot", "grad_norm", "snip", "fisher", "jacov", "zico", "grasp",
                              "params", "flops"], "Proxies.")
flags.DEFINE_integer("extra", 276, "Random cells scored besides NASLib's 724.")
flags.DEFINE_integer("batch_size", 64, "Images per batch.")
flags.DEFINE_integer("seed", 0, "Seed for the init, the batch and the extra cells.")
flags.DEFINE_integer("chunk", 25, "Cells scored between two appends to the scores file.")
flags.DEFINE_string("strategy", "auto", "Scoring strategy.")
flags.DEFINE_bool("report_only", False, "Report on the cells already scored in OUT; score none.")
flags.DEFINE_string("out", os.path.join(_HERE, "results", "nb201_reference"), "Output folder.")
FLAGS = flags.FLAGS

NASLIB_NAME = {"naswot": "nwot", "jacov": "jacov", "fisher_unweighted": "fisher"}
PUBLISHED_NAME = {"jacov": "jacob_cov", "fisher_unweighted": "fisher"}
NASLIB_OPS = {0: "skip_connect", 1: "none", 2: "nor_conv_3x3", 3: "nor_conv_1x1", 4: "avg_pool_3x3"}
DATASETS = ("cifar10", "cifar100", "imagenet16-120")


def load_naslib(path):
  with open(path) as f:
    entries = json.load(f)["cifar10"]
  out = {}
  for key, entry in entries.items():
    e = [NASLIB_OPS[int(t)] for t in key.strip("()").split(",")]
    out[nb201.Arch((e[0], e[1], e[3], e[2], e[4], e[5]))] = entry
  return out


def load_published(path):
  with open(path) as f:
    rows = list(csv.DictReader(f))
  names = {"CIFAR10": "cifar10", "CIFAR100": "cifar100", "ImageNet16-120": "imagenet16-120"}
  return {names[r["dataset"]]: {k: float(v) for k, v in r.items() if k != "dataset"} for r in rows}


def read_done(out_dir):
  """Every score in ``out_dir/scores*.csv``: {genotype: {proxy: score}} (runs with different
  proxy lists write different files; a report merges them)."""
  done: dict[str, dict[str, float]] = {}
  for name in sorted(os.listdir(out_dir)):
    if name.startswith("scores") and name.endswith(".csv"):
      with open(os.path.join(out_dir, name)) as f:
        for r in csv.DictReader(f):
          done.setdefault(r["arch"], {}).update({k: float(v) for k, v in r.items() if k != "arch"})
  return done


def main(_):
  os.makedirs(FLAGS.out, exist_ok=True)
  naslib = load_naslib(FLAGS.naslib)
  table = nb201.BenchmarkTable.load(FLAGS.benchmark)
  rng = np.random.default_rng(FLAGS.seed)
  rest = [a for a in table.archs if a not in naslib]
  extra = [rest[i] for i in rng.choice(len(rest), FLAGS.extra, replace=False)]
  archs = list(naslib) + extra
  csv_path = os.path.join(FLAGS.out, f"scores-{'-'.join(FLAGS.proxies)}.csv")
  done = read_done(FLAGS.out)
  scored = lambda a: set(FLAGS.proxies) <= set(done.get(a.genotype, ()))  # by every proxy asked for
  todo = [] if FLAGS.report_only else [a for a in archs if not scored(a)]
  images = data_lib.load_images(FLAGS.data)
  scorer = scoring.NB201Scorer(FLAGS.proxies, images=images, batch_size=FLAGS.batch_size,
                               seed=FLAGS.seed, strategy=FLAGS.strategy)
  start = time.perf_counter()
  new_file = not os.path.exists(csv_path)
  with open(csv_path, "a", newline="") as f, tqdm.tqdm(total=len(todo), desc="cells") as bar:
    writer = csv.writer(f)
    if new_file:
      writer.writerow(["arch", *FLAGS.proxies])
    for i in range(0, len(todo), FLAGS.chunk):
      chunk = todo[i:i + FLAGS.chunk]
      scores = scorer.score(chunk)
      for j, a in enumerate(chunk):
        writer.writerow([a.genotype, *(repr(float(scores[p][j])) for p in FLAGS.proxies)])
        done.setdefault(a.genotype, {}).update({p: float(scores[p][j]) for p in FLAGS.proxies})
      f.flush()
      bar.update(len(chunk))
  seconds = time.perf_counter() - start

  published = load_published(FLAGS.published)
  # every cell with every proxy, unless a run was cut short
  archs = [a for a in archs if scored(a)]
  naslib = {a: e for a, e in naslib.items() if scored(a)}
  ours = {p: np.array([done[a.genotype][p] for a in archs]) for p in FLAGS.proxies}
  acc = {d: table.lookup(archs, d) for d in DATASETS}
  report = {"settings": {"batch_size": FLAGS.batch_size, "seed": FLAGS.seed, "strategy": scorer.strategy,
                         "data": FLAGS.data, "num_archs": len(archs), "naslib_archs": len(naslib),
                         "proxies": FLAGS.proxies},
            "seconds_this_run": seconds, "compile_seconds": scorer.compile_seconds, "proxies": {}}
  print(f"{len(archs)} cells scored, {len(naslib)} of them NASLib's")
  lines = ["| proxy | rho C10 | pub. C10 | rho C100 | pub. C100 | rho IN16 | pub. IN16 | tau C10 | "
           "rho vs NASLib | NaN scores | rho C10, NaN left out |", "|---" * 11 + "|"]
  for p in FLAGS.proxies:
    entry = {}
    for d in DATASETS:  # NaN and -inf rank lowest (NASLib's rule, launch.correlate's default)
      entry[d] = {"spearman": correlation.spearman_rho(ours[p], acc[d], nan_policy="lowest"),
                  "kendall": correlation.kendall_tau(ours[p], acc[d], nan_policy="lowest"),
                  "spearman_nan_omitted": correlation.spearman_rho(ours[p], acc[d], nan_policy="omit"),
                  "published_abs_spearman": published[d].get(PUBLISHED_NAME.get(p, p))}
    theirs_key = NASLIB_NAME.get(p, p)
    if all(theirs_key in e for e in naslib.values()):
      mine = np.array([done[a.genotype][p] for a in naslib])
      theirs = np.array([e[theirs_key]["score"] for e in naslib.values()])
      ok = np.isfinite(mine) & np.isfinite(theirs)
      entry["spearman_vs_naslib"] = correlation.spearman_rho(mine[ok], theirs[ok])
    entry["non_finite"] = int((~np.isfinite(ours[p])).sum())
    entry["nan"] = int(np.isnan(ours[p]).sum())
    report["proxies"][p] = entry
    fmt = lambda v: "–" if v is None else f"{v:.3f}"
    lines.append(f"| {p} | " + " | ".join(
        f"{fmt(entry[d]['spearman'])} | {fmt(entry[d]['published_abs_spearman'])}" for d in DATASETS)
        + f" | {fmt(entry['cifar10']['kendall'])} | {fmt(entry.get('spearman_vs_naslib'))} | "
        f"{entry['nan']} | {fmt(entry['cifar10']['spearman_nan_omitted'])} |")
  table_md = "\n".join(lines)
  print(table_md)
  with open(os.path.join(FLAGS.out, "report.json"), "w") as f:
    json.dump(report, f, indent=2)
  with open(os.path.join(FLAGS.out, "report.md"), "w") as f:
    f.write(table_md + "\n")


if __name__ == "__main__":
  app.run(main)
