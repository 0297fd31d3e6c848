"""What the scoring launchers share: their flags, the search spaces they know, one-line errors.

Bad user input (a flag value, a genotype, a proxy name, a data or benchmark file) ends the run
with one sentence on stderr that names the bad value and what would be valid, and exit code 2.
Only the preparation of a run (`user_input_errors`) turns exceptions into such sentences; an
exception while scoring is a bug and keeps its traceback.

Adding a search space: write a class with the methods of `NB201Space` and add it to `SPACES`.
The macro spaces (`MacroSpaceLauncher`: zen_cifar, mobilenet_imagenet, maedet_coco) take their
budgets, layer limit, resolution and classes from the macro flags below; the NB201 network flags
(--channels, --cells_per_stage, --strategy, --chunk_size) are an error with them, and the macro
flags are an error with nb201.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import time
from typing import Any, Sequence

from absl import flags
from tqdm import tqdm

# Only NumPy-based modules here: the inputs they can check (space, archs, data, benchmark) fail in
# a fraction of a second, before JAX and the proxies are imported.
from rznas_jax import data as data_lib
from rznas_jax.spaces import macro
from rznas_jax.spaces import macro_spaces
from rznas_jax.spaces import nb201

from launch.cli import (USAGE_EXIT_CODE, USER_ERRORS, enable_compilation_cache, fail, parse_flags,  # pylint: disable=unused-import
                        run, user_input_errors)

FLAGS = flags.FLAGS
GAUSSIAN_DATA = "gaussian"

flags.DEFINE_list("proxies", None, "Comma-separated proxy names or aggregates of them (az_nas, "
                  "rank:a+b, rank_linear:a+b), e.g. synflow,naswot,az_nas.", required=True)
flags.DEFINE_string("data", GAUSSIAN_DATA,
                    "'gaussian' (N(0,1) images, random labels), a CIFAR python-pickle directory or an "
                    ".npz file with 'images' (N, H, W, 3) uint8 and 'labels' (N,).")
flags.DEFINE_string("dataset", "cifar10",
                    "nb201: dataset the network is built for (classes, input size): cifar10, "
                    "cifar100, imagenet16-120; also picks the normalisation of real images. Macro "
                    "spaces: only the normalisation of real images (cifar10, cifar100, "
                    "imagenet16-120, imagenet), by default CIFAR for zen_cifar, else ImageNet.")
flags.DEFINE_integer("seed", 0, "Seeds the sampled architectures, the init, the batch and the proxies.")
flags.DEFINE_integer("batch_size", 64, "Images per proxy batch.", lower_bound=1)
flags.DEFINE_string("strategy", "auto", "Scoring strategy: auto, switch, masked_vmap, masked.")
flags.DEFINE_integer("chunk_size", 8, "Cells per vmapped call (masked_vmap), per device with "
                     "--all_devices.", lower_bound=1)
flags.DEFINE_bool("all_devices", False, "Spread the work over every device: NB201 cells sharded "
                  "over a mesh of all devices (chunk_size cells per device per call); macro "
                  "architectures placed round-robin, compiled and run side by side.")
flags.DEFINE_integer("channels", 16, "Channels of the first stage (NAS-Bench-201: 16).", lower_bound=1)
flags.DEFINE_integer("cells_per_stage", 5, "Cells per stage (NAS-Bench-201: 5).", lower_bound=1)
flags.DEFINE_integer("resolution", None, "Macro spaces: input size, overriding the space's (32, 224, "
                     "480); budgets are checked at this size.", lower_bound=1)
flags.DEFINE_integer("num_classes", None, "Macro spaces: classifier width, overriding the space's.",
                     lower_bound=1)
flags.DEFINE_float("budget_flops", None, "Macro spaces: FLOPs (multiply-accumulate) budget, e.g. 450e6.",
                   lower_bound=0)
flags.DEFINE_float("budget_params", None, "Macro spaces: parameter budget, e.g. 1e6.", lower_bound=0)
flags.DEFINE_integer("max_layers", None, "Macro spaces: layer limit, overriding the space's.",
                     lower_bound=1)
flags.DEFINE_bool("scan", False, "Macro spaces: run a block's repeated sub-layers as one nn.scan "
                  "(shorter compiles for deep blocks; slower on a CPU).")
flags.DEFINE_string("compilation_cache_dir", None,
                    "Enables JAX's persistent compilation cache in this folder.")
flags.DEFINE_string("out", None, "Output folder (created if missing).", required=True)

# Exceptions that carry a sentence for the user. OSError covers a missing file and an unusable
# --out folder. The registry's UnknownProxyError (a KeyError) is matched in `cli.is_user_error`.
NB201_ONLY_FLAGS = ("channels", "cells_per_stage", "strategy", "chunk_size")
MACRO_ONLY_FLAGS = ("resolution", "num_classes", "budget_flops", "budget_params", "max_layers", "scan")


# --- flags and errors ------------------------------------------------------------------------------


# --- search spaces ---------------------------------------------------------------------------------


class NB201Space:
  """NAS-Bench-201: the 15,625 cells, scored by `rznas_jax.scoring.NB201Scorer`."""

  name = "nb201"
  size = nb201.NUM_ARCHS

  def parse_archs(self, spec: str, seed: int) -> list[nb201.Arch]:
    """``all``, ``random:N`` (N distinct cells drawn with ``seed``) or comma-separated genotypes.

    Raises:
      ValueError: a spec of none of these forms, or N out of 1..15625.
      GenotypeError: a malformed genotype in the list.
    """
    text = spec.strip()
    if text == "all":
      return nb201.all_archs()
    if text.startswith("random:"):
      count = text[len("random:"):]
      if not count.strip().isdigit() or not 1 <= int(count) <= self.size:
        raise ValueError(f"--archs={spec!r} needs a count between 1 and {self.size} after 'random:', "
                         "e.g. random:100.")
      return nb201.random_archs(int(count), seed)
    if "|" in text:
      genotypes = [g for g in text.split(",") if g.strip()]
      if genotypes:
        return [nb201.parse_genotype(g) for g in genotypes]
    raise ValueError(f"--archs={spec!r} is not 'all', 'random:N' or a comma-separated list of "
                     "genotypes such as '|nor_conv_3x3~0|+|none~0|skip_connect~1|+|avg_pool_3x3~0|"
                     "nor_conv_1x1~1|skip_connect~2|'.")

  def sample(self, num_archs: str, seed: int) -> list[nb201.Arch]:
    """``num_archs`` distinct cells drawn with ``seed``; ``all`` or ``0`` for every cell in order."""
    text = num_archs.strip()
    if text in ("all", "0"):
      return nb201.all_archs()
    if not text.isdigit() or not 1 <= int(text) <= self.size:
      raise ValueError(f"--num_archs={num_archs!r} must be a count between 1 and {self.size}, or "
                       "'all' (or 0) for every architecture.")
    return nb201.random_archs(int(text), seed)

  def genotype(self, arch: nb201.Arch) -> str:
    return arch.genotype

  def load_benchmark(self, path: str | None) -> nb201.BenchmarkTable:
    """The nats_bench.csv-format table at ``path``, or the packaged NATS-Bench table when None."""
    return nb201.BenchmarkTable.load(path) if path else nb201.BenchmarkTable.packaged()

  def check_in_benchmark(self, archs: Sequence[nb201.Arch], table: nb201.BenchmarkTable, path: str) -> None:
    known = set(table.archs)
    missing = [a for a in archs if a not in known]
    if missing:
      raise ValueError(f"benchmark table {path!r} lacks {len(missing)} of the {len(archs)} "
                       f"architectures, e.g. {missing[0].genotype}; give a table of all "
                       f"{self.size} NAS-Bench-201 architectures.")

  def benchmark_datasets(self) -> tuple[str, ...]:
    return tuple(nb201.BenchmarkTable.DATASET_COLUMNS)

  def scorer(self, proxies: Sequence[str], images: data_lib.ImageSet | None):
    """The scoring harness for ``proxies``, configured by the shared flags."""
    from rznas_jax import scoring  # pylint: disable=g-import-not-at-top
    reject_flags_given(MACRO_ONLY_FLAGS, f"--space={self.name}")
    setting = scoring.NB201Setting(FLAGS.dataset, FLAGS.channels, FLAGS.cells_per_stage)
    if images is not None:  # the scorer checks the images only after initialising the network
      data_lib.real_batch(images, FLAGS.batch_size, FLAGS.seed, setting.dataset, setting.resolution)
    mesh = scoring.cell_mesh() if FLAGS.all_devices else None
    strategy = FLAGS.strategy
    if mesh is not None and strategy == "masked":
      raise ValueError("--strategy=masked scores one cell per call; with --all_devices use auto, "
                       "switch or masked_vmap.")
    chunk = FLAGS.chunk_size if mesh is None or not FLAGS["chunk_size"].using_default_value else 1
    return scoring.NB201Scorer(proxies, setting, images=images, batch_size=FLAGS.batch_size,
                               seed=FLAGS.seed, strategy=strategy, chunk_size=chunk, mesh=mesh)


def reject_flags_given(names: Sequence[str], context: str) -> None:
  """ValueError if any flag in ``names`` was set on the command line (they mean nothing here)."""
  given = [f"--{n}" for n in names if not FLAGS[n].using_default_value]
  if given:
    raise ValueError(f"{', '.join(given)} cannot be used with {context}; "
                     f"{'it applies' if len(given) == 1 else 'they apply'} to other spaces only.")


def split_structures(spec: str) -> list[str]:
  """Splits ``--archs`` into items at ';' and whitespace outside parentheses.

  Commas separate a block's arguments, so they cannot separate architectures; whitespace inside
  ``Name(3, 8, 1, 1)`` stays with its block.
  """
  items, current, depth = [], [], 0
  for ch in spec:
    if ch == "(":
      depth += 1
    elif ch == ")":
      depth = max(0, depth - 1)
    if depth == 0 and (ch == ";" or ch.isspace()):
      if current:
        items.append("".join(current))
      current = []
    else:
      current.append(ch)
  if current:
    items.append("".join(current))
  return items


class MacroSpaceLauncher:
  """A macro space (``rznas_jax.spaces.macro_spaces``), scored by `macro_scoring.MacroScorer`.

  The space is made from the flags each time it is asked for: ``--resolution``,
  ``--num_classes``, ``--budget_flops``, ``--budget_params`` and ``--max_layers`` override its
  defaults (before parsing, the flags hold their defaults, so the space is the stock one).
  """

  def __init__(self, name: str):
    if name not in macro_spaces.SPACES:
      raise ValueError(f"unknown macro space {name!r}; valid: {', '.join(macro_spaces.SPACES)}.")
    self.name = name
    self.size = None  # not enumerable

  def space(self) -> macro_spaces.MacroSpace:
    """The space with the flags' overrides applied."""
    factory = macro_spaces.SPACES[self.name]
    accepted = inspect.signature(factory).parameters
    kwargs = {k: FLAGS[k].value for k in ("resolution", "num_classes", "max_layers")
              if FLAGS[k].value is not None}
    later = {}
    for flag, kwarg, field in (("budget_params", "params", "budget_params"),
                               ("budget_flops", "flops", "budget_flops")):
      value = FLAGS[flag].value
      if value is None:
        continue
      if kwarg in accepted:  # the factory's own budget (it may set the layer limit from it)
        kwargs[kwarg] = value
      else:
        later[field] = value
    space = factory(**kwargs)
    return dataclasses.replace(space, **later) if later else space

  def parse_archs(self, spec: str, seed: int) -> list[macro.Arch]:
    """``random:N``, ``initial`` or structure strings separated by ';' or whitespace.

    ``random:N``: N distinct valid architectures from a random walk of the space's mutation from
    its initial structure, seeded by ``seed`` (`macro_scoring.random_archs`). ``initial`` (also
    inside a list): the space's initial structure. Every architecture is validated.

    Raises:
      ValueError: a spec of none of these forms, N < 1, or an architecture that does not parse
        or is not in the space (over budget, too many layers, ...), naming it and the reasons.
    """
    reject_flags_given(NB201_ONLY_FLAGS, f"--space={self.name}")
    space = self.space()
    text = spec.strip()
    if text.startswith("random:"):
      count = text[len("random:"):].strip()
      if not count.isdigit() or int(count) < 1:
        raise ValueError(f"--archs={spec!r} needs a positive count after 'random:', e.g. random:100.")
      from rznas_jax import macro_scoring  # pylint: disable=g-import-not-at-top  (imports JAX)
      return macro_scoring.random_archs(space, int(count), seed)
    items = [space.initial if item == "initial" else item for item in split_structures(text)]
    if not items:
      raise ValueError(f"--archs={spec!r} is empty; give 'initial', 'random:N' or structure "
                       f"strings separated by ';', e.g. {space.initial}.")
    return _check_macro_archs(space, items)

  def sample(self, num_archs: str, seed: int) -> list[macro.Arch]:
    """``num_archs`` random valid architectures (see `parse_archs`'s ``random:N``)."""
    text = num_archs.strip()
    if not text.isdigit() or int(text) < 1:
      raise ValueError(f"--num_archs={num_archs!r} must be a positive count for the {self.name} "
                       "space, which cannot be enumerated.")
    return self.parse_archs(f"random:{text}", seed)

  def genotype(self, arch: macro.Arch) -> str:
    return arch.structure

  def load_benchmark(self, path: str | None):
    given = f"--benchmark={path!r} cannot be used" if path else "there is nothing to correlate with"
    raise ValueError(f"the {self.name} space has no benchmark table (its accuracies need "
                     f"training), so {given}; correlate with --space=nb201.")

  def check_in_benchmark(self, archs, table, path: str) -> None:
    self.load_benchmark(path)

  def benchmark_datasets(self) -> tuple[str, ...]:
    return ()

  def scorer(self, proxies: Sequence[str], images: data_lib.ImageSet | None):
    """A `MacroScorer` for ``proxies`` in the flag-configured space."""
    from rznas_jax import macro_scoring  # pylint: disable=g-import-not-at-top
    reject_flags_given(NB201_ONLY_FLAGS, f"--space={self.name}")
    normalization = None
    if not FLAGS["dataset"].using_default_value:
      normalization = FLAGS.dataset
      if normalization not in macro_scoring.NORMALIZATIONS:
        raise ValueError(f"--dataset={normalization!r} is not a normalisation of real images for "
                         f"the {self.name} space; valid: {', '.join(macro_scoring.NORMALIZATIONS)}.")
    import jax  # pylint: disable=g-import-not-at-top
    return macro_scoring.MacroScorer(proxies, self.space(), images=images,
                                     batch_size=FLAGS.batch_size, seed=FLAGS.seed, scan=FLAGS.scan,
                                     normalization=normalization,
                                     devices=jax.devices() if FLAGS.all_devices else None)


