"""`write_search_report`: the HTML report of a search run folder, with its PNG figures beside it.

Sections (their ``id`` in the page): ``summary``, ``scores`` (best and median population score
against iteration and wall time), ``validity`` (invalid-reply rate over time, attempts by kind,
the most common rejection reasons), ``accuracy`` (NB201, from the packaged NATS-Bench table or
the one given: the found cell's test accuracy and rank, test accuracy of the population's best against iteration, the paper's Fig. 5, and proxy score against accuracy for
every evaluated architecture), ``architecture`` (the answer drawn) and ``reflections`` (the last
reflections).
"""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np

from rznas_jax import spaces
from rznas_jax.report import figures
from rznas_jax.report import history
from rznas_jax.report import html
from rznas_jax.report import run_folder

REPORT_DIR = "report"
REPORT_FILE = "index.html"
SECTIONS = ("summary", "scores", "validity", "accuracy", "architecture", "reflections")
TIMING_NOTES = {
    "timeline": "",
    "llm_log": "from the LLM log's call times",
}


def _fmt(value: Any) -> str:
  if isinstance(value, float):
    return f"{value:.6g}"
  return str(value)


def _summary_section(page: html.Page, run: run_folder.SearchRun, hist: history.PopulationHistory) -> None:
  page.section("summary", "Summary")
  s = run.summary or {}
  search_cfg = run.config.get("search", {})
  rows = [
      ("run folder", html.code(os.path.abspath(run.path))),
      ("space / proxy", html.escape(f"{run.space} / {run.proxy}")),
      ("mutation", html.escape(search_cfg.get("mutation", "?") + (
          f" (LLM backend {run.config.get('llm', {}).get('backend', '?')})"
          if search_cfg.get("mutation") == "llm" else " (the original zero-cost EA)"))),
      ("seed", html.escape(run.config.get("seed", "?"))),
      ("iterations done / planned", html.escape(f"{len(run.trials)} / {search_cfg.get('iterations', '?')}")),
      ("population N", html.escape(run.population_size)),
      ("proxy evaluations", html.escape(s.get("evaluations", "?"))),
      ("wall time", html.escape(f"{run.wall_seconds:.1f} s")),
      ("best architecture", html.code(hist.best_genotype[-1])),
      ("best score", html.escape(_fmt(float(hist.best[-1])))),
  ]
  for key in ("params", "flops"):
    if key in s:
      rows.append((key, html.escape(f"{s[key]:,.0f}")))
  for d, acc in (s.get("test_accuracy") or {}).items():
    rank = (s.get("test_rank") or {}).get(d)
    of = f" (rank {rank:,} of {s.get('benchmark_cells', 15625):,})" if rank else ""
    rows.append((f"NB201 test accuracy, {d}", html.escape(f"{acc:.2f} %{of}")))
  llm = s.get("llm")
  if llm:
    rows.append(("LLM calls / tokens in / out / cost", html.escape(
        f"{llm.get('calls', 0)} / {llm.get('input_tokens', 0):,} / {llm.get('output_tokens', 0):,}"
        f" / ${llm.get('cost_usd', 0.0):.2f}")))
  page.table(["", ""], rows, raw=True)
  if run.summary is None:
    page.paragraph("The run has not finished (no summary.json): this report shows it as far as "
                   "its last checkpoint.", note=True)
  replayed = [(g, s) for g, s in hist.final]
  if replayed != list(run.population):
    page.paragraph("Warning: replaying the trials does not give the checkpoint's final population; "
                   "the curves below may not match the run.", note=True)
    logging.warning("%s: the replayed population differs from the checkpoint's.", run.path)


