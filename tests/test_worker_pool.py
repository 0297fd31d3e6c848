"""The worker-process scorer (`rznas_jax.worker_pool`): the same scores as one process, in order,
whatever the number of workers; failures are errors that name the worker, never a hang.

Each worker is a fresh Python process that imports JAX and compiles the tiny network, so one
pool is shared by the module's tests.
"""

import functools
import os

import numpy as np
import pytest

from rznas_jax import errors
from rznas_jax import scoring
from rznas_jax import worker_pool
from rznas_jax.spaces import nb201

SETTING = scoring.NB201Setting(channels=4, cells_per_stage=1)
# A network proxy (forward only: a short compile) and an analytic one.
PROXIES = ["naswot", "params"]
BUILD = functools.partial(scoring.NB201Scorer, PROXIES, SETTING, batch_size=8, seed=3,
                          strategy="switch")
CPUS = worker_pool.available_cpus()
ARCHS = nb201.random_archs(7, seed=5)


@pytest.fixture(scope="module")
def in_process_scorer():
  scorer = BUILD()
  scorer.score(ARCHS[:1])
  return scorer


@pytest.fixture(scope="module")
def in_process(in_process_scorer):
  return in_process_scorer.score(ARCHS)


@pytest.fixture(scope="module")
def pool():
  """One worker per core, at most 2."""
  with worker_pool.WorkerPoolScorer(BUILD, min(2, len(CPUS)), chunk_size=2) as scorer:
    yield scorer


def test_scores_match_one_process_in_order(pool, in_process):
  many = pool
  seen = []
  got = many.score(ARCHS, progress=lambda count, label: seen.append((count, label)))
  assert set(got) == set(PROXIES)
  # params is analytic: exact, and a different value per cell, so this also checks the order
  np.testing.assert_array_equal(got["params"], in_process["params"])
  assert len(set(in_process["params"])) > 3
  # the network proxy: float32 rounding apart (XLA splits ops over other thread counts)
  np.testing.assert_allclose(got["naswot"], in_process["naswot"], rtol=2e-5)
  assert seen[0] == (0, "naswot+params")
  assert sum(c for c, _ in seen) == len(ARCHS) * len(PROXIES)
  assert len(many.last_devices) == len(ARCHS)
  assert all(d.startswith("worker") and d.endswith("cpu:0") for d in many.last_devices)


def test_scores_do_not_depend_on_the_worker(pool):
  """Every worker has one core here: a cell scored by the other worker gives the very same float."""
  if len(CPUS) < 2:
    pytest.skip("needs 2 CPU cores")
  a = pool.score(ARCHS)
  first = list(pool.last_devices)
  assert {d.split("/")[0] for d in first} == {"worker0", "worker1"}
  moved = 0
  for shift in (3, 1, 2):  # other orders, other chunks: cells change worker
    order = list(range(shift, len(ARCHS))) + list(range(shift))
    b = pool.score([ARCHS[i] for i in order])
    moved += sum(pool.last_devices[k] != first[i] for k, i in enumerate(order))
    for p in PROXIES:
      np.testing.assert_array_equal(b[p], a[p][order], err_msg=p)
    if moved:
      break
  assert moved


def test_empty_call_and_attributes(pool, in_process_scorer):
  many = pool
  assert {p: v.shape for p, v in many.score([]).items()} == {p: (0,) for p in PROXIES}
  assert many.proxies == tuple(PROXIES)
  assert [s.name for s in many.specs] == PROXIES
  assert many.strategy == "switch"
  assert set(many.compile_seconds) == set(in_process_scorer.compile_seconds)
  assert many.cpu_shares == [CPUS[i::len(many.cpu_shares)] for i in range(len(many.cpu_shares))]