def _check_macro_archs(space: macro_spaces.MacroSpace, items: Sequence[str]) -> list[macro.Arch]:
  """Every item parsed and validated; ValueError naming the first bad one and its reasons.

  `macro_scoring.check_archs` does the same for the library; this copy keeps JAX unimported
  until the input is known to be good, so a bad string fails in a fraction of a second.
  """
  archs = []
  for i, item in enumerate(items):
    where = f"--archs structure {i + 1} of {len(items)}" if len(items) > 1 else "--archs structure"
    shown = item if len(item) <= 300 else item[:300] + "..."
    try:
      arch = space.parse(item)
    except macro.StructureError as e:
      raise ValueError(f"{where} {shown!r} is malformed: {' '.join(e.reasons)}") from None
    reasons = space.validate(arch)
    if reasons:
      raise ValueError(f"{where} {shown!r} is not in the {space.name} space: {' '.join(reasons)}")
    archs.append(arch)
  return archs


SPACES = {"nb201": NB201Space(), **{name: MacroSpaceLauncher(name) for name in macro_spaces.SPACES}}
flags.DEFINE_string("space", "nb201", f"Search space; valid: {', '.join(SPACES)}.")


def get_space(name: str):
  """The launcher support for space ``name``; ValueError listing the valid spaces."""
  if name not in SPACES:
    raise ValueError(f"unknown space {name!r}; valid spaces are {', '.join(SPACES)}.")
  return SPACES[name]


