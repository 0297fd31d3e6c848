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


def pytest_collection_modifyitems(items):
  """Runs the real-model tests first: each takes a minute on one worker, and started last they
  would leave the other worker idle at the end of the run."""
  items.sort(key=lambda item: "test_local_model.py" not in item.nodeid)  # stable: order kept


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
