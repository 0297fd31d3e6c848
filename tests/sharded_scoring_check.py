"""Run in a fresh process with 8 simulated CPU devices (``XLA_FLAGS`` set by the caller): scores
NB201 cells with and without a mesh and prints JSON for tests/test_sharding.py."""

import json
import sys

import jax
import numpy as np

from rznas_jax import proxies
from rznas_jax import scoring
from rznas_jax.spaces import nb201


def macro(names):
  """Distinct macro architectures spread over the 8 devices give the one-device scores."""
  from rznas_jax import macro_scoring  # pylint: disable=g-import-not-at-top
  kw = dict(batch_size=4, resolution=16, compiler_options={"xla_backend_optimization_level": 0})
  single = macro_scoring.MacroScorer(names, "zen_cifar", **kw)
  archs = macro_scoring.random_archs(single.space, 3, seed=0)
  spread = macro_scoring.MacroScorer(names, "zen_cifar", devices=jax.devices(), **kw)
  out_single, out_spread = single.score(archs), spread.score(archs)
  used = sorted({key[2] for key in spread._fns})  # pylint: disable=protected-access
  print(json.dumps({"devices": jax.device_count(), "devices_used": used,
                    "single": {k: v.tolist() for k, v in out_single.items()},
                    "sharded": {k: v.tolist() for k, v in out_spread.items()}}))


def main():
  if sys.argv[1] == "macro":
    return macro(sys.argv[2].split(","))
  strategy, names = sys.argv[1], sys.argv[2].split(",")
  setting = scoring.NB201Setting("imagenet16-120", channels=4, cells_per_stage=1)
  archs = nb201.random_archs(11, seed=3)  # 11 does not divide by 8
  kw = dict(batch_size=8, seed=0, strategy=strategy)
  single = scoring.NB201Scorer(names, setting, **kw).score(archs)
  mesh = scoring.cell_mesh()
  sharded_scorer = scoring.NB201Scorer(names, setting, mesh=mesh, chunk_size=1, **kw)
  sharded = sharded_scorer.score(archs)
  sharding = sharded_scorer.last_output_sharding
  print(json.dumps({
      "devices": jax.device_count(),
      "single": {k: v.tolist() for k, v in single.items()},
      "sharded": {k: v.tolist() for k, v in sharded.items()},
      "output_spec": str(sharding.spec), "output_mesh_axes": list(sharding.mesh.axis_names),
      "output_devices": len(sharding.device_set),
      "trace_counts": sharded_scorer.trace_counts,
  }))


if __name__ == "__main__":
  main()
