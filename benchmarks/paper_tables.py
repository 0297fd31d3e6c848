r"""The paper's NB201 protocol, our Table 2 beside the paper's, and Table 3's status, as markdown.

For each proxy of the paper (grasp, grad_norm, synflow, zen, zico) and each seed (3), two
searches: the original zero-cost evolutionary search (random mutation: the paper's "X" rows) and
RZ-NAS ("Ours(X)") with the offline agent as the LLM, or with recorded LLM logs (``--llm=replay:``).
The found cells' NAS-Bench-201 test accuracies (mean ± std over seeds) are printed beside the
paper's Table 2 in one markdown table, written to ``--out/paper_tables.md`` (and the numbers to
``paper_tables.json``). Table 3 cannot be reproduced as written; the output says why.

Three settings (``--mode``); any of their values can be overridden by a flag:

* ``reduced`` (default): the five proxies, 3 seeds, a smaller network (8 channels, 1 cell per
  stage), batch 16, T = 100, N = 20: about 15 minutes on a 2-core CPU. NOT the paper's setting: the table says so.
* ``full``: the paper's protocol as far as it is known: the NB201 network (16 channels, 5 cells
  per stage), batch 64, T = 1500, N = 100 (days on a CPU; meant for an accelerator).
* ``quick`` (or ``--quick``): a smoke run of the whole pipeline: synflow and grad_norm, seed 0,
  4 channels, 16x16 inputs, batch 8, T = 8, N = 6 (about a minute, mostly compiling).

The estimated wall time is printed before anything runs. Runs are kept under
``--out/runs/<setting>/<proxy>/<method>/seed<k>`` and resumed or reused on a rerun.

    nice python benchmarks/paper_tables.py                      # reduced setting
    python benchmarks/paper_tables.py --quick
    python benchmarks/paper_tables.py --mode=full --proxies=synflow \
        --llm='replay:logs/{proxy}/seed{seed}/llm_log.jsonl'    # recorded GPT-4o/Gemini logs
"""

import os
import sys
import time

from absl import app
from absl import flags

from rznas_jax import results
from rznas_jax.report import paper_tables as tables

_HERE = os.path.dirname(os.path.abspath(__file__))
_SHARED = os.path.join(os.path.dirname(os.path.dirname(_HERE)), "shared", "data")

# name: (channels, cells_per_stage, batch_size, dataset, iterations, population, proxies, seeds)
MODES = {
    "quick": (4, 1, 8, "imagenet16-120", 8, 6, ("synflow", "grad_norm"), (0,)),
    "reduced": (8, 1, 16, "cifar10", 100, 20, tables.PROXIES, (0, 1, 2)),
    "full": (16, 5, 64, "cifar10", 1500, 100, tables.PROXIES, (0, 1, 2)),
}
# Measured on this project's 2-core CPU with other work running, for 8 channels, 1 cell per
# stage, batch 16, 32x32 inputs, in seconds: (first compile; tracing and init of each later run,
# with JAX's persistent cache warm; scoring one cell).
REFERENCE_COSTS = {"synflow": (20.0, 4.0, 1 / 43.5), "grad_norm": (20.0, 5.0, 1 / 22.7),
                   "grasp": (80.0, 30.0, 1 / 1.8), "zen": (21.0, 4.0, 1 / 29.7),
                   "zico": (27.0, 11.0, 1 / 7.0)}
REFERENCE_SETTING = (8, 1, 16, 32)

flags.DEFINE_enum("mode", "reduced", list(MODES), "Setting: quick, reduced or full (see the docstring).")
flags.DEFINE_bool("quick", False, "Same as --mode=quick.")
flags.DEFINE_list("proxies", None, "Proxies, overriding the mode's (quick: synflow, grad_norm; "
                  "else the paper's five).")
flags.DEFINE_list("seeds", None, "Seeds, overriding the mode's (quick: 0; else 0, 1, 2 as the "
                  "paper's 3 runs).")
flags.DEFINE_list("methods", list(tables.METHODS), "random (the original zero-cost EA), ours (RZ-NAS).")
flags.DEFINE_string("llm", "offline", "LLM of 'ours': 'offline' (the built-in agent), or "
                    "'replay:PATH' where PATH may hold {proxy} and {seed}.")
flags.DEFINE_integer("iterations", None, "T, overriding the mode's.", lower_bound=1)
flags.DEFINE_integer("population", None, "N, overriding the mode's.", lower_bound=2)
flags.DEFINE_integer("channels", None, "Network channels, overriding the mode's.", lower_bound=1)
flags.DEFINE_integer("cells_per_stage", None, "Cells per stage, overriding the mode's.", lower_bound=1)
flags.DEFINE_integer("batch_size", None, "Proxy batch, overriding the mode's.", lower_bound=1)
flags.DEFINE_string("dataset", None, "Network built for cifar10, cifar100 or imagenet16-120.")
flags.DEFINE_string("data", "gaussian", "Proxy images: 'gaussian' or a CIFAR folder / .npz file.")
flags.DEFINE_string("benchmark", os.path.join(_SHARED, "nb201", "v-tao_nats-bench-landscape",
                                              "nats_bench.csv"), "NB201 table (nats_bench.csv).")
