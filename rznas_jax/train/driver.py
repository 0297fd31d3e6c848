"""Trains one architecture: ``run(config, workdir)``, the only training code with side effects.

Data position is the optimiser step: step ``s`` takes rows ``s % steps_per_epoch`` of the
permutation ``epoch_order(seed, s // steps_per_epoch)`` and augments with ``fold_in(key, s)``, so a
run restored from a checkpoint takes exactly the steps an uninterrupted run would. Every
``checkpoint_every_steps`` (and at the end) the state is checkpointed; rerunning the same command
on the same ``workdir`` resumes from the newest checkpoint.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import tqdm

from rznas_jax import compilation_cache
from rznas_jax import spaces
from rznas_jax.train import architecture
from rznas_jax.train import checkpoint as checkpoint_lib
from rznas_jax.train import config as config_lib
from rznas_jax.train import data as data_lib
from rznas_jax.train import loop
from rznas_jax.train import metrics as metrics_lib
from rznas_jax.train import optim
from rznas_jax.train import parallel

_SUMS = ("loss", "correct", "count")


def load_data(config: ml_collections.ConfigDict) -> data_lib.Dataset:
  """The dataset ``config`` names (see `data.load_dataset`)."""
  return data_lib.load_dataset(config.dataset, config.data, holdout=config.holdout, seed=config.seed,
                               num_classes=config.num_classes, image_size=config.image_size,
                               synthetic_images=config.synthetic_images)


def step_spec(config: ml_collections.ConfigDict, dataset: data_lib.Dataset) -> loop.StepSpec:
  return loop.StepSpec(num_classes=dataset.num_classes, mean=dataset.mean, std=dataset.std,
                       crop_padding=config.augment.crop_padding, flip=config.augment.flip,
                       label_smoothing=config.label_smoothing, compute_dtype=config.compute_dtype,
                       cutout=config.augment.cutout)


@functools.lru_cache(maxsize=4)
def _jitted_steps(module, spec: loop.StepSpec, mesh: jax.sharding.Mesh, optim_json: str,
                  steps_per_epoch: int, epochs: int) -> tuple[Callable, Callable, Any, Any]:
  """The optimiser and jitted steps, built once per process for equal settings.

  A resumed run in the same process (tests, notebooks) then reuses the compiled programs.
  """
  optim_config = ml_collections.ConfigDict(json.loads(optim_json))
  tx, schedule = optim.make_optimizer(optim_config, steps_per_epoch, epochs)
  return (*loop.jit_steps(module, tx, spec, mesh), tx, schedule)


def _as_host(sums) -> dict[str, float]:
  return {k: float(v) for k, v in jax.device_get(sums).items()}


def _add(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
  return {k: a.get(k, 0.0) + b.get(k, 0.0) for k in _SUMS}


def _summary(sums: dict[str, float], prefix: str) -> dict[str, float]:
  n = max(sums.get("count", 0.0), 1.0)
  return {f"{prefix}_loss": sums.get("loss", 0.0) / n, f"{prefix}_accuracy": sums.get("correct", 0.0) / n}


def evaluate(eval_fn: Callable, variables: dict, test: data_lib.ImageSet, batch_size: int,
             mesh: jax.sharding.Mesh) -> dict[str, float]:
  """Test loss and accuracy over every test image (the last batch padded with weight 0)."""
  n = len(test.labels)
  sums = {}
  rows = parallel.process_slice(batch_size)
  for start in range(0, n, batch_size):
    idx = np.arange(start, start + batch_size)
    weights = (idx < n).astype(np.float32)
    idx = np.minimum(idx, n - 1)
    batch = [test.images[idx][rows], test.labels[idx][rows], weights[rows]]
    sums = _add(sums, _as_host(eval_fn(variables, *parallel.shard_batch(batch, mesh))))
  return _summary(sums, "test")


def _resume(checkpoints: checkpoint_lib.Checkpoints, latest: int | None, state: loop.TrainState,
            identity: dict[str, Any], workdir: str) -> tuple[loop.TrainState, dict[str, float]]:
  """The state and epoch metric sums of checkpoint ``latest`` (the fresh ``state`` if None).

  Raises:
    ConfigError: when the checkpoint belongs to another architecture, dataset or batch.
  """
  if latest is None:
    return state, {}
  meta = checkpoints.meta(latest)
  differs = {k: (meta.get(k), v) for k, v in identity.items() if meta.get(k) != v}
  if differs:
    k, (old, new) = next(iter(differs.items()))
    raise config_lib.ConfigError(f"{workdir!r} holds a run with {k} {old!r}, not {new!r}; use "
                                 "another --workdir to start a new run.")
  state, meta = checkpoints.restore(latest, state)
  return state, meta.get("epoch_sums", {})


@dataclasses.dataclass(frozen=True)
class EpochRun:
  """Runs the steps of one epoch from a position: batches, checkpoints, progress bar, timing."""

  config: ml_collections.ConfigDict
  dataset: data_lib.Dataset
  mesh: jax.sharding.Mesh
  checkpoints: checkpoint_lib.Checkpoints
  identity: dict[str, Any]
  total: int
  progress: bool
  on_step: Callable[[int], None] | None

  def __call__(self, train_fn: Callable, state: loop.TrainState, epoch: int, first: int,
               epoch_sums: dict[str, float]) -> tuple[loop.TrainState, int, dict[str, Any]]:
    """Steps ``first..`` of ``epoch``; returns the state, the step count and the epoch's record."""
    config, batch = self.config, self.config.batch_size
    images_all, labels_all = self.dataset.train.images, self.dataset.train.labels
    steps_per_epoch = len(labels_all) // batch
    step = epoch * steps_per_epoch + first
    rows = parallel.process_slice(batch)
    order = data_lib.epoch_order(len(labels_all), config.seed, epoch)
    bar = tqdm.tqdm(total=steps_per_epoch, initial=first, desc=f"epoch {epoch + 1}/{config.epochs}",
                    disable=not self.progress, leave=False, dynamic_ncols=True)
    device_sums, timed_from, timed_steps = None, None, 0
    epoch_start = time.perf_counter()
    for position in range(first, steps_per_epoch):
      idx = order[position * batch:(position + 1) * batch][rows]
      images, labels = parallel.shard_batch([images_all[idx], labels_all[idx]], self.mesh)
      state, sums = train_fn(state, images, labels)
      device_sums = sums if device_sums is None else jax.tree.map(jnp.add, device_sums, sums)
      step += 1
      if timed_from is None:  # images/s excludes the compile in the epoch's first step
        jax.block_until_ready(sums)
        timed_from = time.perf_counter()
      else:
        timed_steps += 1
      if step % config.checkpoint_every_steps == 0 or step == self.total:
        epoch_sums = _add(epoch_sums, _as_host(device_sums))
        device_sums = None
        meta = {**self.identity, "step": step, "epoch": epoch, "position": position + 1,
                "epoch_sums": epoch_sums}
        self.checkpoints.save(step, state, meta)
      bar.update(1)
      if bar.n % config.log_every_steps == 0 or position + 1 == steps_per_epoch:
        seen = epoch_sums if device_sums is None else _add(epoch_sums, _as_host(device_sums))
        rate = timed_steps * batch / max(time.perf_counter() - timed_from, 1e-9)
        now = _summary(seen, "train")
        bar.set_postfix(loss=f"{now['train_loss']:.4f}", acc=f"{now['train_accuracy']:.3f}",
                        img_s=f"{rate:.0f}")
      if self.on_step is not None:
        self.on_step(step)
    if device_sums is not None:
      epoch_sums = _add(epoch_sums, _as_host(device_sums))
    bar.close()
    elapsed = time.perf_counter() - timed_from
    record = {"epoch": epoch + 1, "step": step, "epoch_seconds": time.perf_counter() - epoch_start,
              "images_per_second": timed_steps * batch / elapsed if timed_steps else None,
              **_summary(epoch_sums, "train")}
    return state, step, record


