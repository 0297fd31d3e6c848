"""DARTS on NAS-Bench-301: our proxy scores against NASLib's stored ones and against the surrogate.

Reads ``scores.csv`` of one or more ``launch.correlate --space=darts`` runs (each on some of the
725 genotypes of NASLib's ``zc_nasbench301.json``) and prints, per proxy:

* the per-genotype Spearman rho between our score and NASLib's stored score of the same proxy
  (NASLib's ``nwot`` is our ``naswot``; its ``synflow`` is stored as a log, which ranks the same);
* Spearman rho and Kendall tau of our score and of NASLib's stored score against the NAS-Bench-301
  surrogate's predicted CIFAR-10 validation accuracy (a prediction, not a trained result),
  on the same genotypes;
* the same for rank aggregates (sum of log(rank / n), `rznas_jax.fitness`) of ours and of
  NASLib's scores: the chosen default fitness and a greedy forward selection.

    python -m launch.correlate --space=darts --num_archs=all --batch_size=16 \
        --proxies=params,flops,synflow,naswot,grad_norm,snip --data=CIFAR.npz --out=/tmp/nb301/A
    python benchmarks/darts_nb301.py --scores=/tmp/nb301/A,/tmp/nb301/B --out=benchmarks/results/darts_nb301.json
"""

from __future__ import annotations

import csv
import os

from absl import app
from absl import flags
import numpy as np
from scipy import stats

from rznas_jax import fitness
from rznas_jax import results
from rznas_jax import spaces

_SCORES = flags.DEFINE_list("scores", None, "launch.correlate output folders (scores.csv).", required=True)
_TABLE = flags.DEFINE_string("table", None, "zc_nasbench301.json (default: ../shared/data).")
_OUT = flags.DEFINE_string("out", "", "Write the figures as JSON here.")
_DEFAULT = flags.DEFINE_string("aggregate", "rank:naswot+params", "The fitness to report.")

NASLIB_NAMES = {"naswot": "nwot"}  # ours -> NASLib's key


def _read(folder):
  with open(os.path.join(folder, "scores.csv")) as f:
    rows = list(csv.DictReader(f))
  cols = [c for c in rows[0] if c != "arch" and not c.startswith("accuracy_") and ":" not in c]
  return [r["arch"] for r in rows], {c: np.array([float(r[c]) for r in rows]) for c in cols}


def _rank_aggregate(scores, names):
  if len(names) == 1:
    return scores[names[0]]
  return fitness.aggregate(fitness.parse("rank:" + "+".join(names), None), scores)


def _vs(values, acc):
  ok = np.isfinite(values)
  return {"spearman": float(stats.spearmanr(values[ok], acc[ok])[0]),
          "kendall": float(stats.kendalltau(values[ok], acc[ok])[0]), "n": int(ok.sum())}


def main(argv):
  del argv
  space = spaces.get("darts")
  table = space.benchmark(_TABLE.value)
  acc_all = table.accuracy[table.ACCURACY]
  out = {"table": table.source, "note": "accuracy = NAS-Bench-301 surrogate prediction (CIFAR-10 "
         "validation), not a trained result", "proxies": {}, "aggregates": {}}
  groups = []
  for folder in _SCORES.value:
    archs, scores = _read(folder)
    idx = np.array([table.index(a) for a in archs])
    groups.append((folder, idx, scores))
    for name, ours in scores.items():
      key = NASLIB_NAMES.get(name, name)
      acc = acc_all[idx]
      row = {"n": len(idx), "ours_vs_accuracy": _vs(ours, acc), "folder": folder}
      if key in table.stored:
        theirs = table.stored[key][idx]
        row["spearman_ours_vs_naslib"] = float(stats.spearmanr(ours, theirs)[0])
        row["naslib_vs_accuracy"] = _vs(theirs, acc)
      out["proxies"][name] = row
  # Aggregates on the genotypes every folder scored.
  common = set(groups[0][1].tolist())
  for _, idx, _ in groups[1:]:
    common &= set(idx.tolist())
  common = np.array(sorted(common))
  merged = {}
  for _, idx, scores in groups:
    where = {int(i): k for k, i in enumerate(idx)}
    for name, values in scores.items():
      merged[name] = values[[where[int(i)] for i in common]]
  acc = acc_all[common]
  theirs = {n: table.stored[NASLIB_NAMES.get(n, n)][common] for n in merged
            if NASLIB_NAMES.get(n, n) in table.stored}

  def report(names):
    row = {"ours_vs_accuracy": _vs(_rank_aggregate(merged, names), acc), "n": len(common)}
    if all(n in theirs for n in names):
      row["naslib_vs_accuracy"] = _vs(_rank_aggregate(theirs, names), acc)
    return row

  default = _DEFAULT.value[len("rank:"):].split("+")
  if all(n in merged for n in default):
    out["aggregates"][_DEFAULT.value] = report(default)
  chosen, best = [], -1.0  # greedy forward selection on our scores
  while True:
    trials = {n: report(chosen + [n])["ours_vs_accuracy"]["spearman"] for n in merged if n not in chosen}
    if not trials:
      break
    name, rho = max(trials.items(), key=lambda kv: kv[1])
    if rho <= best + 1e-3:
      break
    chosen.append(name)
    best = rho
    out["aggregates"]["rank:" + "+".join(chosen)] = report(chosen)
  out["greedy"] = "rank:" + "+".join(chosen)

  print(f"{'proxy':<12} {'n':>4} {'rho ours~NASLib':>15} {'rho/tau ours~acc':>17} {'rho/tau NASLib~acc':>19}")
  for name, row in out["proxies"].items():
    o = row["ours_vs_accuracy"]
    n = row.get("naslib_vs_accuracy")
    agree = row.get("spearman_ours_vs_naslib")
    theirs_text = "" if n is None else f"{n['spearman']:.3f}/{n['kendall']:.3f}"
    agree_text = "" if agree is None else f"{agree:.3f}"
    print(f"{name:<12} {row['n']:>4} {agree_text:>15} {o['spearman']:>8.3f}/{o['kendall']:.3f} "
          f"{theirs_text:>19}")
  for name, row in out["aggregates"].items():
    o, n = row["ours_vs_accuracy"], row.get("naslib_vs_accuracy")
    print(f"{name:<40} n={row['n']} ours {o['spearman']:.3f}/{o['kendall']:.3f}"
          + ("" if n is None else f"  NASLib {n['spearman']:.3f}/{n['kendall']:.3f}"))
  if _OUT.value:
    results.write_json(_OUT.value, out)


if __name__ == "__main__":
  app.run(main)
