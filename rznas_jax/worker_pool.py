"""Scoring on worker processes pinned to their own CPU cores: the fast way to score many
architectures on a CPU.

On a CPU, XLA splits each operation of a network over every core the process may use. At
NAS-Bench-201's sizes (16 to 64 channels, batch 64) most operations are too small for that to pay:
on a 2-core machine one process scored grad_norm at 3.0 cells/s with both cores and at 2.1 with
one, while two one-core processes, each scoring its own cells, scored 4.3 together
(docs/scoring.md). `WorkerPoolScorer` runs that: ``workers`` processes, each pinned to its share
of the cores (before JAX starts, so XLA sizes its thread pool to that share), each building the
same scorer, and each scoring the next chunk of architectures as soon as it is free.

Every worker runs the same compiled functions on the same number of threads, so a score does not
depend on which worker computed it, nor on the number of workers. It may differ from a scorer in
the calling process (with all cores) by float32 rounding: XLA reduces in another order when it
splits an operation over more threads.

One call pays off for many architectures: a single cell is scored by one worker on its share of
the cores, slower than in the calling process. The search asks for one child at a time, so it
scores in its own process; ``launch.score`` and ``launch.correlate`` take ``--workers``.

Example:
  >>> build = functools.partial(scoring.NB201Scorer, ["grad_norm"], scoring.NB201Setting())
  >>> with WorkerPoolScorer(build, workers=2) as scorer:
  ...   scores = scorer.score(nb201.random_archs(100, seed=0))   # {"grad_norm": (100,)}

A worker's messages (warnings, logs) go to this process's stderr. A worker that fails raises
`WorkerError` here with its message and traceback (or, for bad input, the worker's own
`rznas_jax.errors.UserError`), and stops the pool.
"""

from __future__ import annotations

import collections
import os
import pickle
import pickletools
import socket
import subprocess
import sys
import traceback
from multiprocessing import connection
from typing import Any, Callable, Sequence

import numpy as np

from rznas_jax.scorer import Progress


class WorkerError(RuntimeError):
  """A worker process failed (its error, or its exit), or could not start."""


def available_cpus() -> list[int]:
  """The CPU cores this process may run on (its affinity), sorted."""
  return sorted(os.sched_getaffinity(0))


def cpu_shares(workers: int, cpus: Sequence[int] | None = None) -> list[list[int]]:
  """``cpus`` (default: `available_cpus`) dealt out to ``workers`` processes, round-robin.

  Raises:
    ValueError: ``workers`` is not between 1 and the number of cores.
  """
  cpus = available_cpus() if cpus is None else sorted(cpus)
  if not 1 <= workers <= len(cpus):
    raise ValueError(f"workers={workers} must be between 1 and {len(cpus)}, the CPU cores this "
                     f"process may use ({', '.join(map(str, cpus))}).")
  return [cpus[i::workers] for i in range(workers)]


class _Worker:
  """One worker process and its end of the connection."""

  def __init__(self, index: int, cpus: list[int], setup: dict):
    self.index = index
    self.cpus = cpus
    ours, theirs = socket.socketpair()
    code = ("import os, sys; os.sched_setaffinity(0, {int(c) for c in sys.argv[2].split(',')}); "
            "from rznas_jax import worker_pool; worker_pool._serve(int(sys.argv[1]))")
    self.process = subprocess.Popen(
        [sys.executable, "-c", code, str(theirs.fileno()), ",".join(map(str, cpus))],
        pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL)
    theirs.close()
    self.conn = connection.Connection(ours.detach())
    try:
      self.conn.send(setup)
    except OSError:
      raise WorkerError(f"scoring {self.name()} exited with code {self.process.wait()} as it "
                        "started (its messages, if any, are above).") from None

  def name(self) -> str:
    return f"worker {self.index} (cores {','.join(map(str, self.cpus))})"

  def receive(self) -> tuple:
    """The worker's next message; WorkerError when it sent an error or exited."""
    try:
      message = self.conn.recv()
    except (EOFError, OSError):
      code = self.process.wait()
      raise WorkerError(f"scoring {self.name()} exited with code {code} without answering (its "
                        "messages, if any, are above).") from None
    if message[0] == "error":
      _, error, trace, user_error = message
      if user_error is not None:  # bad input (rznas_jax.errors.UserError): its one sentence
        raise user_error
      raise WorkerError(f"scoring {self.name()} failed: {error}\n--- its traceback ---\n{trace}")
    return message

  def stop(self, timeout: float = 10.0) -> None:
    try:
      self.conn.send(("stop",))
    except OSError:
      pass
    try:
      self.process.wait(timeout)
    except subprocess.TimeoutExpired:
      self.process.kill()
      self.process.wait()
    self.conn.close()


