r"""Every proxy on random architectures of each macro space: compile time, run time, finiteness.

For each space, ``--num_archs`` random valid architectures (a seeded random walk of the space's
Zen-NAS mutation from its initial structure, `macro_scoring.random_archs`) are scored at the
space's own resolution (32, 224, 480) and batch 64 by every proxy, through `MacroScorer`'s
building blocks: the compile of each (structure, proxy) is timed, then ``--repeats`` runs of the
compiled function, then one more run on inputs made afresh by a second scorer with the same seed,
which must give the same score bit for bit ("repeatable"). A proxy that fails to compile or run
(e.g. out of memory) is recorded with its error and the run goes on.

Then the growth of compile time with depth: one block of the initial structure (``--depth_block``)
gets 1, 2, 4, 8 sub-layers, and ``--depth_proxies`` are compiled with the unrolled network and
with the ``nn.scan`` form (identical for 1 and 2 sub-layers: scan needs at least two repeated
sub-layers after the first). Budgets are not checked for these (8 sub-layers may exceed them).

Compile times are cold: no persistent compilation cache is used. Images are Gaussian. Each
measurement is printed as it is made and the JSON is rewritten after every architecture, so a run
cut short keeps what it measured; ``--seconds_per_space`` stops a space early on a slow machine.

    python benchmarks/macro_proxies.py --out=benchmarks/results/macro_proxies.json
    python benchmarks/macro_proxies.py --num_archs=2 --resolution=32 --batch_size=4   # smoke test
"""

from __future__ import annotations

import os
import statistics
import time

from absl import app
from absl import flags
import jax
import numpy as np

from rznas_jax import macro_scoring
from rznas_jax import proxies as proxy_lib
from rznas_jax import results
from rznas_jax.spaces import macro_spaces

_HERE = os.path.dirname(os.path.abspath(__file__))

flags.DEFINE_list("spaces", list(macro_spaces.SPACES), "Macro spaces to measure.")
flags.DEFINE_integer("num_archs", 20, "Random valid architectures per space.", lower_bound=1)
flags.DEFINE_list("proxies", None, "Proxies to measure (default: every registered proxy; "
                  "maedet only in maedet_coco).")
flags.DEFINE_integer("resolution", None, "Input size for every space (default: each space's own).",
                     lower_bound=1)
flags.DEFINE_integer("batch_size", 64, "Images per proxy batch.", lower_bound=2)
flags.DEFINE_integer("seed", 0, "Seeds the architectures, the init, the batch and the proxies.")
flags.DEFINE_integer("repeats", 3, "Timed runs of each compiled function.", lower_bound=1)
flags.DEFINE_list("depths", ["1", "2", "4", "8"], "Sub-layer counts for the depth measurement.")
flags.DEFINE_list("depth_proxies", ["grad_norm"], "Proxies for the depth measurement ('' skips it).")
flags.DEFINE_integer("depth_block", 1, "Index of the block whose depth varies (a residual block).",
                     lower_bound=0)
flags.DEFINE_float("seconds_per_space", None, "Stop starting new architectures of a space after this "
                   "many seconds (default: measure all --num_archs); the JSON says how many were done.",
                   lower_bound=0)
flags.DEFINE_string("out", os.path.join(_HERE, "results", "macro_proxies.json"), "Output JSON.")
FLAGS = flags.FLAGS


def _same(a: float, b: float) -> bool:
  return a == b or (np.isnan(a) and np.isnan(b))


def _error(e: Exception) -> str:
  return f"{type(e).__name__}: {' '.join(str(e).split())[:300]}"


def measure_one(scorer, twin, arch, proxy: str, repeats: int) -> dict:
  """Compile seconds, run seconds, the score, finiteness and repeatability of one pair."""
  spec = proxy_lib.get(proxy)
  if spec.data == "none":
    costs = scorer.space.costs(arch)
    start = time.perf_counter()
    value = float(spec.fn(costs))
    seconds = time.perf_counter() - start
    again = float(spec.fn(twin.space.costs(arch)))
    return {"score": value, "compile_seconds": 0.0, "run_seconds": [seconds],
            "finite": bool(np.isfinite(value)), "repeatable": _same(value, again)}
  try:
    with jax.enable_x64(spec.dtype == "float64"):
      variables, batch, key = scorer.inputs(arch, proxy)
      fn = scorer.compiled(arch, proxy, variables, batch, key)
      compile_seconds = scorer.compile_seconds_by_arch[(arch.structure, proxy)]
      run = lambda v, b, k: float(np.asarray(jax.block_until_ready(fn(v, b.images, b.labels, k))))
      value = run(variables, batch, key)  # first run: warms the executable up
      times = []
      for _ in range(repeats):
        start = time.perf_counter()
        run(variables, batch, key)
        times.append(time.perf_counter() - start)
      again = run(*twin.inputs(arch, proxy))
  except Exception as e:  # pylint: disable=broad-except  (recorded; the benchmark goes on)
    return {"error": _error(e)}
  finally:
    scorer.clear_cache()  # one executable at a time: deep nets at 480 px are large
  return {"score": value, "compile_seconds": compile_seconds, "run_seconds": times,
          "finite": bool(np.isfinite(value)), "repeatable": _same(value, again)}