# --- preparing a run -------------------------------------------------------------------------------


def check_proxies(names: Sequence[str]) -> list[str]:
  """The ``--proxies`` list: registered proxies or aggregates (``az_nas``, ``rank:a+b``), checked.

  Raises:
    ValueError: an empty list, a name listed twice, or a bad name (`fitness.FitnessError`, one
      sentence naming the valid proxies).
  """
  from rznas_jax import fitness  # pylint: disable=g-import-not-at-top
  from rznas_jax import proxies as proxy_lib  # pylint: disable=g-import-not-at-top
  names = [n.strip() for n in names if n.strip()]
  if not names:
    raise ValueError(f"--proxies is empty; give one or more of {', '.join(proxy_lib.names())}.")
  for name in names:
    fitness.parse(name, proxy_lib.names())
  repeated = sorted({n for n in names if names.count(n) > 1})
  if repeated:
    raise ValueError(f"proxy {repeated[0]!r} is listed more than once in --proxies.")
  return names


def proxies_to_score(names: Sequence[str]) -> list[str]:
  """The registered proxies that the ``--proxies`` names read (an aggregate's components)."""
  from rznas_jax import fitness  # pylint: disable=g-import-not-at-top
  from rznas_jax import proxies as proxy_lib  # pylint: disable=g-import-not-at-top
  return fitness.components_of(fitness.parse(n, proxy_lib.names()) for n in names)


