"""Checkpoints with orbax (atomic: written aside, then renamed) and the final export.

A checkpoint holds the `TrainState` (params, BN statistics, optimiser state, step, PRNG key data)
and a small JSON (data position, the epoch's running metric sums, the architecture). The final
export is ``final/variables.msgpack`` (Flax serialisation of ``{"params", "batch_stats"}``) and
``final/model.json`` beside it (architecture string, space, dataset, test accuracy).
"""

from __future__ import annotations

import json
import os
from typing import Any

import flax.serialization
import jax
import orbax.checkpoint as ocp

from rznas_jax.train.loop import TrainState


def _saveable(state: TrainState) -> TrainState:
  """Typed PRNG keys are stored as their raw key data."""
  return state.replace(key=jax.random.key_data(state.key))


class Checkpoints:
  """The run's checkpoints under ``directory``: save, find the latest, restore.

  Args:
    directory: the checkpoint folder (created when missing).
    keep: how many recent checkpoints to keep.
  """

  def __init__(self, directory: str, keep: int = 2):
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                           enable_async_checkpointing=False)
    self._manager = ocp.CheckpointManager(os.path.abspath(directory), options=options)

  def latest_step(self) -> int | None:
    """The step of the newest complete checkpoint, or None."""
    return self._manager.latest_step()

  def save(self, step: int, state: TrainState, meta: dict[str, Any]) -> None:
    """Writes ``state`` and ``meta`` as checkpoint ``step`` (atomically; blocks until done)."""
    self._manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(_saveable(state)), meta=ocp.args.JsonSave(meta)), force=True)
    self._manager.wait_until_finished()

  def meta(self, step: int) -> dict[str, Any]:
    """The JSON saved with checkpoint ``step`` (read without touching the arrays)."""
    restored = self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
    return dict(restored["meta"])

  def restore(self, step: int, like: TrainState) -> tuple[TrainState, dict[str, Any]]:
    """Checkpoint ``step`` restored with the structure, dtypes and shardings of ``like``."""
    target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding),
                          _saveable(like))
    restored = self._manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore()))
    state = restored["state"]
    return state.replace(key=jax.random.wrap_key_data(state.key)), dict(restored["meta"])

  def close(self) -> None:
    self._manager.close()


def export_final(directory: str, variables: dict, info: dict[str, Any]) -> None:
  """Writes ``variables.msgpack`` and ``model.json`` into ``directory``, each atomically.

  ``info`` should hold at least the architecture string and the test accuracy.
  """
  os.makedirs(directory, exist_ok=True)
  host = jax.tree.map(jax.device_get, variables)
  for name, payload in (("variables.msgpack", flax.serialization.to_bytes(host)),
                        ("model.json", (json.dumps(info, indent=2, sort_keys=True) + "\n").encode())):
    tmp = os.path.join(directory, f".{name}.tmp")
    with open(tmp, "wb") as f:
      f.write(payload)
    os.replace(tmp, os.path.join(directory, name))


def load_final(directory: str, like: dict) -> tuple[dict, dict[str, Any]]:
  """The exported variables (with the structure of ``like``) and the JSON beside them."""
  with open(os.path.join(directory, "variables.msgpack"), "rb") as f:
    variables = flax.serialization.from_bytes(like, f.read())
  with open(os.path.join(directory, "model.json")) as f:
    return variables, json.load(f)
