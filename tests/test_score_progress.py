"""The scorers' ``progress(count, label)`` calls and the launchers' bar: the label is the proxy
whose scores were just counted (issue 20: the bar read ``naswot`` while SynFlow was scored,
because NB201 scores the analytic proxies first, not in the order given)."""

import numpy as np

from rznas_jax import macro_scoring
from rznas_jax import score_job
from rznas_jax import scoring
from rznas_jax.spaces import nb201

TINY_NB201 = scoring.NB201Setting(channels=2, cells_per_stage=1)
TINY_MACRO = "SuperConvK3BNRELU(3,8,1,1)SuperResK3K3(8,16,2,8,1)SuperConvK1BNRELU(16,16,1,1)"
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


def _recorder(bar, traced):
  """A progress callback that feeds ``bar`` and records (count, label, bar's label, traced proxies)."""
  calls = []

  def progress(count, label):
    bar(count, label)
    calls.append((count, label, bar._bar.desc, traced()))
  return calls, progress


def test_nb201_bar_names_the_proxy_whose_scores_it_counts():
  proxies = ["naswot", "params"]  # params is scored first: the old bar said "params" during naswot
  archs = nb201.random_archs(3, seed=0)
  scorer = scoring.NB201Scorer(proxies, TINY_NB201, batch_size=4)
  bar = score_job.ProxyProgress(proxies, len(archs))
  calls, progress = _recorder(bar, lambda: set(scorer.trace_counts))
  bar.start_clock()
  scorer.score(archs, progress=progress)
  bar.close()
  assert calls[0] == (3, "params", "params: ", set())
  assert calls[1] == (0, "naswot", "naswot: ", set())  # announced before it compiles
  assert calls[2:] and all(shown == "naswot: " and traced == {"naswot"} and count > 0
                           for count, _, shown, traced in calls[2:])
  assert sum(count for count, *_ in calls[2:]) == 3
  assert set(bar.seconds) == {"naswot", "params"}
  assert bar.seconds["params"] < bar.seconds["naswot"]  # naswot compiles; params only counts


def test_macro_bar_names_the_proxy_whose_scores_it_counts():
  proxies = ["naswot", "params"]
  scorer = macro_scoring.MacroScorer(proxies, "zen_cifar", batch_size=4, resolution=16, num_classes=10,
                                     compiler_options=FAST_COMPILE)
  bar = score_job.ProxyProgress(proxies, 2)
  calls, progress = _recorder(bar, lambda: {p for _, p in scorer.trace_counts})
  scores = scorer.score([TINY_MACRO, TINY_MACRO], progress=progress)
  bar.close()
  assert np.all(np.isfinite(scores["naswot"]))
  assert calls == [(0, "naswot", "naswot: ", set()), (2, "naswot", "naswot: ", {"naswot"}),
                   (2, "params", "params: ", {"naswot"})]