def with_aggregates(names: Sequence[str], scores: dict) -> dict:
  """``scores`` of the components plus every aggregate of ``names``, ranked among the scored
  architectures (the reference set of ``launch.correlate`` and ``launch.score``), in the order
  of ``names`` followed by components that were not named."""
  from rznas_jax import fitness  # pylint: disable=g-import-not-at-top
  from rznas_jax import proxies as proxy_lib  # pylint: disable=g-import-not-at-top
  full = fitness.with_aggregates([fitness.parse(n, proxy_lib.names()) for n in names], scores)
  return {name: full[name] for name in [*names, *(k for k in full if k not in names)]}


def load_data(spec: str) -> data_lib.ImageSet | None:
  """None for ``gaussian``, else the images at the path (DataError when unusable)."""
  if spec == GAUSSIAN_DATA:
    return None
  if not os.path.exists(spec):
    raise data_lib.DataError(f"--data={spec!r} does not exist; give {GAUSSIAN_DATA!r}, a CIFAR "
                             "python-pickle directory or an .npz file with 'images' and 'labels'.")
  return data_lib.load_images(spec)


def prepare_out_dir(path: str) -> str:
  """Creates ``--out`` now, so an unusable folder fails before the scoring, not after it."""
  if os.path.exists(path) and not os.path.isdir(path):
    raise NotADirectoryError(f"--out={path!r} is a file; give a folder (it is created if missing).")
  os.makedirs(path, exist_ok=True)
  if not os.access(path, os.W_OK):
    raise PermissionError(f"output folder {path!r} is not writable; choose another --out.")
  return path