flags.DEFINE_string("out", os.path.join(_HERE, "results", "paper_tables"), "Output folder.")
flags.DEFINE_bool("reports", False, "Also write each run's HTML report (launch/report.py).")
FLAGS = flags.FLAGS


def setting() -> dict:
  """The run's setting: the mode's values with the flags' overrides."""
  mode = "quick" if FLAGS.quick else FLAGS.mode
  channels, cells, batch, dataset, iterations, population, proxies, seeds = MODES[mode]
  pick = lambda flag, default: default if FLAGS[flag].value is None else FLAGS[flag].value
  return {"mode": mode, "channels": pick("channels", channels),
          "cells_per_stage": pick("cells_per_stage", cells), "batch_size": pick("batch_size", batch),
          "dataset": pick("dataset", dataset), "iterations": pick("iterations", iterations),
          "population": pick("population", population),
          "seeds": [int(x) for x in pick("seeds", seeds)], "proxies": list(pick("proxies", proxies)),
          "methods": list(FLAGS.methods), "llm": FLAGS.llm,
          "data": FLAGS.data}


def tag(s: dict) -> str:
  return (f"c{s['channels']}x{s['cells_per_stage']}_b{s['batch_size']}_{s['dataset']}"
          f"_T{s['iterations']}_N{s['population']}")


def estimate_seconds(s: dict) -> float:
  """A rough wall-time estimate (within a factor of about 2) from `REFERENCE_COSTS`.

  Scoring a cell scales with channels², cells and pixels × batch (never below a fifth of the
  reference: small networks are overhead-bound); compiling and tracing scale with the cells. A
  search scores its N initial cells and about 0.9 T distinct children; each proxy compiles once
  (JAX's persistent cache serves the later runs, which still trace and initialise).
  """
  resolution = 16 if s["dataset"] == "imagenet16-120" else 32
  c0, k0, b0, r0 = REFERENCE_SETTING
  graph = (3 * s["cells_per_stage"] + 2) / (3 * k0 + 2)
  work = (s["channels"] / c0) ** 2 * graph * (resolution / r0) ** 2 * s["batch_size"] / b0
  cells = s["population"] + 0.9 * s["iterations"]
  runs = len(s["seeds"]) * len(s["methods"])
  total = 0.0
  for proxy in s["proxies"]:
    compile_s, per_run, per_cell = REFERENCE_COSTS.get(proxy, (30.0, 10.0, 1 / 5.0))
    total += graph * (compile_s + (runs - 1) * per_run) + runs * cells * per_cell * max(work, 0.2)
  total += len(s["proxies"]) * len(s["seeds"]) * s["iterations"] * 0.02  # the offline agent
  return total


def fail(message: str) -> None:
  """One line on stderr and exit code 2, as the launchers do for bad input."""
  sys.stderr.write(f"error: {' '.join(str(message).split())}\n")
  sys.exit(2)


def _config(s: dict, proxy: str, method: str, seed: int, out: str):
  from rznas_jax.search import config as config_lib  # pylint: disable=g-import-not-at-top
  config = config_lib.default_config()  # launch/configs/nb201.py's values, set below
  config.space = "nb201"
  config.proxy = proxy
  config.seed = seed
  config.dataset = s["dataset"]
  config.data = s["data"]
  config.batch_size = s["batch_size"]
  config.benchmark = FLAGS.benchmark
  config.compilation_cache = os.path.join(out, "jax_cache")
  config.nb201.channels = s["channels"]
  config.nb201.cells_per_stage = s["cells_per_stage"]
  config.search.iterations = s["iterations"]
  config.search.population = s["population"]
  config.search.mutation = "random" if method == "random" else "llm"
  llm = s["llm"]
  config.llm.backend = llm.format(proxy=proxy, seed=seed) if llm.startswith("replay:") else llm
  return config


def _duration(seconds: float) -> str:
  if seconds < 120:
    return f"{seconds:.0f} s"
  if seconds < 7200:
    return f"{seconds / 60:.1f} min"
  return f"{seconds / 3600:.1f} h"