def measure_space(name: str, proxies: list[str], save=lambda entry: None) -> dict:
  """Every proxy on ``--num_archs`` random valid architectures of space ``name``.

  ``save`` gets the entry so far after each architecture (a long run cut short keeps its data).
  """
  proxies = [p for p in proxies if macro_scoring.CONVENTION_ONLY_PROXIES.get(p) in
             (None, macro_spaces.get_space(name).convention)]
  kw = dict(batch_size=FLAGS.batch_size, seed=FLAGS.seed, resolution=FLAGS.resolution, cache_size=1)
  scorer = macro_scoring.MacroScorer(proxies, name, **kw)
  twin = macro_scoring.MacroScorer(proxies, name, **kw)
  archs = macro_scoring.random_archs(scorer.space, FLAGS.num_archs, FLAGS.seed)
  per_proxy = {p: [] for p in proxies}
  start = time.perf_counter()
  entry = _space_entry(scorer, [], per_proxy)
  for i, arch in enumerate(archs):
    if FLAGS.seconds_per_space is not None and time.perf_counter() - start > FLAGS.seconds_per_space:
      print(f"  {name}: --seconds_per_space={FLAGS.seconds_per_space:g} spent; stopping after "
            f"{i} of {len(archs)} architectures", flush=True)
      break
    for proxy in proxies:
      m = measure_one(scorer, twin, arch, proxy, FLAGS.repeats)
      per_proxy[proxy].append(m)
      shown = m["error"] if "error" in m else (
          f"compile {m['compile_seconds']:.1f} s, run {min(m['run_seconds']) * 1e3:.1f} ms, "
          f"score {m['score']:.6g}{'' if m['finite'] and m['repeatable'] else ' NOT FINITE/REPEATABLE'}")
      print(f"  {name} {i + 1}/{len(archs)} {proxy}: {shown}", flush=True)
    entry = _space_entry(scorer, archs[:i + 1], per_proxy)
    save(entry)
  return entry


def _space_entry(scorer, archs, per_proxy) -> dict:
  summary = {}
  for proxy, rows in per_proxy.items():
    ok = [r for r in rows if "error" not in r]
    summary[proxy] = {
        "measured": len(ok),
        "errors": [r["error"] for r in rows if "error" in r],
        "finite": sum(r["finite"] for r in ok),
        "repeatable": sum(r["repeatable"] for r in ok),
        "compile_seconds_median": statistics.median(r["compile_seconds"] for r in ok) if ok else None,
        "compile_seconds_max": max(r["compile_seconds"] for r in ok) if ok else None,
        "run_seconds_median": statistics.median(min(r["run_seconds"]) for r in ok) if ok else None,
    }
  costs = [scorer.space.costs(a) for a in archs]
  return {
      "resolution": scorer.space.resolution,
      "num_classes": scorer.space.num_classes,
      "archs": [a.structure for a in archs],
      "layers": [c["layers"] for c in costs],
      "params": [c["params"] for c in costs],
      "flops": [c["flops"] for c in costs],
      "summary": summary,
      "per_arch": per_proxy,
  }


def depth_variants(space: macro_spaces.MacroSpace, block: int, depths: list[int]):
  """The initial structure with block ``block`` given each of ``depths`` sub-layers."""
  base = space.initial_arch
  if not 0 <= block < len(base.blocks) or base.blocks[block].family == "conv":
    raise app.UsageError(f"--depth_block={block} is not a residual block of the {space.name} "
                         f"initial structure {base.structure}.")
  for depth in depths:
    blocks = list(base.blocks)
    blocks[block] = blocks[block].replace(sub_layers=depth)
    yield depth, type(base)(tuple(blocks))


