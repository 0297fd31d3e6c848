"""The network to train: an architecture from a genotype, a macro structure or a search's summary.

`resolve_arch` turns ``config.arch`` into ``(space, canonical arch string)``; `build_network`
asks the space (`Space.network`) for the Flax module and its PyTorch-default initial variables:
NB201 cells become the exact NB201 network (``config.nb201`` sets C and N); macro structures
become a Zen-NAS MasterNet with its shortcuts (``config.macro.no_reslink=False``), the form that
is trained.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Callable

import flax.linen as nn
import jax
import ml_collections

from rznas_jax import spaces
from rznas_jax.train.config import ConfigError


@dataclasses.dataclass(frozen=True)
class Network:
  """A network ready to train.

  Attributes:
    space: ``nb201`` or a macro space name.
    arch: the canonical architecture string (what the export records).
    module: the Flax module; ``module.apply(variables, images, train=...)`` gives logits.
    init: ``init(key) -> {"params", "batch_stats"}`` with PyTorch's default initialisation.
  """

  space: str
  arch: str
  module: nn.Module
  init: Callable[[jax.Array], dict[str, Any]]


def _read_summary(path: str) -> tuple[str, str]:
  """``(best_arch, space)`` of a search run's summary.json (or of the folder holding it)."""
  if os.path.isdir(path):
    path = os.path.join(path, "summary.json")
  try:
    with open(path) as f:
      summary = json.load(f)
  except (OSError, ValueError) as e:
    raise ConfigError(f"cannot read the search summary {path!r}: {e}.") from None
  if not isinstance(summary, dict) or "best_arch" not in summary:
    raise ConfigError(f"{path!r} has no 'best_arch'; give the summary.json of a search run.")
  return str(summary["best_arch"]), str(summary.get("space", "auto"))


def resolve_arch(arch: str, space: str = "auto") -> tuple[str, str]:
  """The space and canonical string of ``arch`` (a genotype, a structure or a summary path).

  Args:
    arch: a genotype of any registered space (``|op~0|+...`` for NB201,
      ``SuperConvK3BNRELU(3,8,1,1)...`` for the macro spaces), or the path of a search's
      ``summary.json`` or run folder.
    space: ``auto`` or a space name; with a summary, ``auto`` takes the summary's space; else
      ``auto`` is the first registered space whose grammar reads ``arch`` (`spaces.guess`).

  Returns:
    ``(space, arch_string)`` with the string in its canonical form.

  Raises:
    ConfigError: for an unreadable summary or a space that contradicts it.
    UserError: for a string outside the space's grammar, or an unknown space.

  Example:
    >>> resolve_arch("|skip_connect~0|+|none~0|none~1|+|none~0|none~1|none~2|")[0]
    'nb201'
  """
  text = str(arch).strip()
  if text.endswith(".json") or os.path.isdir(text):
    text, summary_space = _read_summary(text)
    if space == "auto":
      space = summary_space
    elif summary_space not in ("auto", space):
      raise ConfigError(f"config.space is {space!r} but the summary's architecture is from "
                        f"{summary_space!r}; leave config.space at 'auto'.")
  if space == "auto":
    space = spaces.guess(text)
  if space not in spaces.names():
    raise ConfigError(f"space {space!r} is unknown; valid: auto, {', '.join(spaces.names())}.")
  chosen = spaces.get(space)
  return space, chosen.canonical(chosen.parse(text))


def build_network(config: ml_collections.ConfigDict, num_classes: int,
                  image_shape: tuple[int, int, int]) -> Network:
  """The Flax network ``config.arch`` describes, for ``num_classes`` and ``image_shape`` (HWC).

  The space's settings come from its config section (``config.nb201``: C and N); the section's
  other keys are network options (``config.macro``: ``no_reslink``, ``use_se``).
  """
  name, arch = resolve_arch(config.arch, config.space)
  space = spaces.from_config(name, config)
  options = spaces.options(space, config, "NETWORK_OPTIONS")
  module, init = space.network(arch, num_classes=num_classes, image_shape=image_shape, **options)
  return Network(name, arch, module, init)
