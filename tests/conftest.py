"""Shared test fixtures: paths to the verified benchmark data beside the repository."""

import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.environ.get("RZNAS_SHARED_DATA", os.path.join(os.path.dirname(REPO), "shared", "data"))
NATS_CSV = os.path.join(SHARED_DATA, "nb201", "v-tao_nats-bench-landscape", "nats_bench.csv")
NASLIB_JSON = os.path.join(SHARED_DATA, "nb201", "automl_NASLib", "zc_nasbench201_cifar10.DERIVED.json")
CIFAR_NPZ = os.path.join(SHARED_DATA, "images", "YoongiKim_CIFAR-10-images_test.DERIVED.npz")


def need(path):
  """Skips the test when a shared data file is absent (e.g. outside CI)."""
  if not os.path.exists(path):
    pytest.skip(f"shared data file {path} is not present")
  return path


# Files whose tests take the longest (one to two minutes of a worker each: the real-model searches,
# the 8-device sharding checks, the switch-form comparisons, the two-process search), longest first.
# pytest-xdist hands tests out in collection order, so starting these first keeps both workers busy
# to the end instead of leaving one idle while the other finishes a long test.
SLOW_FIRST = ("test_local_model.py", "test_sharding.py", "test_scoring.py",
              "test_distributed_search.py", "test_darts_space.py")


def pytest_collection_modifyitems(items):
  """Puts the slowest files first (stable: the order within a file is kept)."""

  def rank(item):
    name = item.nodeid.split("::")[0].rsplit("/", 1)[-1]
    return SLOW_FIRST.index(name) if name in SLOW_FIRST else len(SLOW_FIRST)

  items.sort(key=rank)


def pytest_terminal_summary(terminalreporter):
  """Says loudly which real-model tests were skipped and why (the C++ extra may fail to build)."""
  skipped = [r for r in terminalreporter.stats.get("skipped", [])
             if "test_local_model.py" in getattr(r, "nodeid", "")]
  if not skipped:
    return
  reason = skipped[0].longrepr[2] if isinstance(skipped[0].longrepr, tuple) else str(skipped[0].longrepr)
  write = terminalreporter.write_line
  write("#" * 100)
  write(f"## SKIPPED {len(skipped)} REAL-MODEL TESTS: {reason.removeprefix('Skipped: ')}")
  for report in skipped:
    write(f"##   {report.nodeid}")
  write("#" * 100)