def measure_depth(name: str, proxies: list[str], depths: list[int]) -> list[dict]:
  """Compile (and one run) seconds against depth, unrolled and scanned."""
  rows = []
  kw = dict(batch_size=FLAGS.batch_size, seed=FLAGS.seed, resolution=FLAGS.resolution, cache_size=1)
  scorers = {scan: macro_scoring.MacroScorer(proxies, name, scan=scan, **kw) for scan in (False, True)}
  space = scorers[False].space
  for depth, arch in depth_variants(space, FLAGS.depth_block, depths):
    for proxy in proxies:
      row = {"depth": depth, "proxy": proxy, "arch": arch.structure}
      for scan, scorer in scorers.items():
        m = measure_one(scorer, scorer, arch, proxy, repeats=1)
        tag = "scan" if scan else "unrolled"
        row[tag] = m.get("error") or {"compile_seconds": m["compile_seconds"],
                                      "run_seconds": min(m["run_seconds"]), "score": m["score"]}
      rows.append(row)
      print(f"  {name}: depth {depth} {proxy} done", flush=True)
  return rows


def _fmt(x, scale=1.0, digits=2):
  return "-" if x is None else f"{x * scale:.{digits}f}"


def print_tables(report: dict) -> None:
  for name, entry in report["spaces"].items():
    n = len(entry["archs"])
    if not n:
      print(f"\n{name}: no architecture finished")
      continue
    print(f"\n{name} @ {entry['resolution']}px, batch {report['settings']['batch_size']}, {n} archs "
          f"(layers {min(entry['layers'])}-{max(entry['layers'])})")
    print(f"{'proxy':<14}{'compile s (med/max)':>22}{'run ms (med)':>14}{'finite':>9}{'repeat':>9}  errors")
    for proxy, s in entry["summary"].items():
      comp = f"{_fmt(s['compile_seconds_median'])}/{_fmt(s['compile_seconds_max'])}"
      print(f"{proxy:<14}{comp:>22}{_fmt(s['run_seconds_median'], 1e3, 1):>14}"
            f"{s['finite']:>5}/{s['measured']:<3}{s['repeatable']:>5}/{s['measured']:<3} "
            f"{len(s['errors']) or ''}")
    depth = report["depth"].get(name)
    if depth:
      print(f"compile seconds vs depth of block {report['settings']['depth_block']} "
            "(unrolled / scan; run seconds in brackets)")
      for row in depth:
        cells = []
        for tag in ("unrolled", "scan"):
          m = row[tag]
          cells.append("error" if isinstance(m, str) else
                       f"{m['compile_seconds']:.2f} ({m['run_seconds']:.3f})")
        print(f"  L={row['depth']:<3}{row['proxy']:<12}{cells[0]:>20}{cells[1]:>20}")
  print(f"\nall finite and repeatable: {report['all_finite_and_repeatable']}")


def _save_partial(report: dict, name: str, entry: dict) -> None:
  report["spaces"][name] = entry
  results.write_json(FLAGS.out, {**report, "complete": False})


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {argv[1:]}")
  proxies = FLAGS.proxies or proxy_lib.names()
  for p in proxies + [p for p in FLAGS.depth_proxies if p]:
    proxy_lib.get(p)
  for name in FLAGS.spaces:
    macro_spaces.get_space(name)
  depths = [int(d) for d in FLAGS.depths]
  report = {
      "settings": {k: FLAGS[k].value for k in ("spaces", "num_archs", "resolution", "batch_size", "seed",
                                               "repeats", "depths", "depth_proxies", "depth_block")},
      "environment": {"jax_version": jax.__version__, "backend": jax.default_backend(),
                      "devices": [str(d) for d in jax.devices()]},
      "proxies": proxies, "spaces": {}, "depth": {},
  }
  start = time.perf_counter()
  for name in FLAGS.spaces:
    print(f"{name}: scoring", flush=True)
    report["spaces"][name] = measure_space(
        name, proxies, save=lambda entry, name=name: _save_partial(report, name, entry))
    depth_proxies = [p for p in FLAGS.depth_proxies if p]
    if depth_proxies:
      report["depth"][name] = measure_depth(name, depth_proxies, depths)
  report["total_seconds"] = time.perf_counter() - start
  report["complete"] = True
  report["all_finite_and_repeatable"] = all(entry["archs"] for entry in report["spaces"].values()) and all(
      s["finite"] == s["repeatable"] == s["measured"] == len(entry["archs"])
      for entry in report["spaces"].values() for s in entry["summary"].values())
  results.write_json(FLAGS.out, report)
  print_tables(report)
  print(f"wrote {FLAGS.out} ({report['total_seconds']:.0f} s)")


if __name__ == "__main__":
  app.run(main)