class WorkerPoolScorer:
  """A `rznas_jax.scorer.Scorer` that scores on ``workers`` pinned processes.

  Args:
    build: a picklable callable with no arguments that returns the scorer each worker uses (e.g.
      ``functools.partial(scoring.NB201Scorer, proxies, setting, images=images)``); it is called
      in every worker, which must therefore get the same scorer from it, and must be importable
      there (a module's function, not one of the script being run).
    workers: worker processes (at most the cores this process may use).
    chunk_size: the most architectures a worker scores per request. A free worker gets the next
      chunk; chunks shrink to one architecture towards the end, so the workers finish together.
    cpus: the cores to deal out (default: this process's affinity).
    malloc_tuning: call `rznas_jax.malloc.tune_unless_disabled` in each worker, as the launchers
      do.
    compilation_cache: a folder for JAX's persistent compilation cache in the workers ("" none).

  Attributes:
    proxies, specs, compile_seconds, devices, last_devices: as `scorer.Scorer` says;
      ``compile_seconds`` holds, per label, the longest compile of any worker, ``devices`` the
      workers' devices, and ``last_devices`` names a worker's device ``"worker1/cpu:0"``.
    strategy: the workers' scorer's (None when it has none).
    cpu_shares: the cores of each worker.

  Raises:
    ValueError: a bad ``workers`` or ``chunk_size``.
    WorkerError: a worker could not build its scorer (the error inside names why).
  """

  def __init__(self, build: Callable[[], Any], workers: int, *, chunk_size: int = 8,
               cpus: Sequence[int] | None = None, malloc_tuning: bool = True,
               compilation_cache: str = ""):
    if chunk_size < 1:
      raise ValueError(f"chunk_size={chunk_size} must be at least 1.")
    self.cpu_shares = cpu_shares(workers, cpus)
    self.chunk_size = chunk_size
    try:
      payload = pickle.dumps(build)
    except Exception as e:  # pylint: disable=broad-except
      raise ValueError(f"the scorer's build function cannot be sent to a worker ({e}); give a "
                       "module-level function or a functools.partial of one.") from None
    if "__main__" in _pickled_modules(payload):
      raise ValueError("the scorer's build function refers to the script being run (__main__), "
                       "which a worker process cannot import; define it in a module.")
    setup = {"build": payload, "malloc_tuning": malloc_tuning,
             "compilation_cache": compilation_cache}
    self._workers: list[_Worker] = []
    try:
      for i, share in enumerate(self.cpu_shares):
        self._workers.append(_Worker(i, share, setup))
      infos = [w.receive()[1] for w in self._workers]
    except BaseException:
      self.close()
      raise
    from rznas_jax import proxies as proxy_lib  # pylint: disable=g-import-not-at-top
    self.proxies = tuple(infos[0]["proxies"])
    self.specs = [proxy_lib.get(p) for p in self.proxies]
    self.strategy = infos[0]["strategy"]
    self.devices = [f"worker{i}/{d}" for i, info in enumerate(infos) for d in info["devices"]]
    self.compile_seconds: dict[str, float] = {}
    self.last_devices: list[str] = []

  def score(self, archs: Sequence[Any], progress: Progress | None = None) -> dict[str, np.ndarray]:
    """``{proxy: float64 array in the order of archs}``; see `scorer.Scorer`.

    ``progress`` is called with the label of all proxies ("a+b") as each chunk comes back.
    """
    if not self._workers:
      raise WorkerError("this worker pool is closed; make a new one.")
    archs = list(archs)
    label = "+".join(self.proxies)
    if progress:
      progress(0, label)
    todo = collections.deque(_chunks(len(archs), len(self._workers), self.chunk_size))
    idle = list(reversed(self._workers))
    busy: dict[Any, tuple[_Worker, int]] = {}
    parts: dict[int, dict] = {}
    devices: list[str] = [""] * len(archs)
    try:
      while todo or busy:
        while todo and idle:
          worker, (start, stop) = idle.pop(), todo.popleft()
          worker.conn.send(("score", archs[start:stop]))
          busy[worker.conn] = (worker, start)
        for conn in connection.wait(list(busy)):
          worker, start = busy.pop(conn)
          _, scores, where, compile_seconds = worker.receive()
          parts[start] = scores
          devices[start:start + len(where)] = [f"worker{worker.index}/{d}" for d in where]
          for key, seconds in compile_seconds.items():
            self.compile_seconds[key] = max(seconds, self.compile_seconds.get(key, 0.0))
          idle.append(worker)
          if progress:
            progress(len(where) * len(self.proxies), label)
    except BaseException:
      self.close()  # a worker may still be busy: the pool cannot be trusted any more
      raise
    self.last_devices = devices
    starts = sorted(parts)
    return {p: (np.concatenate([np.asarray(parts[s][p], np.float64) for s in starts])
                if starts else np.zeros(0, np.float64)) for p in self.proxies}

  def close(self) -> None:
    """Stops the workers (idempotent)."""
    workers, self._workers = self._workers, []
    for worker in workers:
      worker.stop()

  def __enter__(self) -> "WorkerPoolScorer":
    return self

  def __exit__(self, *exc) -> None:
    self.close()

  def __del__(self):
    try:
      self.close()
    except Exception:  # pylint: disable=broad-except
      pass


