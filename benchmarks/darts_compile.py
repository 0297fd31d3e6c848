"""DARTS scoring: the switch form (one compile for every genotype) against a network compiled per
genotype, in NASLib's NAS-Bench-301 proxy setting.

For each proxy: the switch form's compile time and its run time per genotype, and the per-genotype
form's compile and run times for each of ``--num_archs`` genotypes (each a new compile). The ratio
is the per-genotype form's cost of one new genotype over the switch form's.

    python benchmarks/darts_compile.py --proxies=naswot,grad_norm --num_archs=2 --batch_size=16 \
        --out=benchmarks/results/darts_compile.json
"""

from __future__ import annotations

import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from rznas_jax import proxies as proxy_lib
from rznas_jax import results
from rznas_jax import scorer as scorer_lib
from rznas_jax import spaces
from rznas_jax.proxies.base import Batch
from rznas_jax.spaces import darts_net

_PROXIES = flags.DEFINE_list("proxies", ["naswot", "grad_norm"], "Proxies to time.")
_NUM = flags.DEFINE_integer("num_archs", 2, "Genotypes to time.")
_BATCH = flags.DEFINE_integer("batch_size", 16, "Images per batch.")
_OUT = flags.DEFINE_string("out", "", "JSON output.")


def _timed(fn, *args):
  start = time.perf_counter()
  compiled = jax.jit(fn).lower(*args).compile()
  compile_s = time.perf_counter() - start
  jax.block_until_ready(compiled(*args))  # warm
  start = time.perf_counter()
  jax.block_until_ready(compiled(*args))
  return compile_s, time.perf_counter() - start


def main(argv):
  del argv
  space = spaces.get("darts")
  setting = space.setting()
  genotypes = [space.parse(g) for g in space.random_population(_NUM.value, np.random.default_rng(0))]
  x, y = jnp.asarray(np.random.default_rng(0).standard_normal((_BATCH.value, 32, 32, 3)), jnp.float32), \
      jnp.asarray(np.random.default_rng(1).integers(0, 10, _BATCH.value))
  full = darts_net.init_params(setting, jax.random.key(0))
  out = {"batch_size": _BATCH.value, "devices": str(jax.devices()[0]), "proxies": {}}
  for name in _PROXIES.value:
    spec = proxy_lib.get(name)
    with scorer_lib.precision(spec):
      switch = _timed(lambda p, genes: spec.fn(darts_net.make_apply_fn(setting, genes),
                                               {"params": p, "batch_stats": {}}, Batch(x, y),
                                               jax.random.key(1)),
                      full, jnp.asarray(darts_net.arrays(genotypes[0])))
      fixed = []
      for g in genotypes:
        params = darts_net.init_params(setting, jax.random.key(0), g)
        fixed.append(_timed(lambda p, g=g: spec.fn(darts_net.make_apply_fn(setting, g),
                                                   {"params": p, "batch_stats": {}}, Batch(x, y),
                                                   jax.random.key(1)), params))
    per_new = float(np.mean([c + r for c, r in fixed]))
    row = {"switch_compile_s": switch[0], "switch_run_s": switch[1],
           "fixed_compile_s": [c for c, _ in fixed], "fixed_run_s": [r for _, r in fixed],
           "new_genotype_cost_ratio_fixed_over_switch": per_new / switch[1]}
    out["proxies"][name] = row
    print(f"{name:<10} switch: compile {switch[0]:6.1f} s once, {switch[1]:.2f} s/genotype | "
          f"per genotype: compile {np.mean(row['fixed_compile_s']):6.1f} s + run "
          f"{np.mean(row['fixed_run_s']):.2f} s | a new genotype costs {row['new_genotype_cost_ratio_fixed_over_switch']:.0f}x "
          f"more compiled per genotype; the switch pays off after "
          f"{switch[0] / max(per_new - switch[1], 1e-9):.1f} genotypes", flush=True)
  if _OUT.value:
    results.write_json(_OUT.value, out)


if __name__ == "__main__":
  app.run(main)