def test_chunks_cover_every_architecture_once_and_shrink():
  for n, workers, largest in [(0, 2, 8), (1, 2, 8), (7, 2, 2), (1000, 2, 8), (33, 3, 4)]:
    chunks = worker_pool._chunks(n, workers, largest)  # pylint: disable=protected-access
    assert [i for a, b in chunks for i in range(a, b)] == list(range(n))
    sizes = [b - a for a, b in chunks]
    assert all(1 <= s <= largest for s in sizes) and sizes == sorted(sizes, reverse=True)
    if n:
      assert sizes[-1] == 1


def test_a_failing_build_is_an_error_that_names_the_worker():
  message = r"worker 0 \(cores .*ValueError: invalid literal"
  with pytest.raises(worker_pool.WorkerError, match=message):
    worker_pool.WorkerPoolScorer(functools.partial(int, "not a number"), 1, cpus=CPUS[:1])


def test_bad_input_in_a_worker_is_the_users_error_itself():
  """So a launcher prints its one sentence and exits 2, as without workers."""
  with pytest.raises(errors.UserError, match="no_such_proxy"):
    worker_pool.WorkerPoolScorer(functools.partial(scoring.NB201Scorer, ["no_such_proxy"], SETTING),
                                 1, cpus=CPUS[:1])


def test_a_dead_worker_is_an_error_not_a_hang():
  build = functools.partial(scoring.NB201Scorer, ["params"], SETTING)  # nothing to compile
  pool = worker_pool.WorkerPoolScorer(build, 1, cpus=CPUS[:1])
  pool._workers[0].process.kill()  # pylint: disable=protected-access
  with pytest.raises(worker_pool.WorkerError, match=r"exited with code -9"):
    pool.score(ARCHS[:2])
  with pytest.raises(worker_pool.WorkerError, match="closed"):
    pool.score(ARCHS[:2])


@pytest.mark.parametrize("workers", [0, len(CPUS) + 1])
def test_bad_worker_counts_are_one_sentence(workers):
  with pytest.raises(ValueError, match=f"workers={workers} must be between 1 and {len(CPUS)}"):
    worker_pool.cpu_shares(workers)


def _local_build():
  return None


def test_an_unpicklable_or_unimportable_build_is_refused(monkeypatch):
  with pytest.raises(ValueError, match="cannot be sent to a worker"):
    worker_pool.WorkerPoolScorer(lambda: None, 1)
  monkeypatch.setattr(_local_build, "__module__", "__main__")
  monkeypatch.setitem(__import__("sys").modules, "__main__", __import__(__name__))
  with pytest.raises(ValueError, match="__main__"):
    worker_pool.WorkerPoolScorer(_local_build, 1)


def test_launch_score_with_workers_writes_the_same_scores(tmp_path, in_process):
  from rznas_jax import score_job
  config = score_job.default_config()
  config.proxies = ",".join(PROXIES)
  config.archs = ",".join(a.genotype for a in ARCHS[:4])
  config.nb201.channels, config.nb201.cells_per_stage = SETTING.channels, SETTING.cells_per_stage
  config.batch_size, config.seed, config.workers, config.out = 8, 3, 1, str(tmp_path / "out")
  run = score_job.run(config)  # the same scorer as BUILD, on one worker
  np.testing.assert_array_equal(run["scores"]["params"], in_process["params"][:4])
  np.testing.assert_allclose(run["scores"]["naswot"], in_process["naswot"][:4], rtol=2e-5)
  assert run["settings"]["workers"] == 1 and len(run["settings"]["worker_cpus"]) == 1
  assert os.path.exists(os.path.join(config.out, "scores.csv"))


def test_malloc_tuning_follows_the_environment(monkeypatch):
  """The launchers and the workers tune glibc unless RZNAS_MALLOC_TUNING=0."""
  from rznas_jax import malloc
  calls = []
  monkeypatch.setattr(malloc, "keep_freed_memory", lambda: calls.append(1) or True)
  monkeypatch.setenv(malloc.ENV_VAR, "0")
  assert not malloc.tune_unless_disabled() and not calls
  monkeypatch.delenv(malloc.ENV_VAR)
  assert malloc.tune_unless_disabled() and calls == [1]