def _chunks(n: int, workers: int, largest: int) -> list[tuple[int, int]]:
  """[start, stop) ranges covering ``n`` architectures, largest first: each a quarter of what is
  left per worker (at most ``largest``, at least 1), so the last chunks are single architectures
  and the workers finish together (guided self-scheduling)."""
  out, start = [], 0
  while start < n:
    size = max(1, min(largest, -(-(n - start) // (4 * workers))))
    out.append((start, start + size))
    start += size
  return out


def _pickled_modules(payload: bytes) -> set[str]:
  """The modules whose names a pickle refers to (the strings before each global it loads)."""
  strings, modules = [], set()
  for op, arg, _ in pickletools.genops(payload):
    if isinstance(arg, str):
      strings.append(arg)
      if op.name in ("GLOBAL", "INST"):
        modules.add(arg.split(" ")[0])
    elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
      modules.add(strings[-2])
  return modules


def _error_message(error: BaseException) -> tuple:
  """What a worker sends for ``error``: its description, its traceback, and the error itself when
  it is bad user input (raised again as it is by the pool, so the launchers print its sentence)."""
  from rznas_jax import errors  # pylint: disable=g-import-not-at-top
  user_error = None
  if isinstance(error, errors.UserError):
    try:
      user_error = pickle.loads(pickle.dumps(error))
    except Exception:  # pylint: disable=broad-except
      user_error = errors.UserError(str(error))
  return ("error", f"{type(error).__name__}: {error}", traceback.format_exc(), user_error)


def _serve(fd: int) -> None:
  """A worker's main loop (its affinity is already set): build the scorer, then score requests."""
  conn = connection.Connection(fd)
  setup = conn.recv()
  try:
    if setup["malloc_tuning"]:
      from rznas_jax import malloc  # pylint: disable=g-import-not-at-top
      malloc.tune_unless_disabled()
    if setup["compilation_cache"]:
      from rznas_jax import compilation_cache  # pylint: disable=g-import-not-at-top
      compilation_cache.enable_compilation_cache(setup["compilation_cache"])
    from rznas_jax import scorer as scorer_lib  # pylint: disable=g-import-not-at-top
    scorer = pickle.loads(setup["build"])()
    conn.send(("ready", {"proxies": list(scorer.proxies),
                         "strategy": getattr(scorer, "strategy", None),
                         "devices": [scorer_lib.device_name(d) for d in scorer.devices]}))
  except BaseException as e:  # pylint: disable=broad-except
    conn.send(_error_message(e))
    return
  while True:
    try:
      message = conn.recv()
    except (EOFError, OSError):  # the pool's process is gone
      return
    if message[0] == "stop":
      return
    try:
      scores = scorer.score(message[1])
      conn.send(("scores", {p: np.asarray(v, np.float64) for p, v in scores.items()},
                 list(scorer.last_devices), dict(scorer.compile_seconds)))
    except BaseException as e:  # pylint: disable=broad-except
      conn.send(_error_message(e))
      return
