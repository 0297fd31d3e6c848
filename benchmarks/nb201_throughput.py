r"""NAS-Bench-201 scoring throughput per proxy and strategy, as a ratio to PyTorch on this machine.

The full-size network (C=16, N=5 cells per stage, CIFAR-10 32x32, batch 64) scores ``--num_archs``
random cells through ``scoring.NB201Scorer``, one proxy and one strategy at a time (masked_vmap once
per ``--chunk_sizes``), each in its own process: a fresh XLA, and a masked_vmap chunk that runs out
of memory (``--memory_limit_gb``) fails alone. For each it records

* compile seconds: the first call (tracing, XLA compile, and one run of one chunk);
* first-pass archs/s: one pass over every cell. On XLA:CPU the first execution of each
  ``lax.switch`` branch pays a one-off set-up of its library kernels (YNNPACK), so a cell's first
  visit is slower; a search scoring thousands of cells sees the steady rate;
* steady archs/s: the median of ``--repeats`` further passes (``NB201Scorer.score`` end to end,
  Python overhead included);

and the ratio of the steady rate to PyTorch's on this 2-core CPU (``PYTORCH_ARCHS_PER_SECOND``:
grad_norm 1.9, synflow 28, naswot 3.0 archs/s, measured once on another day; docs/scoring.md,
XLA:CPU, has the background). ``benchmarks/nb201_vs_pytorch.py`` measures PyTorch side by side,
in the same run, for the ratios to report. Scores
of every strategy are compared with the first one's. Compile times are cold unless
``--compilation_cache_dir`` is given. The machine load (1-minute average) is recorded around each
measurement: other work on a 2-core machine slows everything.

``--malloc_tuning`` (on by default) keeps freed memory in glibc's heap (one arena, no mmap, no
trimming), so XLA's per-call temporary buffer is not handed back to the kernel and faulted in again
on every call; that alone makes the switch network's gradient ~1.4x faster here.

    nice python benchmarks/nb201_throughput.py                       # ~1-2 h on 2 cores
    python benchmarks/nb201_throughput.py --proxies=synflow --strategies=switch --num_archs=4 \
        --repeats=1 --out=/tmp/smoke.json                             # smoke test
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time

from absl import app
from absl import flags

_HERE = os.path.dirname(os.path.abspath(__file__))
PYTORCH_ARCHS_PER_SECOND = {"grad_norm": 1.9, "synflow": 28.0, "naswot": 3.0}
_MARK = "NB201_THROUGHPUT_RESULT "

flags.DEFINE_list("proxies", ["grad_norm", "synflow", "naswot"],
                  "Registered proxies or aggregates (az_nas, rank:a+b) to measure.")
flags.DEFINE_list("strategies", ["switch", "masked_vmap", "masked"],
                  "Strategies of scoring.NB201Scorer ('auto' is one of these).")
flags.DEFINE_list("chunk_sizes", ["1", "4", "8"], "Cells per vmapped call for masked_vmap.")
flags.DEFINE_integer("num_archs", 32, "Random cells.", lower_bound=1)
flags.DEFINE_integer("repeats", 3, "Timed passes over the cells after the first pass.", lower_bound=1)
flags.DEFINE_integer("batch_size", 64, "Images per proxy batch.", lower_bound=1)
flags.DEFINE_integer("seed", 0, "Seeds the cells, the init and the batch.")
flags.DEFINE_string("compilation_cache_dir", None, "Persistent XLA compilation cache (default: none).")
flags.DEFINE_bool("malloc_tuning", True, "Keep freed memory in glibc's heap (see the docstring).")
flags.DEFINE_float("memory_limit_gb", 12.0, "Data-segment limit of each measuring process.",
                   lower_bound=1)
flags.DEFINE_integer("timeout_s", 4 * 3600, "Limit for each measuring process.", lower_bound=1)
flags.DEFINE_string("out", os.path.join(_HERE, "results", "nb201_throughput.json"), "Output JSON.")
flags.DEFINE_string("worker", None, "Internal: 'proxy,strategy,chunk' measured in this process.")
FLAGS = flags.FLAGS


def measure(proxy: str, strategy: str, chunk_size: int) -> dict:
  """One (proxy, strategy, chunk size) in this process: compile, first pass, steady passes.

  An aggregate (``az_nas``, ``rank:a+b``) is timed end to end: its components scored by one
  scorer that fuses those sharing init, data and dtype into one program, then ranked among the
  cells (`rznas_jax.fitness`).
  """
  import jax  # pylint: disable=g-import-not-at-top  (after mallopt, before any JAX work)
  from rznas_jax import fitness  # pylint: disable=g-import-not-at-top
  from rznas_jax import proxies as proxy_lib  # pylint: disable=g-import-not-at-top
  from rznas_jax import scoring  # pylint: disable=g-import-not-at-top
  from rznas_jax.spaces import nb201  # pylint: disable=g-import-not-at-top

  if FLAGS.compilation_cache_dir:
    jax.config.update("jax_compilation_cache_dir", FLAGS.compilation_cache_dir)
  archs = nb201.random_archs(FLAGS.num_archs, seed=FLAGS.seed)
  fit = fitness.parse(proxy, proxy_lib.names())
  scorer = scoring.NB201Scorer(list(fit.components), scoring.NB201Setting(),
                               batch_size=FLAGS.batch_size, seed=FLAGS.seed, strategy=strategy,
                               chunk_size=chunk_size, fuse=fit.is_aggregate)
  step = chunk_size if strategy == "masked_vmap" else 1
  load = [os.getloadavg()[0]]
  start = time.perf_counter()
  scorer.score(archs[:step])
  first_call = time.perf_counter() - start
  compile_seconds = sum(scorer.compile_seconds.values()) or first_call

  def one_pass():
    start = time.perf_counter()
    scores = fitness.with_aggregates([fit], scorer.score(archs))[proxy]
    return time.perf_counter() - start, scores

  first_pass, scores = one_pass()
  passes = [one_pass()[0] for _ in range(FLAGS.repeats)]
  load.append(os.getloadavg()[0])
  steady = len(archs) / statistics.median(passes)
  torch = PYTORCH_ARCHS_PER_SECOND.get(proxy)
  return {
      "proxy": proxy, "strategy": strategy,
      "chunk_size": chunk_size if strategy == "masked_vmap" else None,
      "compile_seconds": compile_seconds,
      "first_pass_archs_per_second": len(archs) / first_pass,
      "steady_archs_per_second": steady,
      "pass_seconds": passes,
      "pytorch_archs_per_second": torch,
      "ratio_to_pytorch": steady / torch if torch else None,
      "load_average": load,
      "trace_counts": dict(scorer.trace_counts),
      "scores": [float(s) for s in scores],
      "jax_version": jax.__version__, "backend": jax.default_backend(),
  }


def _run_worker(proxy: str, strategy: str, chunk_size: int) -> dict:
  """``measure`` in a child process, so that a crash or an out-of-memory kill is one failed row."""
  argv = [sys.executable, os.path.abspath(__file__), f"--worker={proxy},{strategy},{chunk_size}",
          f"--num_archs={FLAGS.num_archs}", f"--repeats={FLAGS.repeats}",
          f"--batch_size={FLAGS.batch_size}", f"--seed={FLAGS.seed}",
          f"--malloc_tuning={FLAGS.malloc_tuning}", f"--memory_limit_gb={FLAGS.memory_limit_gb}"]
  if FLAGS.compilation_cache_dir:
    argv.append(f"--compilation_cache_dir={FLAGS.compilation_cache_dir}")
  row = {"proxy": proxy, "strategy": strategy,
         "chunk_size": chunk_size if strategy == "masked_vmap" else None}
  try:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=FLAGS.timeout_s, check=False)
  except subprocess.TimeoutExpired:
    return {**row, "error": f"no result within --timeout_s={FLAGS.timeout_s}"}
  for line in done.stdout.splitlines():
    if line.startswith(_MARK):
      return json.loads(line[len(_MARK):])
  tail = " ".join((done.stderr or done.stdout).split()[-60:])
  return {**row, "error": f"exit status {done.returncode}: {tail[-600:]}"}


def _configs():
  """Strategy by strategy (the first, switch by default, is the quickest to measure)."""
  for strategy in FLAGS.strategies:
    for chunk in ([int(c) for c in FLAGS.chunk_sizes] if strategy == "masked_vmap" else [1]):
      for proxy in FLAGS.proxies:
        yield proxy, strategy, chunk


def _agreement(rows: list[dict]) -> None:
  """Adds to each row the largest relative score difference from the proxy's first good row."""
  first = {}
  for row in rows:
    if "scores" not in row:
      continue
    ref = first.setdefault(row["proxy"], row)
    diffs = [abs(a - b) / max(abs(b), 1e-30) for a, b in zip(row["scores"], ref["scores"])]
    row["max_relative_score_difference"] = {"vs": ref["strategy"], "value": max(diffs, default=0.0)}