def _scores_section(page, run, hist, fig_dir, out_dir) -> None:
  page.section("scores", "Population score")
  seconds = np.asarray(run.seconds) if run.seconds is not None else None
  path = figures.score_curves(hist.best, hist.median, seconds, run.proxy,
                              os.path.join(fig_dir, "scores.png"),
                              time_note=TIMING_NOTES.get(run.timing_source, ""))
  page.image(path, "best and median population score", out_dir)
  if seconds is None:
    page.paragraph("The folder records no per-step times (no timeline.jsonl, and no LLM log that "
                   "covers every trial), so only the curve against iterations is drawn.", note=True)


def _validity_section(page, run, fig_dir, out_dir) -> None:
  page.section("validity", "Invalid replies")
  trials = run.trials
  if not trials:
    page.paragraph("No attempts yet.", note=True)
    return
  window = max(10, min(100, len(trials) // 10))
  cumulative, moving = history.rejection_rate(trials, window)
  if run.config.get("search", {}).get("mutation") == "random":
    page.paragraph(html.escape(f"Random mutation (no LLM): {100 * cumulative[-1]:.1f} % of "
                               f"{len(trials)} mutations gave an architecture outside the space."))
  else:
    page.paragraph(html.escape(
        f"{100 * cumulative[-1]:.1f} % of {len(trials)} replies were rejected (empty, no JSON, no "
        "arch key, or an architecture outside the space)."))
  page.image(figures.rejection_curves(cumulative, moving, window, os.path.join(fig_dir, "invalid_rate.png")),
             "invalid-reply rate", out_dir)
  kinds: dict[str, int] = {}
  for t in trials:
    kinds[t["kind"]] = kinds.get(t["kind"], 0) + 1
  labels = sorted(kinds, key=lambda k: -kinds[k])
  page.image(figures.bar_counts(labels, [kinds[k] for k in labels], os.path.join(fig_dir, "kinds.png"),
                                title="Attempts by outcome"), "attempts by outcome", out_dir)
  reasons = history.rejection_reasons(trials)
  if reasons:
    page.paragraph("Most common rejection reasons (quoted text, genotypes and numbers elided):")
    page.table(["kind", "reason", "count"], reasons)
  else:
    page.paragraph("No reply was rejected.", note=True)


def _accuracy_section(page, run, hist, benchmark, fig_dir, out_dir) -> int | None:
  space = spaces.get(run.space)
  page.section("accuracy", "Benchmark accuracy")
  table = space.benchmark(benchmark) if benchmark or space.benchmark() is not None else None
  if table is None:
    page.paragraph(f"The {html.escape(run.space)} space has no benchmark table: no accuracies.", note=True)
    return None
  found = space.parse(hist.best_genotype[-1])
  try:
    table.index(found)
  except KeyError:  # a partial table (NAS-Bench-301's 725 DARTS genotypes)
    page.paragraph(html.escape(f"The found architecture is not among the {len(table):,} of the "
                               f"{table.source} table, so it has no benchmark accuracy; train it "
                               "(launch.train) to measure one."), note=True)
    return None
  page.paragraph(html.escape(
      f"The found cell (index {table.index(found)} of the {table.source} table): test accuracy " +
      ", ".join(f"{d} {table.lookup([found], d)[0]:.2f} % (rank {table.rank(found, d):,} of "
                f"{len(table):,})" for d in table.accuracy) + "; rank 1 = best, ties share a rank."))
  scored = history.evaluated(run.initial, run.trials, run.fitness, run.initial_components)
  genotypes = [g for g, _ in scored]
  archs = [space.parse(g) for g in genotypes]
  accuracy = {d: dict(zip(genotypes, table.lookup(archs, d))) for d in table.accuracy}
  of_best = {d: np.array([acc[g] for g in hist.best_genotype]) for d, acc in accuracy.items()}
  oracle = {d: history.replay_population(run.initial, run.trials, run.population_size, accuracy=acc,
                                         fitness=run.fitness,
                                         initial_components=run.initial_components).most_accurate
            for d, acc in accuracy.items()}
  optimum = {d: float(np.max(v)) for d, v in table.accuracy.items()}
  page.image(figures.accuracy_curves(of_best, oracle, optimum, os.path.join(fig_dir, "accuracy.png")),
             "test accuracy of the best member against iteration", out_dir)
  scores = np.array([s for _, s in scored])
  page.image(figures.scatter_panels(
      scores, {d: np.array([acc[g] for g in genotypes]) for d, acc in accuracy.items()}, run.proxy,
      os.path.join(fig_dir, "score_vs_accuracy.png"),
      title=f"Every evaluated architecture ({len(scored)}): {run.proxy} score against test accuracy",
      highlight=genotypes.index(hist.best_genotype[-1])), "proxy score against accuracy", out_dir)
  page.paragraph(html.escape(
      "Top: the test accuracy of the population's top-scoring member (what the search returns if "
      "stopped there) and, dashed, of its most accurate member (an oracle the search cannot see). "
      "Bottom: rank correlation over the architectures this search scored, which the search "
      "itself chose (not a uniform sample)."), note=True)
  return len(scored)


def _architecture_section(page, run, hist, fig_dir, out_dir) -> None:
  page.section("architecture", "Best architecture")
  genotype = hist.best_genotype[-1]
  page.paragraph(html.code(genotype))
  path = os.path.join(fig_dir, "architecture.png")
  spaces.get(run.space).draw(genotype, path)
  page.image(path, "the best architecture", out_dir)


def _reflections_section(page, run, count) -> None:
  page.section("reflections", "Last reflections")
  last = history.last_reflections(run.trials, count)
  if not last:
    page.paragraph("This run has no reflections (random mutation, or reflection turned off).", note=True)
    return
  rows = []
  for t in last:
    change = "—" if t.get("score") is None else _fmt(float(t["score"]) - float(t["parent_score"]))
    rows.append((t["iteration"], t["kind"], t.get("child") or "—", change))
  page.paragraph("Each reflection is under its attempt's row.", note=True)
  page.table(["iteration", "outcome", "child", "score change"], rows,
             details=[t["reflection"] for t in last])


def write_search_report(run_dir: str, out_dir: str | None = None, *, benchmark: str | None = None,
                        embed: bool = False, reflections: int = 10) -> str:
  """Writes the report of the search run in ``run_dir``; returns the HTML file's path.

  Args:
    run_dir: a search run folder (finished or not).
    out_dir: where the HTML and its PNGs go; default ``run_dir/report``.
    benchmark: an NB201 table (nats_bench.csv) for the accuracy figures; default the run's
      ``config.benchmark``, else the packaged NATS-Bench table.
    embed: inline the figures in the HTML instead of linking the PNGs (which are written anyway).
    reflections: how many of the last reflections to list.

  Raises:
    RunFolderError: ``run_dir`` is not a readable search run folder.
    OSError: the benchmark file cannot be read, or ``out_dir`` cannot be written.

  Example:
    >>> write_search_report("runs/nb201")
    'runs/nb201/report/index.html'
  """
  run = run_folder.load_search_run(run_dir)
  out_dir = out_dir or os.path.join(run_dir, REPORT_DIR)
  fig_dir = out_dir
  benchmark = benchmark or run.config.get("benchmark") or None
  hist = history.replay_population(run.initial, run.trials, run.population_size,
                                   fitness=run.fitness, initial_components=run.initial_components)
  page = html.Page(f"RZ-NAS search report: {run.space}, {run.proxy}, "
                   f"{run.config.get('search', {}).get('mutation', '?')} mutation, seed "
                   f"{run.config.get('seed', '?')}", embed=embed)
  _summary_section(page, run, hist)
  _scores_section(page, run, hist, fig_dir, out_dir)
  _validity_section(page, run, fig_dir, out_dir)
  _accuracy_section(page, run, hist, benchmark, fig_dir, out_dir)
  _architecture_section(page, run, hist, fig_dir, out_dir)
  _reflections_section(page, run, reflections)
  return page.write(os.path.join(out_dir, REPORT_FILE))
