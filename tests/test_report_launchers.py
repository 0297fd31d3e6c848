"""What the launchers draw: the search's report at the end of a run, the correlation figure of
launch/correlate.py, architecture drawings, and benchmarks/paper_tables.py's markdown."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from conftest import NATS_CSV, need
from rznas_jax.report import drawing
from rznas_jax.report import paper_tables
from rznas_jax.spaces import nb201

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _python(*args):
  return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=180)


def _png(path):
  with open(path, "rb") as f:
    data = f.read()
  return data.startswith(PNG_MAGIC) and len(data) > 2000


def test_search_writes_its_report_by_default(tmp_path):
  result = _python("-m", "launch.search", "--config=launch/configs/tiny_cpu.py:params",
                   f"--workdir={tmp_path}", f"--config.benchmark={need(NATS_CSV)}", "--progress=false",
                   "--config.search.iterations=6")
  assert result.returncode == 0, result.stderr
  assert f"report in {tmp_path / 'report' / 'index.html'}" in result.stdout
  # The page is this run's: it names the cell the run found and its test accuracy.
  summary = json.loads((tmp_path / "summary.json").read_text())
  page = (tmp_path / "report" / "index.html").read_text()
  assert summary["best_arch"] in page
  assert f"{summary['test_accuracy']['cifar10']:.2f}" in page


def test_a_report_that_fails_costs_one_warning_not_the_run(tmp_path, monkeypatch, capsys):
  from rznas_jax import report  # pylint: disable=g-import-not-at-top
  from rznas_jax.report import dispatch  # pylint: disable=g-import-not-at-top

  def broken(run_dir, **kwargs):
    raise RuntimeError("no fonts\nat all")

  monkeypatch.setattr(dispatch, "write_report", broken)
  assert report.write_report_or_warn(str(tmp_path)) is None
  err = capsys.readouterr().err
  assert err.count("\n") == 1 and "RuntimeError: no fonts at all" in err
  monkeypatch.undo()
  assert report.write_report_or_warn(str(tmp_path)) is None  # not a run folder: a warning too
  assert "is not a run folder" in capsys.readouterr().err


def test_correlate_draws_tau_and_rho(tmp_path):
  result = _python("-m", "launch.correlate", "--space=nb201", "--proxies=params,flops", "--num_archs=30",
                   f"--benchmark={need(NATS_CSV)}", f"--out={tmp_path}", "--channels=4",
                   "--cells_per_stage=1")
  assert result.returncode == 0, result.stderr
  assert _png(tmp_path / "correlation.png")
  # The report page lists the same tau and rho as correlation.json, recomputed from scores.csv.
  from rznas_jax import report  # pylint: disable=g-import-not-at-top
  with open(report.write_report(str(tmp_path))) as f:
    page = f.read()
  saved = json.loads((tmp_path / "correlation.json").read_text())
  for proxy in ("params", "flops"):
    for dataset, values in saved[proxy].items():
      if isinstance(values, dict):
        assert f"<td>{proxy}</td><td>{dataset}</td><td>{values['kendall']:.4f}</td>" in page
  assert _png(tmp_path / "report" / "correlation.png")


def test_correlation_titles_carry_the_published_formulas():
  from rznas_jax.report import figures  # pylint: disable=g-import-not-at-top
  scipy_stats = pytest.importorskip("scipy.stats")
  rng = np.random.default_rng(0)
  x, y = rng.normal(size=40), rng.normal(size=40)
  titles = figures.correlation_titles({"p": x}, {"cifar10": y})
  tau, rho = scipy_stats.kendalltau(x, y)[0], scipy_stats.spearmanr(x, y)[0]
  assert titles == [[f"p / CIFAR-10: Kendall τ={tau:.3f}, Spearman ρ={rho:.3f}"]]
  x[:8] = np.nan  # as correlation.json ranks them with --nan_policy=lowest: below every score
  titles = figures.correlation_titles({"p": x}, {"cifar10": y}, nan_policy="lowest")
  floored = np.where(np.isnan(x), -1e8, x)
  tau, rho = scipy_stats.kendalltau(floored, y)[0], scipy_stats.spearmanr(floored, y)[0]
  assert titles == [[f"p / CIFAR-10: Kendall τ={tau:.3f}, Spearman ρ={rho:.3f}"]]


def test_drawings(tmp_path):
  cell = "|nor_conv_3x3~0|+|none~0|skip_connect~1|+|avg_pool_3x3~0|nor_conv_1x1~1|skip_connect~2|"
  assert _png(drawing.nb201_cell(cell, str(tmp_path / "cell.png")))
  net = "SuperConvK3BNRELU(3,8,1,1)SuperResK3K3(8,16,2,8,1)SuperResK3K3(16,32,2,16,2)"
  assert _png(drawing.macro_blocks(net, str(tmp_path / "net.png")))
  with pytest.raises(nb201.GenotypeError):
    drawing.nb201_cell("|conv~0|", str(tmp_path / "bad.png"))


def test_table2_markdown_by_hand():
  ours = {("synflow", "random"): {"cifar10": [93.0, 94.0], "cifar100": [70.0, 72.0],
                                  "imagenet16-120": [45.0, 45.0]}}
  text = paper_tables.table2_markdown(ours, ["synflow"], ours_label="mine")
  lines = text.splitlines()
  assert "| Synflow | paper | 3 | 93.48±0.00 | 71.35±1.51 | 45.12±0.00 |" in lines
  assert "| Synflow | mine | 2 | 93.50±0.50 | 71.00±1.00 | 45.00±0.00 |" in lines
  assert "| Ours(Synflow) | mine | 0 | — | — | — |" in lines
  assert len({line.count("|") for line in lines}) == 1  # one table, every row the same width
  assert "not reproduced" in paper_tables.table3_markdown() and "Gradnorm" not in paper_tables.table3_markdown()


def test_paper_tables_end_to_end(tmp_path):
  """The benchmark with the analytic params proxy (no compile): its table's means are the means
  of its runs' looked-up accuracies."""
  result = _python("benchmarks/paper_tables.py", "--proxies=params", "--seeds=0,1", "--iterations=5",
                   "--population=4", "--channels=4", f"--benchmark={need(NATS_CSV)}", f"--out={tmp_path}")
  assert result.returncode == 0, result.stderr
  assert re.search(r"Estimated wall time: .+\.", result.stdout.split("[1/4]")[0])
  text = (tmp_path / "paper_tables.md").read_text()
  assert "This is not the paper's setting" in text and "not reproduced" in text
  runs = json.loads((tmp_path / "paper_tables.json").read_text())["runs"]
  table = nb201.BenchmarkTable.load(NATS_CSV)
  for method, name in (("random", "params"), ("ours", "Ours(params)")):
    accs = [table.lookup([nb201.parse_genotype(r["best_arch"])], "cifar100")[0]
            for r in runs if r["method"] == method]
    row = next(l for l in text.splitlines() if l.startswith(f"| {name} |"))
    assert f"{np.mean(accs):.2f}±{np.std(accs):.2f}" == row.split("|")[5].strip()