def print_table(rows: list[dict]) -> None:
  w = max([10, *(len(row["proxy"]) + 2 for row in rows)])
  print(f"\n{'proxy':<{w}}{'strategy':<16}{'compile s':>10}{'first pass':>12}{'steady':>9}"
        f"{'PyTorch':>9}{'ratio':>7}{'load':>11}  (archs/s; load = 1-min average before/after)")
  for row in rows:
    name = row["strategy"] + (f"/{row['chunk_size']}" if row.get("chunk_size") else "")
    if "error" in row:
      print(f"{row['proxy']:<{w}}{name:<16}  error: {row['error'][:100]}")
      continue
    load = "/".join(f"{x:.1f}" for x in row["load_average"])
    ratio = "-" if row["ratio_to_pytorch"] is None else f"{row['ratio_to_pytorch']:.2f}"
    torch = "-" if row["pytorch_archs_per_second"] is None else f"{row['pytorch_archs_per_second']:g}"
    print(f"{row['proxy']:<{w}}{name:<16}{row['compile_seconds']:>10.1f}"
          f"{row['first_pass_archs_per_second']:>12.2f}{row['steady_archs_per_second']:>9.2f}"
          f"{torch:>9}{ratio:>7}{load:>11}")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {argv[1:]}")
  if FLAGS.worker:
    proxy, strategy, chunk = FLAGS.worker.split(",")
    limit = int(FLAGS.memory_limit_gb * 2**30)
    resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    if FLAGS.malloc_tuning:
      from rznas_jax import malloc  # pylint: disable=g-import-not-at-top
      malloc.keep_freed_memory()
    print(_MARK + json.dumps(measure(proxy, strategy, int(chunk))), flush=True)
    return

  from rznas_jax import proxies as proxy_lib  # pylint: disable=g-import-not-at-top
  from rznas_jax import results  # pylint: disable=g-import-not-at-top
  from rznas_jax import scoring  # pylint: disable=g-import-not-at-top

  from rznas_jax import fitness  # pylint: disable=g-import-not-at-top
  for p in FLAGS.proxies:
    fitness.parse(p, proxy_lib.names())  # FitnessError lists the valid names
  for s in FLAGS.strategies:
    scoring.resolve_strategy(s)
  rows = []
  start = time.perf_counter()
  for proxy, strategy, chunk in _configs():
    print(f"{proxy} {strategy}" + (f" chunk {chunk}" if strategy == "masked_vmap" else ""), flush=True)
    rows.append(_run_worker(proxy, strategy, chunk))
    _agreement(rows)
    report = {
        "settings": {k: FLAGS[k].value for k in ("proxies", "strategies", "chunk_sizes", "num_archs",
                                                 "repeats", "batch_size", "seed", "malloc_tuning",
                                                 "compilation_cache_dir", "memory_limit_gb")},
        "network": {"channels": 16, "cells_per_stage": 5, "dataset": "cifar10", "resolution": 32},
        "pytorch_archs_per_second": PYTORCH_ARCHS_PER_SECOND,
        "cpu_count": os.cpu_count(),
        "results": rows,
        "total_seconds": time.perf_counter() - start,
    }
    results.write_json(FLAGS.out, report)  # after every row: a long run can be read as it goes
  print_table(rows)
  print(f"wrote {FLAGS.out} ({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
  app.run(main)
