"""Reports of runs: figures (matplotlib, no display needed), an HTML page, architecture drawings.

  >>> from rznas_jax import report
  >>> report.write_report("runs/nb201")          # a search run folder -> runs/nb201/report/index.html
  >>> report.write_report("/tmp/corr")           # a launch/correlate.py folder -> its figure and page
  >>> report.write_report("runs/train")          # a training run (metrics.jsonl) -> its curves
"""

from rznas_jax.report.correlation_report import plot_correlation, write_correlation_report
from rznas_jax.report.dispatch import write_report, write_report_or_warn
from rznas_jax.report.history import PopulationHistory, rejection_rate, rejection_reasons, replay_population
from rznas_jax.report.run_folder import RunFolderError, SearchRun, load_search_run
from rznas_jax.report.search_report import write_search_report
from rznas_jax.report.training_report import write_training_report