def test_bad_paper_tables_input_is_one_line(tmp_path):
  result = _python("benchmarks/paper_tables.py", "--benchmark=/nonexistent.csv", f"--out={tmp_path}")
  assert result.returncode == 2 and "does not exist" in result.stderr and "Traceback" not in result.stderr


def test_training_run_report(tmp_path):
  """A training folder as rznas_jax.train writes it: metrics.jsonl per epoch, final/model.json."""
  from rznas_jax import report  # pylint: disable=g-import-not-at-top
  records = [{"epoch": e, "step": 10 * e, "learning_rate": 0.1 / e, "train_loss": 2.0 / e,
              "train_accuracy": 0.2 * e, "test_loss": 2.1 / e, "test_accuracy": 0.19 * e} for e in (1, 2, 3)]
  (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
  (tmp_path / "final").mkdir()
  cell = "|nor_conv_3x3~0|+|none~0|skip_connect~1|+|avg_pool_3x3~0|nor_conv_1x1~1|skip_connect~2|"
  (tmp_path / "final" / "model.json").write_text(json.dumps({"arch": cell, "space": "nb201",
                                                             "test_accuracy": 0.57}))
  with open(report.write_report(str(tmp_path))) as f:
    page = f.read()
  assert 'id="curves"' in page and 'id="architecture"' in page and cell in page
  assert _png(tmp_path / "report" / "training.png") and _png(tmp_path / "report" / "architecture.png")
