r"""Choose a rank-aggregated fitness on one sample of NB201 cells, report it on another.

Reads two ``launch.correlate`` output folders (their ``scores.csv``: one column per proxy and the
``accuracy_<dataset>`` columns), both scored with the same proxies:

* on the **selection** folder, a greedy forward search over the proxies' columns picks the
  aggregate (``rank:`` log aggregation, and ``rank_linear:``) with the highest mean Spearman rho over
  the three datasets (CIFAR-10, CIFAR-100, ImageNet16-120), adding one component at a time while
  the mean rises;
* on the **report** folder (other cells, other seed), it reports every single proxy, ``az_nas``
  and the chosen aggregates: Spearman rho and Kendall tau per dataset, the mean test accuracy of
  the top-10 cells by score and the best test accuracy among the top-50.

Aggregates are ranked among the cells of each folder (the reference set of ``launch.correlate``),
with `rznas_jax.fitness`, the code the search uses.

    python -m launch.correlate --space=nb201 --proxies=az_nas,zico,naswot,synflow,jacov,params \
        --num_archs=500 --seed=1 --data=CIFAR.npz --out=/tmp/agg/select_seed1
    python -m launch.correlate ... --num_archs=1000 --seed=0 --out=/tmp/agg/report_seed0
    python benchmarks/aggregate_fitness.py --select=/tmp/agg/select_seed1 \
        --report=/tmp/agg/report_seed0 --out=benchmarks/results/aggregate_fitness.json
"""

import json
import os

from absl import app, flags
import numpy as np

from rznas_jax import correlation
from rznas_jax import fitness
from rznas_jax import results

flags.DEFINE_list("select", None, "launch.correlate folder(s) of the same cells (their columns "
                  "merged; a later folder's column wins) the aggregate is chosen on.", required=True)
flags.DEFINE_list("report", None, "launch.correlate folder(s) of other cells it is reported on.",
                  required=True)
flags.DEFINE_list("pool", None, "Components the greedy search may use (default: every column).")
flags.DEFINE_list("extra", [], "More aggregates to report (e.g. a cheaper one for searches).")
flags.DEFINE_string("out", "benchmarks/results/aggregate_fitness.json", "JSON written here.")
flags.DEFINE_integer("max_components", 6, "Largest aggregate the greedy search builds.")
FLAGS = flags.FLAGS
DATASETS = ("cifar10", "cifar100", "imagenet16-120")


def _load(folders):
  """(archs, {proxy: scores}, {dataset: accuracy}) of one or more folders over the same cells."""
  archs, columns, acc = None, {}, None
  for folder in folders:
    a, cols = results.read_scores_csv(os.path.join(folder, "scores.csv"))
    if archs is not None and a != archs:
      raise ValueError(f"{folder} scored other cells than {folders[0]}; merge only the same sample.")
    archs = a
    acc = {d: cols.pop(f"accuracy_{d}") for d in DATASETS}
    columns.update(cols)
  return archs, columns, acc


def _stats(values, acc):
  out = {}
  order = np.argsort(-np.nan_to_num(np.asarray(values, np.float64), nan=-np.inf), kind="stable")
  for d in DATASETS:
    out[d] = {"spearman": correlation.spearman_rho(values, acc[d], nan_policy="lowest"),
              "kendall": correlation.kendall_tau(values, acc[d], nan_policy="lowest"),
              "top10_mean_acc": float(np.mean(acc[d][order[:10]])),
              "top50_best_acc": float(np.max(acc[d][order[:50]]))}
  return out


def _mean_rho(values, acc):
  return float(np.mean([correlation.spearman_rho(values, acc[d], nan_policy="lowest") for d in DATASETS]))


def greedy(columns, acc, kind, max_components):
  """Forward selection of an aggregate's components by mean rho; returns (name, trace)."""
  chosen, best, trace = [], -np.inf, []
  pool = [c for c in columns if c not in fitness.NAMED and not c.startswith(("rank:", "rank_linear:"))
          and (FLAGS.pool is None or c in FLAGS.pool)]
  while len(chosen) < max_components:
    scored = []
    for c in pool:
      if c in chosen:
        continue
      comps = chosen + [c]
      if len(comps) == 1:
        value = _mean_rho(columns[c], acc)
      else:
        f = fitness.Fitness("x", tuple(comps), kind)
        value = _mean_rho(fitness.aggregate(f, columns), acc)
      scored.append((value, c))
    if not scored:
      break
    value, c = max(scored)
    if value <= best:
      break
    chosen.append(c)
    best = value
    trace.append({"components": list(chosen), "mean_rho": value})
  prefix = "rank:" if kind == fitness.LOG else "rank_linear:"
  return prefix + "+".join(chosen), trace


def main(argv):
  del argv
  _, sel_cols, sel_acc = _load(FLAGS.select)
  rep_archs, rep_cols, rep_acc = _load(FLAGS.report)
  names = sorted(set(sel_cols) & set(rep_cols))
  sel_cols = {n: sel_cols[n] for n in names}
  rep_cols = {n: rep_cols[n] for n in names}
  chosen = {}
  for kind in (fitness.LOG, fitness.LINEAR):
    name, trace = greedy(sel_cols, sel_acc, kind, FLAGS.max_components)
    chosen[name] = trace
    print(f"chosen on {','.join(FLAGS.select)} ({kind}): {name}")
    for step in trace:
      print(f"   {'+'.join(step['components']):<70} mean rho {step['mean_rho']:.4f}")
  valid = [n for n in names if "+" not in n and ":" not in n and n not in fitness.NAMED]
  fitnesses = [fitness.parse(n, valid) for n in ["az_nas", *chosen, *FLAGS.extra]
               if all(c in rep_cols for c in fitness.parse(n, valid).components)]
  rep_cols = fitness.with_aggregates(fitnesses, rep_cols)
  report = {n: _stats(v, rep_acc) for n, v in rep_cols.items()}
  header = f"{'fitness':<62}" + "".join(f"{d[:8]:>9} rho/tau" for d in DATASETS) + "   top10 C10/C100/IN16   top50-best"
  print(f"\nreport on {','.join(FLAGS.report)} ({len(rep_archs)} cells)\n{header}")
  for n in sorted(report, key=lambda n: -np.mean([report[n][d]["spearman"] for d in DATASETS])):
    r = report[n]
    print(f"{n:<62}" + "".join(f"  {r[d]['spearman']:.3f}/{r[d]['kendall']:.3f}  " for d in DATASETS)
          + "  " + "/".join(f"{r[d]['top10_mean_acc']:.2f}" for d in DATASETS)
          + "  " + "/".join(f"{r[d]['top50_best_acc']:.2f}" for d in DATASETS))
  os.makedirs(os.path.dirname(os.path.abspath(FLAGS.out)), exist_ok=True)
  results.write_json(FLAGS.out, {"select": FLAGS.select, "report": FLAGS.report,
                                 "num_report_cells": len(rep_archs), "chosen": chosen,
                                 "report": report})
  print(f"\nwrote {FLAGS.out}")


if __name__ == "__main__":
  app.run(main)
