"""The training state and the pure, jitted train and eval steps.

A step is a function of (state, uint8 batch, labels): it augments on the device with the key
``fold_in(state.key, state.step)``, normalises, runs the network in train mode (BN on batch
statistics, running statistics updated), takes the label-smoothed cross-entropy and applies the
optimiser. Nothing in it depends on how the batch is laid out over devices, and nothing depends
on the step's history beyond the state, which is what makes resuming exact.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from rznas_jax.train import augment as augment_lib


@flax.struct.dataclass
class TrainState:
  """Everything a resumed run needs besides the data order (a function of seed and step).

  Attributes:
    step: optimiser steps taken (int32 scalar).
    params: the network's parameters (float32 master copy).
    batch_stats: BN running statistics.
    opt_state: the optimiser's state.
    key: the run's augmentation key; step ``s`` uses ``fold_in(key, s)``.
  """

  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any
  key: jax.Array

  @classmethod
  def create(cls, variables: dict, tx: optax.GradientTransformation, key: jax.Array) -> "TrainState":
    params = variables["params"]
    return cls(step=jnp.zeros((), jnp.int32), params=params,
               batch_stats=variables.get("batch_stats", {}), opt_state=tx.init(params), key=key)

  @property
  def variables(self) -> dict:
    return {"params": self.params, "batch_stats": self.batch_stats}


@dataclasses.dataclass(frozen=True)
class StepSpec:
  """The static settings of a step (hashable; one compile per spec).

  Attributes:
    num_classes: classifier width (for the one-hot targets).
    mean: per-channel normalisation mean (0..1 scale).
    std: per-channel normalisation std.
    crop_padding: random-crop padding; 0 disables the crop.
    flip: random horizontal flips.
    label_smoothing: the smoothing of the one-hot targets.
    compute_dtype: ``float32`` or ``bfloat16`` for activations and weights in the forward pass.
    cutout: side of the square cut out of each training image after normalisation (set to 0,
      the mean; DeVries & Taylor, as DARTS trains), centred anywhere in the image; 0 disables.
  """

  num_classes: int
  mean: tuple[float, ...]
  std: tuple[float, ...]
  crop_padding: int = 4
  flip: bool = True
  label_smoothing: float = 0.0
  compute_dtype: str = "float32"
  cutout: int = 0


def aux_weight(module: nn.Module) -> float:
  """The weight of a module's auxiliary loss: its ``aux_weight`` attribute (0 when absent). A
  module with a positive weight sows its auxiliary logits as ``intermediates/aux_logits`` in train
  mode (the DARTS network's auxiliary head)."""
  return float(getattr(module, "aux_weight", 0.0) or 0.0)


def _forward(module: nn.Module, spec: StepSpec, params, batch_stats, images, *, train: bool,
             key: jax.Array | None = None):
  """Logits in float32 and (in train mode) the updated BN statistics and auxiliary logits (None
  without an auxiliary head). ``key`` feeds the module's ``dropout`` stream (drop path)."""
  dtype = jnp.dtype(spec.compute_dtype)
  if dtype != jnp.float32:
    params = jax.tree.map(lambda p: p.astype(dtype), params)
    images = images.astype(dtype)
  variables = {"params": params, "batch_stats": batch_stats}
  if train:
    mutable = ["batch_stats", "intermediates"] if aux_weight(module) > 0 else ["batch_stats"]
    rngs = {"dropout": key} if key is not None else None
    logits, state = module.apply(variables, images, train=True, mutable=mutable, rngs=rngs)
    aux = state.get("intermediates", {}).get("aux_logits")
    aux = None if aux is None else aux[0].astype(jnp.float32)
    return logits.astype(jnp.float32), state["batch_stats"], aux
  return module.apply(variables, images, train=False).astype(jnp.float32), batch_stats


def cross_entropy(logits: jax.Array, labels: jax.Array, num_classes: int, smoothing: float) -> jax.Array:
  """Per-example cross-entropy against label-smoothed one-hot targets (PyTorch's smoothing)."""
  targets = optax.smooth_labels(jax.nn.one_hot(labels, num_classes), smoothing)
  return optax.softmax_cross_entropy(logits, targets)


def loss_and_grads(module: nn.Module, spec: StepSpec, state: TrainState, images: jax.Array,
                   labels: jax.Array) -> tuple[tuple[jax.Array, tuple[jax.Array, Any]], Any]:
  """``((mean loss, (logits, new batch_stats)), grads)`` of one augmented training batch."""
  key = jax.random.fold_in(state.key, state.step)
  images = augment_lib.augment(images, key, padding=spec.crop_padding, flip=spec.flip)
  images = augment_lib.normalize(images, spec.mean, spec.std)
  if spec.cutout:
    images = augment_lib.cutout(images, jax.random.fold_in(key, 2), spec.cutout)
  weight = aux_weight(module)

  def loss_fn(params):
    logits, batch_stats, aux = _forward(module, spec, params, state.batch_stats, images, train=True,
                                        key=jax.random.fold_in(key, 1))
    loss = cross_entropy(logits, labels, spec.num_classes, spec.label_smoothing).mean()
    if aux is not None and weight > 0:
      loss = loss + weight * cross_entropy(aux, labels, spec.num_classes, spec.label_smoothing).mean()
    return loss, (logits, batch_stats)

  return jax.value_and_grad(loss_fn, has_aux=True)(state.params)


def train_step(module: nn.Module, tx: optax.GradientTransformation, spec: StepSpec,
               state: TrainState, images: jax.Array, labels: jax.Array) -> tuple[TrainState, dict]:
  """One optimiser step; returns the new state and the batch's summed metrics.

  Metrics are sums (``loss``, ``correct``) and a ``count`` so that epochs and devices add up.
  """
  (loss, (logits, batch_stats)), grads = loss_and_grads(module, spec, state, images, labels)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  count = labels.shape[0]
  metrics = {"loss": loss * count,
             "correct": jnp.sum(jnp.argmax(logits, -1) == labels).astype(jnp.float32),
             "count": jnp.asarray(count, jnp.float32)}
  new_state = state.replace(step=state.step + 1, params=params, batch_stats=batch_stats,
                            opt_state=opt_state)
  return new_state, metrics


def eval_step(module: nn.Module, spec: StepSpec, variables: dict, images: jax.Array,
              labels: jax.Array, weights: jax.Array) -> dict:
  """Summed test metrics of a batch with BN running statistics; ``weights`` 0 marks padding."""
  images = augment_lib.normalize(images, spec.mean, spec.std)
  logits, _ = _forward(module, spec, variables["params"], variables["batch_stats"], images,
                       train=False)
  loss = cross_entropy(logits, labels, spec.num_classes, 0.0)
  correct = (jnp.argmax(logits, -1) == labels).astype(jnp.float32)
  return {"loss": jnp.sum(loss * weights), "correct": jnp.sum(correct * weights),
          "count": jnp.sum(weights)}


def jit_steps(module: nn.Module, tx: optax.GradientTransformation, spec: StepSpec,
              mesh: jax.sharding.Mesh) -> tuple[Callable, Callable]:
  """``(train_step(state, images, labels), eval_step(variables, images, labels, weights))``,
  jitted with the state replicated over ``mesh`` (batches arrive sharded over ``data``).

  The state is donated to the train step except on CPU, where XLA cannot reuse donated buffers.
  """
  replicated = jax.NamedSharding(mesh, jax.P())
  donate = (0,) if mesh.devices.flat[0].platform != "cpu" else ()
  train = jax.jit(lambda s, x, y: train_step(module, tx, spec, s, x, y),
                  out_shardings=replicated, donate_argnums=donate)
  evaluate = jax.jit(lambda v, x, y, w: eval_step(module, spec, v, x, y, w),
                     out_shardings=replicated)
  return train, evaluate
