"""The run report: launch/report.py on a finished tiny search, its figures, and the numbers behind
them checked against the run's own files."""

import html
import html.parser
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from conftest import NATS_CSV, need
from launch.configs import tiny_cpu
from rznas_jax import report
from rznas_jax import search
from rznas_jax.report import history
from rznas_jax.report import run_folder

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECTIONS = ("summary", "scores", "validity", "accuracy", "architecture", "reflections")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _python(*args, cwd=ROOT):
  return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
  """A finished tiny_cpu search with the analytic params proxy (no compile) and the benchmark."""
  config = tiny_cpu.get_config("params")
  config.benchmark = need(NATS_CSV)
  config.search.iterations = 30
  config.search.population = 6  # small, so that children evict members
  workdir = str(tmp_path_factory.mktemp("search"))
  search.run(config, workdir, progress=False)
  return workdir


class _Page(html.parser.HTMLParser):
  def __init__(self):
    super().__init__()
    self.images, self.ids = [], []

  def handle_starttag(self, tag, attrs):
    attrs = dict(attrs)
    if tag == "img":
      self.images.append(attrs["src"])
    if "id" in attrs:
      self.ids.append(attrs["id"])


def _parse(path):
  page = _Page()
  with open(path) as f:
    page.feed(f.read())
  return page


def test_launch_report_writes_every_figure_it_references(run_dir, tmp_path):
  out = tmp_path / "report"
  result = _python("-m", "launch.report", run_dir, f"--out={out}")
  assert result.returncode == 0, result.stderr
  index = out / "index.html"
  assert result.stdout.strip() == str(index)
  page = _parse(index)
  assert page.ids == list(SECTIONS)
  assert len(page.images) == 6  # scores, invalid rate, kinds, accuracy, scatter, architecture
  for src in page.images:
    path = out / src
    assert path.is_file(), src
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 2000, src
  text = index.read_text()
  run = pathlib.Path(run_dir)
  assert json.loads((run / "summary.json").read_text())["best_arch"] in text
  last = json.loads((run / "trials.jsonl").read_text().splitlines()[-1])
  assert html.escape(last["reflection"]) in text  # the newest reflection is listed, escaped


def test_report_without_a_benchmark_uses_the_packaged_table(tmp_path):
  config = tiny_cpu.get_config("params")
  config.search.iterations, config.search.population = 6, 4
  workdir = tmp_path / "run"
  summary = search.run(config, str(workdir), progress=False)
  page = _parse(report.write_report(str(workdir), str(tmp_path / "report")))
  assert page.ids == list(SECTIONS) and len(page.images) == 6  # accuracy figures included
  text = html.unescape((tmp_path / "report" / "index.html").read_text())
  assert f"index {summary['benchmark_index']} of the packaged NATS-Bench table" in text
  for d, acc in summary["test_accuracy"].items():
    assert f"{d} {acc:.2f} % (rank {summary['test_rank'][d]:,} of 15,625)" in text
    assert f"{acc:.2f} % (rank {summary['test_rank'][d]:,} of 15,625)</td>" in text  # summary table


def test_embedded_images_are_data_uris(tmp_path):
  png = tmp_path / "a.png"
  png.write_bytes(PNG_MAGIC + b"rest")
  page = report.html.Page("t", embed=True)
  page.image(str(png), "a", str(tmp_path))
  assert '<img src="data:image/png;base64,iVBORw0KGgpyZXN0"' in page.html()


def test_curves_match_the_trials(run_dir):
  run = run_folder.load_search_run(run_dir)
  hist = history.replay_population(run.initial, run.trials, run.population_size)
  # Best so far, computed independently: the best member is never the one dropped.
  scores = [s for _, s in run.initial]
  expected = [max(scores)]
  for t in run.trials:
    if t["kind"] == "ok":
      scores.append(t["score"])
    expected.append(max(scores))
  np.testing.assert_array_equal(hist.best, expected)
  # The replay ends in the checkpoint's population, and the median is that population's.
  state, _ = search.load_state(run_dir)
  assert hist.final == tuple((m.genotype, m.score) for m in state.population)
  assert hist.median[-1] == np.median([m.score for m in state.population])
  assert hist.best_genotype[-1] == state.best.genotype
  # The run writes one time per step (K = 1): 1 + T increasing values.
  assert run.timing_source == "timeline" and len(run.seconds) == len(run.trials) + 1
  assert np.all(np.diff(run.seconds) >= 0)