def header(s: dict, estimate: float) -> str:
  paper = s["mode"] == "full"
  size = (f"NB201 network with {s['channels']} channels and {s['cells_per_stage']} cell(s) per stage "
          f"for {s['dataset']}, proxy batch {s['batch_size']} ({s['data']} images), T = {s['iterations']}, "
          f"N = {s['population']}, seeds {', '.join(map(str, s['seeds']))}")
  llm = "the offline agent" if s["llm"] == "offline" else s["llm"]
  lines = [f"# RZ-NAS on NAS-Bench-201: the paper's Table 2 beside ours ({s['mode']} setting)", "",
           f"Setting: {size}. \"Ours\" uses {llm} as the LLM; \"X\" rows are random-mutation "
           "searches. Test accuracies are NATS-Bench TSS (200 epochs) lookups of each search's "
           "answer, mean ± std (ddof 0) over seeds; the benchmark file has no validation "
           "accuracies, so the paper's valid columns are left out."]
  if not paper:
    lines.append("**This is not the paper's setting** (NB201 network: 16 channels, 5 cells per "
                 "stage; T = 1500, N = 100, GPT-4o): proxy scores of a smaller network and a "
                 "shorter search; compare trends, not digits. `--mode=full` runs the paper's.")
  lines.append(f"Estimated wall time: {_duration(estimate)}.")
  return "\n".join(lines) + "\n"


def main(argv):
  del argv
  s = setting()
  unknown = [m for m in s["methods"] if m not in tables.METHODS]
  if unknown:
    fail(f"unknown --methods {', '.join(unknown)}; valid: {', '.join(tables.METHODS)}.")
  if not os.path.isfile(FLAGS.benchmark):
    fail(f"the benchmark table {FLAGS.benchmark!r} does not exist; give --benchmark=nats_bench.csv.")
  from rznas_jax import search  # pylint: disable=g-import-not-at-top  (JAX: after the checks)
  estimate = estimate_seconds(s)
  print(header(s, estimate), flush=True)
  out = FLAGS.out
  runs_dir = os.path.join(out, "runs", tag(s))
  start = time.perf_counter()
  accuracies: dict = {}
  records = []
  todo = [(p, m, seed) for p in s["proxies"] for m in s["methods"] for seed in s["seeds"]]
  for k, (proxy, method, seed) in enumerate(todo):
    workdir = os.path.join(runs_dir, proxy, method, f"seed{seed}")
    t0 = time.perf_counter()
    try:
      summary = search.run(_config(s, proxy, method, seed, out), workdir, progress=False)
    except (ValueError, OSError, search.SearchAborted) as e:  # bad input or LLM log: one line
      fail(f"{proxy} {method} seed {seed} ({workdir}): {e}")
    acc = summary["test_accuracy"]
    for d in tables.DATASETS:
      accuracies.setdefault((proxy, method), {}).setdefault(d, []).append(acc[d])
    records.append({"proxy": proxy, "method": method, "seed": seed, "workdir": workdir,
                    "best_arch": summary["best_arch"], "best_score": summary["best_score"],
                    "evaluations": summary["evaluations"], "test_accuracy": acc,
                    "invalid_reply_rate": summary["invalid_reply_rate"],
                    "run_wall_seconds": summary["wall_seconds"]})
    if FLAGS.reports:
      from rznas_jax import report  # pylint: disable=g-import-not-at-top
      report.write_report(workdir)
    print(f"[{k + 1}/{len(todo)}] {proxy:9s} {method:6s} seed {seed}: " +
          ", ".join(f"{tables.DATASET_HEADERS[d]} {acc[d]:.2f}" for d in tables.DATASETS) +
          f"; {summary['evaluations']} evaluations, {time.perf_counter() - t0:.0f} s "
          f"(elapsed {_duration(time.perf_counter() - start)})", flush=True)
  wall = time.perf_counter() - start
  label = "ours" if s["mode"] == "full" else f"ours, {s['mode']}"
  text = (header(s, estimate) + f"Measured wall time: {_duration(wall)} ({wall:.0f} s).\n\n"
          "## Table 2: NB201 test accuracy (%)\n\n" +
          tables.table2_markdown(accuracies, s["proxies"], ours_label=label) +
          "\n## Table 3: rank correlation\n\n" + tables.table3_markdown(s["proxies"]))
  os.makedirs(out, exist_ok=True)
  results.write_atomic(os.path.join(out, "paper_tables.md"), text)
  results.write_json(os.path.join(out, "paper_tables.json"),
                     {"setting": s, "estimated_seconds": estimate, "wall_seconds": wall, "runs": records})
  print("\n" + text)
  print(f"written to {os.path.join(out, 'paper_tables.md')}")
  sys.stdout.flush()


def parse_flags(argv: list[str]) -> list[str]:
  """absl's parser; logging stays at WARNING unless --verbosity is given (no INFO line per run)."""
  argv = FLAGS(argv)
  if FLAGS["verbosity"].using_default_value:
    FLAGS.verbosity = -1
  return argv


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