def run(config: ml_collections.ConfigDict, workdir: str, *, progress: bool = True,
        on_step: Callable[[int], None] | None = None,
        devices: list[jax.Device] | None = None) -> dict[str, Any]:
  """Trains (or resumes training) ``config.arch`` and exports it with its test accuracy.

  Args:
    config: a `config.default_config`-shaped ConfigDict.
    workdir: the run folder: ``checkpoints/``, ``metrics.jsonl``, ``config.json``, ``final/``.
    progress: show a progress bar per epoch.
    on_step: called with the step count after each step (tests use it to interrupt a run).
    devices: the devices to train on (default: all of them).

  Returns:
    The contents of ``final/model.json``: architecture, space, dataset, train and test metrics.

  Raises:
    ConfigError, DataError, GenotypeError, StructureError: bad input, one sentence each.
  """
  config_lib.check_config(config)
  if config.compilation_cache:
    compilation_cache.enable_compilation_cache(config.compilation_cache)
  architecture.resolve_arch(config.arch, config.space)  # a bad architecture fails before the data loads
  dataset = load_data(config)
  network = architecture.build_network(config, dataset.num_classes, dataset.image_shape)
  mesh = parallel.data_mesh(devices)
  batch = config.batch_size
  parallel.check_batch_size(batch, mesh)
  n_train = len(dataset.train.labels)
  steps_per_epoch = n_train // batch
  if not steps_per_epoch:
    raise config_lib.ConfigError(f"config.batch_size {batch} exceeds the {n_train} training "
                                 "images; use a smaller batch.")
  total = config.epochs * steps_per_epoch
  spec = step_spec(config, dataset)
  train_fn, eval_fn, tx, schedule = _jitted_steps(network.module, spec, mesh, config.optim.to_json(),
                                                  steps_per_epoch, config.epochs)
  init_key, augment_key = jax.random.split(jax.random.key(config.seed))
  state = parallel.replicate(loop.TrainState.create(network.init(init_key), tx, augment_key), mesh)

  chief = jax.process_index() == 0
  os.makedirs(workdir, exist_ok=True)
  checkpoints = checkpoint_lib.Checkpoints(os.path.join(workdir, "checkpoints"), config.keep_checkpoints)
  identity = {"arch": network.arch, "space": network.space, "dataset": dataset.name,
              "steps_per_epoch": steps_per_epoch, "batch_size": batch}
  latest = checkpoints.latest_step()
  state, epoch_sums = _resume(checkpoints, latest, state, identity, workdir)
  if chief:
    with open(os.path.join(workdir, "config.json"), "w") as f:
      f.write(config.to_json(indent=2, sort_keys=True) + "\n")
  log = metrics_lib.MetricsLog(workdir, resume_step=latest or 0, enabled=chief)

  step = int(jax.device_get(state.step))
  record: dict[str, Any] = {}
  run_epoch = EpochRun(config, dataset, mesh, checkpoints, identity, total, progress and chief, on_step)
  while step < total:
    epoch, first = divmod(step, steps_per_epoch)
    state, step, record = run_epoch(train_fn, state, epoch, first, epoch_sums)
    record["learning_rate"] = float(schedule(step - 1))
    if (epoch + 1) % config.eval_every_epochs == 0 or step == total:
      record.update(evaluate(eval_fn, state.variables, dataset.test, batch, mesh))
    log.write(record)
    if progress and chief:
      shown = ", ".join(f"{k} {v:.4g}" for k, v in record.items()
                        if isinstance(v, float) and k != "epoch_seconds")
      tqdm.tqdm.write(f"epoch {epoch + 1}/{config.epochs}: {shown}")
    epoch_sums = {}

  if "test_accuracy" not in record:  # resumed after the last step: evaluate the final state
    done = metrics_lib.read_metrics(workdir) if chief else []
    record = {**(done[-1] if done else {}), **evaluate(eval_fn, state.variables, dataset.test, batch, mesh)}
  info = {"arch": network.arch, "space": network.space, "dataset": dataset.name,
          "num_classes": dataset.num_classes, "image_shape": list(dataset.image_shape),
          "epochs": config.epochs, "steps": step, "seed": config.seed,
          "test_accuracy": record["test_accuracy"], "test_loss": record["test_loss"],
          "test_images": len(dataset.test.labels),
          "train_accuracy": record.get("train_accuracy"), "train_loss": record.get("train_loss")}
  info.update(spaces.section(spaces.get(network.space), config))  # C, N; or the shortcuts
  if chief:
    checkpoint_lib.export_final(os.path.join(workdir, "final"), state.variables, info)
  checkpoints.close()
  log.close()
  return info


def read_summary(workdir: str) -> dict[str, Any]:
  """``final/model.json`` of a finished run."""
  with open(os.path.join(workdir, "final", "model.json")) as f:
    return json.load(f)
