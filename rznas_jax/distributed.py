"""Multi-process (multi-host) search: one leader talks to the LLM and writes files; all score.

The search loop runs on process 0 only. Whenever it needs proxy scores it broadcasts the
genotypes to every process (`broadcast_json`), each process scores its share (genotype i on
process i mod P), and the scores are gathered back (`gather_scores`); the other processes run
`serve_scoring` until the leader says stop. Every process therefore makes the same collective
calls in the same order, and runs the same compiled scoring function on its own devices.

`initialize` starts ``jax.distributed`` only for multi-process runs (a flag, or the usual
coordinator environment variables), before any other JAX call, and never twice.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any, Callable, Sequence

import jax
import numpy as np

_STOP = {"op": "stop"}
ENV_VARS = ("JAX_COORDINATOR_ADDRESS", "COORDINATOR_ADDRESS")


def initialize(enabled: bool = False, coordinator_address: str = "", num_processes: int = 0,
               process_id: int = -1) -> bool:
  """Starts ``jax.distributed`` when asked to (``enabled``) or when a coordinator address is in
  the environment; returns whether the run is multi-process. Arguments left at their defaults
  are auto-detected by JAX (TPU pods, SLURM, the environment).
  """
  if not enabled and not any(os.environ.get(v) for v in ENV_VARS):
    return False
  if not jax.distributed.is_initialized():
    kwargs: dict[str, Any] = {}
    if coordinator_address:
      kwargs["coordinator_address"] = coordinator_address
    if num_processes > 0:
      kwargs["num_processes"] = num_processes
    if process_id >= 0:
      kwargs["process_id"] = process_id
    jax.distributed.initialize(**kwargs)
    logging.info("jax.distributed: process %d of %d, %d local devices.", jax.process_index(),
                 jax.process_count(), jax.local_device_count())
  return jax.process_count() > 1


def is_leader() -> bool:
  return jax.process_index() == 0


def broadcast_json(value: Any) -> Any:
  """Process 0's ``value`` (JSON-serialisable) on every process."""
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  data = json.dumps(value).encode() if is_leader() else b""
  size = int(multihost_utils.broadcast_one_to_all(np.int64(len(data))))
  buf = np.zeros(size, np.uint8)
  if is_leader():
    buf[:] = np.frombuffer(data, np.uint8)
  buf = np.asarray(multihost_utils.broadcast_one_to_all(buf))
  return json.loads(buf.tobytes().decode())


def share(items: Sequence[Any], index: int | None = None, count: int | None = None) -> list[Any]:
  """This process's share of ``items``: item i goes to process i mod P."""
  index = jax.process_index() if index is None else index
  count = jax.process_count() if count is None else count
  return list(items[index::count])


def gather_scores(local: np.ndarray, total: int) -> np.ndarray:
  """Every process's ``local`` scores (of `share`) put back in the order of the ``total`` items."""
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  count = jax.process_count()
  width = -(-total // count)
  padded = np.full(width, np.nan, np.float64)
  padded[:len(local)] = local
  # Sent as uint32 pairs: without jax_enable_x64 a float64 array would arrive as float32.
  words = np.asarray(multihost_utils.process_allgather(padded.view(np.uint32)))
  rows = np.ascontiguousarray(words, np.uint32).view(np.float64).reshape(count, width)
  out = np.empty(total, np.float64)
  for p in range(count):
    n = len(range(p, total, count))
    out[p::count] = rows[p, :n]
  return out


class LeaderScorer:
  """On process 0: scores genotypes across every process (the call protocol of `serve_scoring`)."""

  def __init__(self, score_local: Callable[[list[str]], np.ndarray]):
    self.score_local = score_local

  def __call__(self, genotypes: Sequence[str]) -> np.ndarray:
    genotypes = list(broadcast_json({"op": "score", "genotypes": list(genotypes)})["genotypes"])
    mine = share(genotypes)
    local = self.score_local(mine) if mine else np.zeros(0)
    return gather_scores(np.asarray(local, np.float64), len(genotypes))

  def stop(self) -> None:
    broadcast_json(_STOP)


def serve_scoring(score_local: Callable[[list[str]], np.ndarray]) -> int:
  """On processes other than 0: score shares until the leader stops; returns the calls served."""
  served = 0
  while True:
    message = broadcast_json(None)
    if message["op"] == "stop":
      return served
    genotypes = message["genotypes"]
    mine = share(genotypes)
    local = score_local(mine) if mine else np.zeros(0)
    gather_scores(np.asarray(local, np.float64), len(genotypes))
    served += 1
