"""What proxies read from a network: its kernels, its BN leaves, its loss.

Flax names the leaves the way the reference code's PyTorch modules name theirs: a conv or linear
weight is a ``kernel`` (conv HWIO, dense (in, out)), a BN weight is a ``scale``, a running variance
is a ``var``. One leaf is one layer: the per-layer reductions (GradNorm, ZiCo, Zen's SynFlow) need
a network whose builder keeps each layer's kernel in its own leaf, not stacked with others.
"""

from __future__ import annotations

from typing import Any, Iterable

import jax
import jax.numpy as jnp


def _leaf_name(path: tuple[Any, ...]) -> Any:
  if not path:
    return None
  last = path[-1]
  return getattr(last, "key", getattr(last, "name", None))


def leaves_named(tree: Any, names: Iterable[str]) -> list[jax.Array]:
  """The leaves of ``tree`` whose own key is one of ``names``, in tree order.

  Args:
    tree: a Flax variable collection, e.g. ``variables['params']`` or a gradient of it.
    names: leaf keys to keep, e.g. ``("kernel",)``.

  Returns:
    The matching leaves. Two trees of the same structure give aligned lists.
  """
  wanted = frozenset(names)
  return [leaf for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]
          if _leaf_name(path) in wanted]


def kernels(params: Any) -> list[jax.Array]:
  """Every conv and linear weight (the ``nn.Conv2d``/``nn.Linear`` ``weight`` of the references)."""
  return leaves_named(params, ("kernel",))


def with_params(variables: dict, params: Any) -> dict:
  """``variables`` with its ``params`` collection replaced."""
  return {**variables, "params": params}


def cast(tree: Any, dtype: Any) -> Any:
  """Every floating leaf of ``tree`` cast to ``dtype``; other leaves unchanged."""
  def cast_leaf(x):
    x = jnp.asarray(x)
    return x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x
  return jax.tree.map(cast_leaf, tree)


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Mean over the batch of ``-log softmax(logits)[label]`` (PyTorch's ``F.cross_entropy``)."""
  log_probs = jax.nn.log_softmax(logits, axis=-1)
  picked = jnp.take_along_axis(log_probs, labels[:, None].astype(jnp.int32), axis=-1)
  return -jnp.mean(picked)


def corrcoef_rows(rows: jax.Array) -> jax.Array:
  """``np.corrcoef(rows)`` for (N, D) rows, clipped to [-1, 1]; NaN where a row is constant.

  Written out so that the Gram product is full float32 on GPUs too (not TF32).
  """
  centred = rows - jnp.mean(rows, axis=1, keepdims=True)
  cov = jnp.matmul(centred, centred.T, precision=jax.lax.Precision.HIGHEST)
  std = jnp.sqrt(jnp.diag(cov))
  return jnp.clip(cov / std[:, None] / std[None, :], -1.0, 1.0)
