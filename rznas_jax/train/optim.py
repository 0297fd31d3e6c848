"""The optimiser of both recipes: SGD with Nesterov momentum, coupled weight decay, warm-up + cosine.

This is PyTorch's ``SGD(lr, momentum, nesterov=True, weight_decay=wd)`` under a per-step
schedule: the decay ``wd * w`` is added to the gradient before momentum (``add_decayed_weights``
then ``sgd``), and the update is ``g + m * buf`` with ``buf = m * buf + g``, as in PyTorch.
"""

from __future__ import annotations

from typing import Any

import jax
import ml_collections
import optax


def learning_rate_schedule(peak: float, end: float, warmup_steps: int, total_steps: int) -> optax.Schedule:
  """Linear warm-up from 0 to ``peak`` over ``warmup_steps``, then cosine decay to ``end``.

  Example:
    >>> float(learning_rate_schedule(0.1, 0.0, 0, 100)(50))  # half way down the cosine
    0.05...
  """
  total_steps = max(total_steps, warmup_steps + 1)
  if not warmup_steps:  # optax's warm-up schedule logs a complaint about a zero-length warm-up
    return optax.cosine_decay_schedule(peak, total_steps, alpha=end / peak)
  return optax.warmup_cosine_decay_schedule(0.0, peak, warmup_steps, total_steps, end)


def decay_mask(params: Any) -> Any:
  """True for conv and linear kernels: what is decayed when norms and biases are excluded."""
  return jax.tree_util.tree_map_with_path(lambda path, _: path[-1].key == "kernel", params)


def make_optimizer(optim: ml_collections.ConfigDict, steps_per_epoch: int,
                   epochs: int) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """The optimiser that ``config.optim`` describes, and its learning-rate schedule (per step)."""
  schedule = learning_rate_schedule(optim.learning_rate, optim.end_learning_rate,
                                    round(optim.warmup_epochs * steps_per_epoch),
                                    epochs * steps_per_epoch)
  mask = None if optim.decay_norm_and_bias else decay_mask
  tx = optax.chain(
      optax.add_decayed_weights(optim.weight_decay, mask),
      optax.sgd(schedule, momentum=optim.momentum or None, nesterov=optim.nesterov),
  )
  return tx, schedule
