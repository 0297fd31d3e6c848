"""The `Space` contract: everything the library asks of a search space, in one protocol.

A space is a configured value (its settings are fields): NAS-Bench-201 with a dataset and a
network size, or a macro space with its budgets. The launchers, the search, the training driver
and the reports only ever hold a `Space` and call these methods; none of them asks which space it
is. `rznas_jax.spaces.get(name, **settings)` makes one from the registry in ``__init__.py``.

Architectures cross the library as canonical genotype strings (what the LLM reads and writes,
what the run folder stores); a space parses them into its own architecture value when it builds
a network or counts costs.

Errors a user can cause (a bad genotype, a setting the space does not have, a proxy the space
cannot run) are `SpaceError`s or the spaces' own parse errors, all `rznas_jax.errors.UserError`:
one sentence naming the bad value and what would be valid.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any, Mapping, Protocol, Sequence

import numpy as np

from rznas_jax.errors import UserError
from rznas_jax.spaces import reply_format


class SpaceError(UserError):
  """A space, setting, option or architecture list that cannot be used; the message says why."""


@dataclasses.dataclass(frozen=True)
class Operation:
  """One operation of a space as the prompt describes it: a name, a sentence and its code."""
  name: str
  text: str
  code: str


def source_of(obj: Any) -> str:
  """The source code of a function or class of ours, as the prompt shows it."""
  return inspect.cleandoc(inspect.getsource(obj))


class Space(Protocol):
  """What a search space provides. `NB201Space` and `macro_spaces.MacroSpace` implement it.

  Class attributes:
    SETTINGS: names of the settings `configure` takes (they shape the architectures or the
      network: dataset, widths, budgets); launch flags and config keys of the same names.
    SCORING_OPTIONS: names of the keyword options `scorer` takes besides the common ones (how to
      score, not what: a strategy, a scan, an image normalisation).
    NETWORK_OPTIONS: names of the keyword options `network` takes (how the trained network is
      built: Zen-NAS shortcuts, squeeze-and-excitation).
    CONFIG_SECTION: the section of a search or training config that holds the settings and
      options (``config.nb201``, ``config.macro``).
    COST_KEYS: the numeric costs `costs` returns (params, flops, ...), for summaries and for
      analytic proxies.
  """

  name: str
  size: int | None  # architectures in the space when it can be enumerated, else None
  SETTINGS: tuple[str, ...]
  SCORING_OPTIONS: tuple[str, ...]
  NETWORK_OPTIONS: tuple[str, ...]
  CONFIG_SECTION: str
  COST_KEYS: tuple[str, ...]

  def configure(self, **settings: Any) -> "Space":
    """This space with ``settings`` (names in `SETTINGS`) changed; SpaceError for a bad value."""

  # --- genotypes ---
  def parse(self, genotype: str) -> Any:
    """The architecture value of ``genotype``; raises the space's parse error (a UserError)."""

  def check(self, genotype: str) -> tuple[str | None, list[str]]:
    """(canonical genotype, []) for a member of the space; (None, reasons) otherwise."""

  def canonical(self, arch: Any) -> str:
    """The canonical genotype string of an architecture value."""

  def archs(self, spec: str, seed: int) -> list[Any]:
    """Architectures from a user's list: ``random:N``, a space's own words (``all``,
    ``initial``), or genotypes; SpaceError (or a parse error) naming the bad item."""

  def random_population(self, n: int, rng: np.random.Generator) -> list[str]:
    """``n`` distinct members, the search's initial population."""

  def random_mutation(self, genotype: str, rng: np.random.Generator) -> str:
    """The original (non-LLM) mutation; the child may be outside the space: `check` it."""

  def edits(self, parent: str, child: str) -> list[str]:
    """The kinds of edit from ``parent`` to ``child`` (what reflection learns about)."""

  def neighbours(self, genotype: str) -> list[str]:
    """Every architecture one edit away, for a space small enough to list them; else []."""

  def costs(self, arch: Any) -> dict[str, Any]:
    """Exact cost counters of an architecture (value or genotype); at least `COST_KEYS`."""

  # --- the prompt ---
  def operations(self) -> list[Operation]: ...

  def rules(self) -> str: ...

  def construction_code(self) -> str: ...

  def example(self) -> tuple[str, str, str]:
    """(parent genotype, child genotype, the reasoning that led from one to the other)."""

  def reply_expression(self) -> Any:
    """The genotype language as a `reply_format` expression (regex, JSON schema and GBNF)."""

  # --- networks, scoring, ground truth ---
  def network(self, arch: Any, *, num_classes: int | None = None, **options: Any) -> Any:
    """The Flax module of ``arch`` as it is trained, and its initialiser: ``(module, init)``
    with ``init(key, image_shape) -> variables``."""

  def check_proxies(self, names: Sequence[str]) -> None:
    """SpaceError-like `UserError` for a proxy this space cannot score (one sentence)."""

  def scorer(self, proxies: Sequence[str], *, images: Any = None, batch_size: int = 64,
             seed: int = 0, devices: Sequence[Any] | None = None, **options: Any) -> Any:
    """A `rznas_jax.scorer.Scorer` of ``proxies`` for this space's architecture values."""

  def benchmark(self, path: str | None = None) -> Any:
    """The ground-truth table (an `nb201.BenchmarkTable`-like object: ``source``, ``accuracy``,
    ``index``, ``lookup``, ``rank``, ``check_covers``), the packaged one when ``path`` is None;
    None for a space without one (a ``path`` is then a SpaceError)."""

  def draw(self, genotype: str, path: str, title: str | None = None) -> None:
    """Draws the architecture into the PNG ``path`` (the reports)."""

  # Optional: ``config_defaults() -> dict``, the space's config section (settings and options with
  # their defaults) for jobs whose config does not write one (`spaces.add_config_sections`).


class ReplyFormat:
  """`arch_pattern`, `reply_schema` and `reply_grammar` of a space, all rendered by
  `reply_format` from the space's `reply_expression` (a mixin for `Space` classes)."""

  def arch_pattern(self) -> str:
    return reply_format.arch_pattern(self)

  def reply_schema(self) -> dict:
    return reply_format.reply_schema(self)

  def reply_grammar(self) -> str:
    return reply_format.reply_grammar(self)


def unknown_names(given: Mapping[str, Any], valid: Sequence[str], what: str, space: str) -> None:
  """SpaceError naming the first key of ``given`` (with a non-None value) not in ``valid``."""
  bad = [k for k, v in given.items() if v is not None and k not in valid]
  if bad:
    listed = ", ".join(valid) if valid else "none"
    raise SpaceError(f"{what} {bad[0]!r} does not apply to the {space} space; its {what}s are: "
                     f"{listed}.")