def flag_settings(names: Sequence[str]) -> dict[str, Any]:
  """The values of the flags ``names``, for the run record."""
  return {name: FLAGS[name].value for name in names}


SHARED_FLAGS = ("space", "proxies", "data", "dataset", "seed", "batch_size", "strategy", "all_devices",
                "chunk_size", "channels", "cells_per_stage", "compilation_cache_dir", "out") + MACRO_ONLY_FLAGS


# --- running ---------------------------------------------------------------------------------------


class ProxyProgress:
  """A tqdm bar over every (cell, proxy) score, fed by a scorer's ``progress(count, label)``.

  The bar is named after the proxy (or fused group "a+b") whose scores it is counting, as the
  scorer reports it: scorers do not follow the order of the proxies given (NB201 scores the
  analytic ones first). `seconds` holds each label's wall time, compilation included: the time
  since the previous call is charged to the label of the current one.
  """

  def __init__(self, proxies: Sequence[str], num_archs: int):
    self._label = None
    self._last = time.perf_counter()
    self.seconds: dict[str, float] = {}
    self._bar = tqdm(total=num_archs * len(proxies), unit="score", dynamic_ncols=True)

  def start_clock(self) -> float:
    """Starts timing the first proxy now; returns the time."""
    self._last = time.perf_counter()
    return self._last

  def __call__(self, count: int, label: str) -> None:
    now = time.perf_counter()
    self.seconds[label] = self.seconds.get(label, 0.0) + now - self._last
    self._last = now
    if label != self._label:
      self._label = label
      self._bar.set_description(label, refresh=False)
    self._bar.update(count)
    if count == 0:
      self._bar.refresh()  # a group starting: show its name before its (maybe long) first chunk

  def close(self) -> None:
    self._bar.close()


