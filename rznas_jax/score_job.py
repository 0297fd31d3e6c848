"""Scoring jobs: score architectures of a space with proxies, and correlate the scores with a
benchmark table. ``launch.score`` and ``launch.correlate`` are thin shells around `run`.

A job is an `ml_collections.ConfigDict` (`default_config`) like a search or a training run. `run`
checks every user input first (space, architectures, proxies, images, output folder, table), in
a fraction of a second and before JAX compiles anything; a bad one is a `UserError` naming it.
Then it scores with a progress bar and writes ``scores.csv`` and ``scores.json`` (and, for a
correlation, ``correlation.json`` and ``correlation.png``).
"""

from __future__ import annotations

import functools
import os
import time
from typing import Any, Sequence

import ml_collections
import numpy as np
from tqdm import tqdm

from rznas_jax import data as data_lib
from rznas_jax import results
from rznas_jax import spaces as spaces_lib
from rznas_jax.errors import UserError

GAUSSIAN_DATA = "gaussian"
CORRELATION_JSON = "correlation.json"
NAN_POLICIES = ("lowest", "omit")


def default_config(correlate: bool = False) -> ml_collections.ConfigDict:
  """Every key a scoring job reads. ``correlate``: the defaults of ``launch.correlate``."""
  c = ml_collections.ConfigDict()
  c.space = "nb201"
  c.proxies = ""  # comma-separated proxies or aggregates (az_nas, rank:a+b)
  # score: 'all', 'random:N' or a list of the space's genotypes; correlate: a count or 'all'.
  c.archs = "1000" if correlate else "random:100"
  c.data = GAUSSIAN_DATA  # 'gaussian', a CIFAR python-pickle directory or an .npz file
  c.dataset = ""  # nb201: the network's dataset; macro: the normalisation of real images
  c.seed = 0
  c.batch_size = 64
  c.all_devices = False  # spread the work over every device
  c.workers = 0  # score on this many worker processes pinned to CPU cores (0: in this process)
  c.compilation_cache = ""
  c.out = ""
  c.correlate = correlate
  c.benchmark = ""  # correlate: a table file; empty = the space's packaged table
  c.nan_policy = "lowest"  # correlate: a NaN score ranks lowest, or 'omit' leaves it out
  c.plot = True  # correlate: also draw correlation.png

  c.nb201 = ml_collections.ConfigDict()
  c.nb201.channels = 16
  c.nb201.cells_per_stage = 5
  c.nb201.strategy = "auto"
  c.nb201.chunk_size = ml_collections.FieldReference(None, field_type=int)

  c.macro = ml_collections.ConfigDict()
  for key in ("resolution", "num_classes", "max_layers"):
    c.macro[key] = ml_collections.FieldReference(None, field_type=int)
  for key in ("budget_flops", "budget_params"):
    c.macro[key] = ml_collections.FieldReference(None, field_type=float)
  c.macro.scan = False
  spaces_lib.add_config_sections(c)  # a space registered later brings its own section
  return c