def test_replay_population_by_hand():
  initial = [("a", 1.0), ("b", 2.0)]
  trials = [{"kind": "ok", "child": "c", "score": 3.0},        # a is dropped
            {"kind": "ok", "child": "d", "score": 0.5},        # d is itself the lowest
            {"kind": "duplicate", "child": "c", "score": 3.0},
            {"kind": "invalid", "child": None, "score": None},
            {"kind": "ok", "child": "e", "score": 3.0}]        # b dropped; c stays best (first)
  hist = history.replay_population(initial, trials, 2, accuracy={"a": 5, "b": 1, "c": 2, "d": 9, "e": 3})
  assert hist.best.tolist() == [2, 3, 3, 3, 3, 3]
  assert hist.median.tolist() == [1.5, 2.5, 2.5, 2.5, 2.5, 3.0]
  assert hist.best_genotype == ("b", "c", "c", "c", "c", "c")
  assert hist.final == (("c", 3.0), ("e", 3.0))
  assert hist.most_accurate.tolist() == [5, 2, 2, 2, 2, 3]


def test_the_replay_is_the_search_state_s_own_rule(monkeypatch):
  from rznas_jax.search import state as state_lib  # pylint: disable=import-outside-toplevel
  # Step by step, the replay ends where `state.apply_step` does, ties and duplicates included.
  rng = np.random.default_rng(0)
  initial = [(f"g{i}", float(rng.integers(4))) for i in range(5)]
  state = state_lib.init_state(initial, (0, 0))
  for i in range(80):
    kind = "ok" if rng.random() < 0.8 else "invalid"
    trial = state_lib.Trial(i, "g0", 0.0, f"g{rng.integers(30)}", float(rng.integers(4)), kind,
                            None, False)
    state = state_lib.apply_step(state, [trial], population_size=5, memory_size=1, evaluations=1)
  replayed = history.replay_population(initial, [t.to_json() for t in state.trials], 5)
  assert replayed.final == tuple((m.genotype, m.score) for m in state.population)
  # The report has no copy of the rules: change the state's, and the report follows.
  trials = [{"kind": "ok", "child": "c", "score": 3.0}, {"kind": "duplicate", "child": "c"},
            {"kind": "invalid", "child": None}]
  assert history.replay_population([("a", 1.0), ("b", 2.0)], trials, 2).final == (("b", 2.0),
                                                                                   ("c", 3.0))
  monkeypatch.setattr(state_lib, "population_after",
                      lambda population, trials, size, **_: (tuple(population), tuple(trials)))
  assert history.replay_population([("a", 1.0), ("b", 2.0)], trials, 2).final == (("a", 1.0),
                                                                                   ("b", 2.0))
  monkeypatch.setattr(state_lib, "REJECTED_KINDS", ("duplicate", "invalid"))
  assert history.rejection_rate(trials, window=2)[0].tolist() == [0, 1 / 2, 2 / 3]


def test_rejection_rate_and_reasons():
  kinds = ["ok", "invalid", "no_json", "ok", "duplicate", "invalid"]
  trials = [{"kind": k, "error": f"The child '|x~{i}|' is not valid: edge {i} is bad."} for i, k in enumerate(kinds)]
  cumulative, moving = history.rejection_rate(trials, window=2)
  np.testing.assert_allclose(cumulative, [0, 1 / 2, 2 / 3, 2 / 4, 2 / 5, 3 / 6])
  np.testing.assert_allclose(moving, [0, 1 / 2, 1, 1 / 2, 0, 1 / 2])
  reasons = history.rejection_reasons(trials)
  assert reasons[0] == ("invalid", "The child … is not valid: edge … is bad.", 2)
  assert sum(n for *_, n in reasons) == 3


def test_bad_folders_get_one_line_and_exit_2(tmp_path):
  result = _python("-m", "launch.report", str(tmp_path))
  assert result.returncode == 2 and "Traceback" not in result.stderr
  assert result.stderr.startswith("error: ") and "is not a run folder" in result.stderr
  assert len(result.stderr.strip().splitlines()) == 1
  with pytest.raises(run_folder.RunFolderError, match="is not a folder"):
    report.write_report(str(tmp_path / "missing"))
  (tmp_path / "checkpoint.json").write_text("{}")
  (tmp_path / "config.json").write_text("{}")
  with pytest.raises(run_folder.RunFolderError, match="damaged"):
    report.write_report(str(tmp_path))


def test_html_escapes_what_the_llm_wrote(tmp_path):
  page = report.html.Page("t")
  page.table(["reflection"], [["<script>alert(1)</script>"]])
  assert "<script>" not in page.html() and "&lt;script&gt;" in page.html()