def score_with_progress(scorer, proxies: Sequence[str], archs: Sequence[Any]) -> tuple[dict, dict]:
  """Scores ``archs`` with a progress bar; returns ({proxy: scores}, timing in seconds).

  The timing's ``proxy_seconds`` is keyed like the bar: by proxy, or "a+b" for proxies the
  scorer fused into one compiled function (their time cannot be split).
  """
  progress = ProxyProgress(proxies, len(archs))
  start = progress.start_clock()
  try:
    scores = scorer.score(archs, progress=progress)
  finally:
    progress.close()
  seconds = time.perf_counter() - start
  timing = {
      "scoring_seconds": seconds,
      "archs_per_second": len(archs) / seconds if seconds > 0 else None,
      "proxy_seconds": progress.seconds,
      "compile_seconds": dict(getattr(scorer, "compile_seconds", {})),
  }
  return scores, timing


def environment(scorer) -> dict[str, Any]:
  """Where the run ran: JAX version, backend, devices, the resolved strategy and proxy variants."""
  import jax  # pylint: disable=g-import-not-at-top
  from rznas_jax import proxies as proxy_lib  # pylint: disable=g-import-not-at-top
  specs = {}
  for spec in getattr(scorer, "specs", ()):
    specs[spec.name] = {"init": spec.init, "data": spec.data, "dtype": spec.dtype, "source": spec.source}
  record = {
      "resolved_strategy": getattr(scorer, "strategy", None),
      "jax_version": jax.__version__,
      "backend": jax.default_backend(),
      "devices": [str(d) for d in jax.devices()],
      "proxy_specs": specs,
      "registered_proxies": proxy_lib.names(),
  }
  space = getattr(scorer, "space", None)
  if isinstance(space, macro_spaces.MacroSpace):  # the space as scored, after the flag overrides
    record["macro_space"] = {
        "name": space.name, "resolution": space.resolution, "num_classes": space.num_classes,
        "budget_flops": space.budget_flops, "budget_params": space.budget_params,
        "max_layers": space.max_layers, "convention": space.convention,
        "normalization": getattr(scorer, "normalization", None)}
  return record
