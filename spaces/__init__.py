"""Search spaces: each one a `Space` (`base.py`), named in the registry below.

Adding a space: write a module with a class that implements `base.Space` (a frozen dataclass whose
fields are its settings) or a factory of one, and add one line to `_REGISTRY`. Everything else
(the launchers, the search, training, the reports) reaches the space through `get`.

  >>> from rznas_jax import spaces
  >>> spaces.get("nb201", channels=8).costs("|skip_connect~0|+|none~0|none~1|+|none~0|none~1|none~2|")["params"] > 0
  True
"""

from __future__ import annotations

import importlib
from typing import Any, Mapping

from rznas_jax.spaces.base import Space, SpaceError, unknown_names

# name -> "module:attribute", imported on first use; the attribute, called with no arguments,
# gives the space with its default settings.
_REGISTRY = {
    "nb201": "rznas_jax.spaces.nb201_space:NB201Space",
    "zen_cifar": "rznas_jax.spaces.macro_spaces:zen_cifar",
    "mobilenet_imagenet": "rznas_jax.spaces.macro_spaces:mobilenet_imagenet",
    "maedet_coco": "rznas_jax.spaces.macro_spaces:maedet_coco",
    "darts": "rznas_jax.spaces.darts:DartsSpace",
}


def names() -> list[str]:
  """The registered spaces, in registry order."""
  return list(_REGISTRY)


def get(name: str, **settings: Any) -> Space:
  """The space ``name`` with ``settings`` (None values keep the space's defaults).

  Raises:
    SpaceError: an unknown name, a setting the space does not have, or a bad setting value.
  """
  if name not in _REGISTRY:
    raise SpaceError(f"unknown space {name!r}; valid spaces are {', '.join(_REGISTRY)}.")
  module, attr = _REGISTRY[name].split(":")
  space = getattr(importlib.import_module(module), attr)()
  unknown_names(settings, space.SETTINGS, "setting", name)
  return space.configure(**settings) if settings else space


def section(space: Space, config: Mapping[str, Any]) -> dict[str, Any]:
  """The space's section of a search, scoring or training config (``config[CONFIG_SECTION]``),
  as a dict; empty when the config has none."""
  return dict(config.get(space.CONFIG_SECTION) or {})


def from_config(name: str, config: Mapping[str, Any], **settings: Any) -> Space:
  """The space ``name`` configured from its section of ``config`` (the keys that are settings)
  and then ``settings`` (the ones it has; e.g. the search's top-level ``dataset``)."""
  space = get(name)
  values = {k: v for k, v in section(space, config).items() if k in space.SETTINGS}
  values.update({k: v for k, v in settings.items() if k in space.SETTINGS})
  return space.configure(**values) if values else space


def options(space: Space, config: Mapping[str, Any], kind: str) -> dict[str, Any]:
  """The options of ``kind`` (``SCORING_OPTIONS`` or ``NETWORK_OPTIONS``) that the space's
  section of ``config`` sets, None values left out."""
  wanted = getattr(space, kind)
  return {k: v for k, v in section(space, config).items() if k in wanted and v is not None}


def add_config_sections(config) -> None:
  """Adds to an `ml_collections.ConfigDict` (a search, scoring or training config) the section of
  every registered space that it lacks, from the space's `config_defaults` (so a new space's
  settings are config keys with no change to the jobs' configs)."""
  import ml_collections  # pylint: disable=g-import-not-at-top
  for name in _REGISTRY:
    space = get(name)
    if space.CONFIG_SECTION not in config and hasattr(space, "config_defaults"):
      config[space.CONFIG_SECTION] = ml_collections.ConfigDict(space.config_defaults())


def guess(text: str) -> str:
  """The first registered space whose grammar reads ``text`` (its `parse`, before validation),
  for tools that take an architecture without its space.

  Raises:
    UserError: the parse error of the first space whose example genotype starts like ``text``
      (so a mistyped NB201 cell gets the NB201 parser's reason), else a SpaceError.
  """
  errors = []
  for name in _REGISTRY:
    space = get(name)
    try:
      space.parse(text)
      return name
    except ValueError as e:
      errors.append((space, e))
  for space, error in errors:
    if space.example()[0][:1] == text.strip()[:1]:
      raise error
  raise SpaceError(f"{text[:200]!r} is not an architecture of any space; valid spaces: "
                   f"{', '.join(_REGISTRY)}, e.g. {get(next(iter(_REGISTRY))).example()[0]}.")