def settings_record(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """The job's settings, flat (a section's keys without their prefix), for ``scores.json``."""
  flat = {}
  for key, value in config.to_dict().items():
    if isinstance(value, dict):
      flat.update(value)
    else:
      flat[key] = value
  flat["proxies"] = proxy_names(config.proxies)
  return flat


def proxy_names(spec: str | Sequence[str]) -> list[str]:
  items = spec.split(",") if isinstance(spec, str) else list(spec)
  return [n.strip() for n in items if n.strip()]


def check_proxies(names: Sequence[str]) -> list[str]:
  """The proxy list: registered proxies or aggregates (``az_nas``, ``rank:a+b``), checked.

  Raises:
    UserError: an empty list, a name listed twice, or a bad name (naming the valid proxies).
  """
  from rznas_jax import fitness  # pylint: disable=g-import-not-at-top
  from rznas_jax import proxies as proxy_lib  # pylint: disable=g-import-not-at-top
  if not names:
    raise UserError(f"--proxies is empty; give one or more of {', '.join(proxy_lib.names())}.")
  for name in names:
    fitness.parse(name, proxy_lib.names())
  repeated = sorted({n for n in names if names.count(n) > 1})
  if repeated:
    raise UserError(f"proxy {repeated[0]!r} is listed more than once in --proxies.")
  return list(names)


def components(names: Sequence[str]) -> list[str]:
  """The registered proxies that ``names`` read (an aggregate's components)."""
  from rznas_jax import fitness  # pylint: disable=g-import-not-at-top
  from rznas_jax import proxies as proxy_lib  # pylint: disable=g-import-not-at-top
  return fitness.components_of(fitness.parse(n, proxy_lib.names()) for n in names)


def with_aggregates(names: Sequence[str], scores: dict) -> dict:
  """``scores`` of the components plus every aggregate of ``names``, ranked among the scored
  architectures, in the order of ``names`` followed by components that were not named."""
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
  """Creates the output folder now, so an unusable one fails before the scoring, not after it."""
  if not path:
    raise UserError("--out is empty; give the folder to write the scores to.")
  if os.path.exists(path) and not os.path.isdir(path):
    raise UserError(f"--out={path!r} is a file; give a folder (it is created if missing).")
  try:
    os.makedirs(path, exist_ok=True)
  except OSError as e:
    raise UserError(f"--out={path!r} cannot be created ({e.strerror}); choose another folder.") from None
  if not os.access(path, os.W_OK):
    raise UserError(f"output folder {path!r} is not writable; choose another --out.")
  return path


class ProxyProgress:
  """A tqdm bar over every (architecture, proxy) score, fed by a scorer's ``progress(count, label)``.

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


def environment(space, scorer) -> dict[str, Any]:
  """Where the job ran: JAX version, backend, devices, the resolved strategy, the proxy variants
  and the space as scored."""
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
  if hasattr(scorer, "cpu_shares"):  # a worker pool: its processes' cores
    record["worker_cpus"] = scorer.cpu_shares
  if "budget_flops" in space.SETTINGS:  # a macro space, as scored after the settings
    record["macro_space"] = {
        "name": space.name, "resolution": space.resolution, "num_classes": space.num_classes,
        "budget_flops": space.budget_flops, "budget_params": space.budget_params,
        "max_layers": space.max_layers, "convention": space.convention,
        "normalization": getattr(scorer, "normalization", None)}
  return record


def sample(space, count: str, seed: int, table: Any = None) -> list[Any]:
  """A correlation's architectures: ``count`` of them drawn with ``seed``; 'all' or 0 for all.

  A space that cannot be enumerated but has a table of some of its architectures (DARTS and
  NAS-Bench-301) draws from the table's architectures (``table.archs``) instead."""
  text = str(count).strip()
  if space.size is None and getattr(table, "archs", None):
    listed = list(table.archs)
    if text in ("all", "0"):
      return [space.parse(a) for a in listed]
    if not text.isdigit() or not 1 <= int(text) <= len(listed):
      raise UserError(f"--num_archs={count!r} must be a count between 1 and {len(listed)} (the "
                      f"architectures of {table.source}), or 'all' (or 0).")
    picked = np.sort(np.random.default_rng(seed).choice(len(listed), int(text), replace=False))
    return [space.parse(listed[i]) for i in picked]
  if text in ("all", "0"):
    if space.size is None:
      raise UserError(f"--num_archs={count!r}: the {space.name} space cannot be enumerated; give "
                      "a positive count.")
    return space.archs("all", seed)
  if not text.isdigit() or (space.size is not None and int(text) > space.size):
    limit = f"between 1 and {space.size}" if space.size else "positive"
    raise UserError(f"--num_archs={count!r} must be a count {limit}, or 'all' (or 0) for every "
                    "architecture.")
  return space.archs(f"random:{text}", seed)


def check_workers(config: ml_collections.ConfigDict) -> None:
  """UserError for a ``workers`` count this machine cannot run, or one given with all_devices."""
  if not config.workers:
    return
  from rznas_jax import worker_pool  # pylint: disable=g-import-not-at-top
  try:
    worker_pool.cpu_shares(config.workers)
  except ValueError as e:
    raise UserError(f"--{str(e).rstrip('.')}; 0 scores in this process.") from None
  if config.all_devices:
    raise UserError("--workers and --all_devices both spread the work; give one of them.")


def build_scorer(config: ml_collections.ConfigDict, proxies: Sequence[str], images: Any,
                 options: dict):
  """The job's scorer, built in a worker process (`rznas_jax.worker_pool`)."""
  space = spaces_lib.from_config(config.space, config, dataset=config.dataset or None)
  return space.scorer(proxies, images=images, batch_size=config.batch_size, seed=config.seed,
                      **options)


def run(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """Runs the job of ``config``; returns ``scores.json``'s content (with the correlations).

  Raises:
    UserError: any bad input, before anything is scored.
  """
  start = time.perf_counter()
  if config.batch_size < 1:
    raise UserError(f"--batch_size={config.batch_size} must be at least 1.")
  if config.nan_policy not in NAN_POLICIES:
    raise UserError(f"--nan_policy={config.nan_policy!r} is unknown; valid: {', '.join(NAN_POLICIES)}.")
  space = spaces_lib.from_config(config.space, config, dataset=config.dataset or None)
  table = None
  if config.correlate:
    table = space.benchmark(config.benchmark or None)
    if table is None:
      raise UserError(f"the {space.name} space has no benchmark table (its accuracies need "
                      "training), so there is nothing to correlate with; correlate with --space=nb201.")
    archs = sample(space, config.archs, config.seed, table)
    table.check_covers(archs)
  else:
    try:
      archs = space.archs(config.archs, config.seed)
    except spaces_lib.SpaceError as e:
      raise UserError(f"--archs: {e}") from None
  check_workers(config)
  names = check_proxies(proxy_names(config.proxies))
  space.check_proxies(components(names))
  images = load_data(config.data)
  out = prepare_out_dir(config.out)
  if config.compilation_cache:
    from rznas_jax import compilation_cache  # pylint: disable=g-import-not-at-top
    compilation_cache.enable_compilation_cache(config.compilation_cache)
  scored = components(names)
  options = spaces_lib.options(space, config, "SCORING_OPTIONS")
  if config.dataset and "dataset" in space.SCORING_OPTIONS:
    options["dataset"] = config.dataset
  devices = None
  if config.all_devices:
    import jax  # pylint: disable=g-import-not-at-top
    devices = jax.devices()
  if config.workers:
    from rznas_jax import worker_pool  # pylint: disable=g-import-not-at-top
    scorer = worker_pool.WorkerPoolScorer(
        functools.partial(build_scorer, config, scored, images, options), config.workers,
        compilation_cache=config.compilation_cache)
  else:
    scorer = space.scorer(scored, images=images, batch_size=config.batch_size, seed=config.seed,
                          devices=devices, **options)
  prepare_seconds = time.perf_counter() - start  # data, network init
  try:
    scores, timing = score_with_progress(scorer, scored, archs)
  finally:
    if config.workers:
      scorer.close()
  scores = with_aggregates(names, scores)  # ranked among the scored architectures
  settings = {**settings_record(config), "num_archs": len(archs), **environment(space, scorer)}
  timing.update(prepare_seconds=prepare_seconds, total_seconds=time.perf_counter() - start)
  genotypes = [space.canonical(a) for a in archs]
  if table is None:
    results.write_scores(out, genotypes, scores, settings=settings, timing=timing)
    return {"archs": genotypes, "scores": scores, "settings": settings, "timing": timing}
  from rznas_jax import correlation  # pylint: disable=g-import-not-at-top
  accuracies = {d: table.lookup(archs, d) for d in table.accuracy}
  report = correlation.correlation_report(scores, accuracies, nan_policy=config.nan_policy)
  settings.update(benchmark=table.source, correlated_with=list(accuracies),
                  nan_scores={p: int(np.isnan(scores[p]).sum()) for p in scores})
  extra = {f"accuracy_{d}": acc for d, acc in accuracies.items()}
  results.write_scores(out, genotypes, scores, extra_columns=extra, settings=settings, timing=timing)
  record = {**report, "settings": settings, "timing": timing}
  results.write_json(os.path.join(out, CORRELATION_JSON), record)
  if config.plot:
    from rznas_jax.report import plot_correlation  # pylint: disable=g-import-not-at-top
    plot_correlation(out)
  return record
