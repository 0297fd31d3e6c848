"""Data parallelism through ``jax.sharding``: one mesh axis over every device of every host.

The global batch is split along the ``data`` axis, the training state is replicated, and XLA
inserts the reductions (gradients, BN batch statistics, metrics), so the sharded step computes
what the single-device step computes on the same global batch; BN therefore sees the global batch
(synchronised BN). The same code runs on one CPU, on 8 simulated CPU devices and on a pod.
"""

from __future__ import annotations

from typing import Any, Sequence

import jax
import numpy as np

from rznas_jax.train.config import ConfigError

AXIS = "data"


def data_mesh(devices: Sequence[jax.Device] | None = None) -> jax.sharding.Mesh:
  """A one-axis mesh named ``data`` over ``devices`` (default: every device of every process)."""
  devices = list(devices) if devices is not None else jax.devices()
  return jax.make_mesh((len(devices),), (AXIS,), axis_types=(jax.sharding.AxisType.Auto,),
                       devices=devices)


def replicated(mesh: jax.sharding.Mesh) -> jax.NamedSharding:
  """The sharding of the training state: a full copy on every device."""
  return jax.NamedSharding(mesh, jax.P())


def batch_sharding(mesh: jax.sharding.Mesh) -> jax.NamedSharding:
  """The sharding of a batch: its leading axis split over ``data``."""
  return jax.NamedSharding(mesh, jax.P(AXIS))


def check_batch_size(batch_size: int, mesh: jax.sharding.Mesh) -> None:
  """Raises ConfigError unless ``batch_size`` splits evenly over the mesh and the processes."""
  n = mesh.devices.size
  if batch_size % n or batch_size % jax.process_count():
    raise ConfigError(f"config.batch_size {batch_size} must be a multiple of the {n} devices "
                     f"({jax.process_count()} processes); try {max(n, batch_size // n * n)}.")


def process_slice(global_batch: int) -> slice:
  """This process's rows of a global batch (its share of the data, in process order)."""
  per = global_batch // jax.process_count()
  return slice(jax.process_index() * per, (jax.process_index() + 1) * per)


def shard_batch(arrays: Sequence[np.ndarray], mesh: jax.sharding.Mesh) -> list[jax.Array]:
  """Global arrays from this process's rows of a batch (every process passes its own rows)."""
  sharding = batch_sharding(mesh)
  return [jax.make_array_from_process_local_data(sharding, a) for a in arrays]


def replicate(tree: Any, mesh: jax.sharding.Mesh) -> Any:
  """``tree`` placed whole on every device of ``mesh``."""
  return jax.device_put(tree, replicated(mesh))
