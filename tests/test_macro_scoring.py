"""The macro scoring harness and launch.score on the macro spaces, on tiny inputs.

Network proxies are compiled with XLA's cheapest optimisation level (`FAST_COMPILE`): on a CPU,
compiling, not running, is what a tiny network costs, and the level changes scores only by float
rounding. The launcher runs are subprocesses started together; their analytic scores are checked
against the space's counters, which `test_macro_space.py` checks by hand.
"""

import dataclasses
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from rznas_jax import data as data_lib
from rznas_jax import macro_scoring
from rznas_jax import scorer as scorer_lib
from rznas_jax import proxies as proxy_lib
from rznas_jax import score_job
from rznas_jax import spaces
from rznas_jax.proxies.maedet import maedet_score
from rznas_jax.spaces import macro
from rznas_jax.spaces import macro_spaces

from conftest import CIFAR_NPZ, need

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}
TIMEOUT_S = 600
TINY = "SuperConvK3BNRELU(3,8,1,1)SuperResK3K3(8,16,2,8,1)SuperResK1K3K1(16,16,2,8,1)SuperConvK1BNRELU(16,16,1,1)"
OTHER = "SuperConvK3BNRELU(3,8,1,1)SuperResK5K5(8,16,2,8,2)SuperConvK1BNRELU(16,24,1,1)"
SMALL = "SuperConvK3BNRELU(3,8,1,1)SuperResK3K3(8,16,2,8,1)SuperConvK1BNRELU(16,32,1,1)"
MAEDET_VARIANT = ("SuperConvK3BNRELU(3,32,2,1)SuperResK1K5K1(32,128,2,64,2)SuperResK1K3K1(128,256,2,64,1)"
                  "SuperResK1K3K1(256,512,2,128,3)SuperResK1K5K1(512,1024,2,256,1)")


def tiny_scorer(proxies, space="zen_cifar", **kw):
  kw = {"batch_size": 4, "resolution": 16, "num_classes": 10, "compiler_options": FAST_COMPILE, **kw}
  return macro_scoring.MacroScorer(proxies, space, **kw)


# --- the library -----------------------------------------------------------------------------------


def test_repeated_arch_compiles_once_and_eviction_recompiles():
  scorer = tiny_scorer(["naswot"], cache_size=1)
  first = scorer.score([TINY, OTHER, TINY])["naswot"]
  assert scorer.trace_counts == {(TINY, "naswot"): 1, (OTHER, "naswot"): 1}
  assert first[0] == first[2] and np.all(np.isfinite(first))
  again = scorer.score([OTHER])["naswot"]  # still cached: no trace
  assert scorer.trace_counts[(OTHER, "naswot")] == 1 and again[0] == first[1]
  evicted = scorer.score([macro.Arch.parse(TINY)])["naswot"]  # pushed out by OTHER: traced again
  assert scorer.trace_counts[(TINY, "naswot")] == 2 and evicted[0] == first[0]
  assert set(scorer.compile_seconds) == {"naswot"} and len(scorer.compile_seconds_by_arch) == 2


def test_same_seed_same_scores_other_seed_other_scores():
  # zen: Gaussian init, Gaussian batch, a key for eps; grad_norm: PyTorch init, random labels.
  a = tiny_scorer(["zen", "grad_norm"], seed=7).score([SMALL])
  b = tiny_scorer(["zen", "grad_norm"], seed=7).score([SMALL])
  c = tiny_scorer(["zen"], seed=8).score([SMALL])
  for proxy in ("zen", "grad_norm"):
    np.testing.assert_array_equal(a[proxy], b[proxy])
    assert np.all(np.isfinite(a[proxy]))
  assert a["zen"][0] != c["zen"][0]


def test_every_network_proxy_is_finite_on_random_zen_cifar_archs():
  # Four random valid zen_cifar architectures; each proxy scores two of them (rotating), so every
  # architecture meets half the proxies and every proxy two architectures. Compile time grows
  # with depth, so the walk starts from a 3-block structure and keeps to 3 layers.
  # Proxies that read every block's output (AZ-NAS) are NB201-only so far; MacroScorer refuses them.
  network_proxies = [p for p in proxy_lib.names()
                     if proxy_lib.get(p).data != "none" and proxy_lib.get(p).joint is None]
  assert len(network_proxies) >= 12
  zen_cifar = macro_spaces.zen_cifar(resolution=16)
  walk = dataclasses.replace(zen_cifar, initial=SMALL, max_layers=3)
  archs = macro_scoring.random_archs(walk, 4, seed=14)  # a seed whose walk meets a K1KXK1 block
  assert len(set(archs)) == 4 and all(zen_cifar.is_valid(a) for a in archs)
  assert {b.family for a in archs for b in a.blocks} == {"conv", "kxkx", "k1kxk1"}
  for i, proxy in enumerate(network_proxies):
    picked = [archs[i % 4], archs[(i + 1) % 4]]
    values = tiny_scorer([proxy], num_classes=100).score(picked)[proxy]
    assert np.all(np.isfinite(values)), (proxy, values, [a.structure for a in picked])


def test_invalid_archs_are_refused_before_any_compile():
  scorer = tiny_scorer(["naswot"], space="mobilenet_imagenet", resolution=32)
  over = macro_spaces.ZICO_450M.replace("(224,2048,1,1)", "(224,2048,1,1)SuperConvK1BNRELU(2048,2048,1,4)")
  with pytest.raises(macro_scoring.InvalidArchError, match=r"architecture 2 of 2 .* more than the maximum 14"):
    scorer.score([scorer.space.initial, over])
  with pytest.raises(macro_scoring.InvalidArchError, match="is malformed: cannot read a block"):
    scorer.score(["SuperConvK3BNRELU(3,8,2,1"])
  with pytest.raises(macro_scoring.InvalidArchError, match="SuperResK3K3 is not in the mobilenet_imagenet"):
    scorer.score([TINY.replace("(3,8,1,1)", "(3,8,2,1)")])
  assert scorer.trace_counts == {}


def test_analytic_proxies_read_the_space_counters():
  for name, archs in (("zen_cifar", [TINY, OTHER]),
                      ("mobilenet_imagenet", [macro_spaces.IMAGENET_INITIAL, macro_spaces.ZICO_450M]),
                      ("maedet_coco", [macro_spaces.MAEDET_INITIAL, MAEDET_VARIANT])):
    space = macro_spaces.get_space(name)
    proxies = ["params", "flops"] + (["maedet"] if name == "maedet_coco" else [])
    got = macro_scoring.MacroScorer(proxies, space).score(archs)
    conv = space.convention
    assert list(got["params"]) == [macro.count_params(a, space.num_classes, convention=conv) for a in archs]
    assert list(got["flops"]) == [macro.count_flops(a, space.resolution, space.num_classes, convention=conv)
                                  for a in archs]
    if name == "maedet_coco":
      assert list(got["maedet"]) == [maedet_score(a) for a in archs]
  with pytest.raises(proxy_lib.ProxySpaceError, match=r"'maedet' is defined only for .* maedet "
                     r"convention \(maedet_coco\), and the zen_cifar space uses the zen"):
    macro_scoring.MacroScorer(["maedet"], "zen_cifar")


def test_proxies_the_space_cannot_serve_are_refused_in_one_sentence():
  # AZ-NAS reads every block's output, which the macro networks do not report.
  with pytest.raises(proxy_lib.ProxySpaceError) as err:
    macro_scoring.MacroScorer(["zen", "az_trainability"], "mobilenet_imagenet")
  message = str(err.value)
  assert message.startswith("proxy 'az_trainability' reads every block's output, which the "
                            "mobilenet_imagenet networks do not report")
  assert message.endswith(".") and ". " not in message
  assert "zen" in message and "az_" not in message.split(";")[1]  # the valid ones, AZ-NAS not among them
  assert isinstance(err.value, ValueError)  # the launchers print a ValueError as one line
  # The same refusal, from the registry alone, as a config check calls it.
  with pytest.raises(proxy_lib.ProxySpaceError, match="'maedet'"):
    proxy_lib.check_for_space(["maedet"], macro_scoring.MACRO_COSTS, "zen_cifar", convention="zen",
                              reports_blocks=macro_scoring.REPORTS_BLOCKS)
  proxy_lib.check_for_space(["maedet", "zen", "params"], macro_scoring.MACRO_COSTS, "maedet_coco",
                            convention="maedet", reports_blocks=macro_scoring.REPORTS_BLOCKS)
  assert macro_scoring.CONVENTION_ONLY_PROXIES == {"maedet": "maedet"}


def test_scores_stay_on_device_until_one_fetch(monkeypatch):
  scorer = tiny_scorer(["naswot", "params", "grad_norm"])
  fetched = []
  real_fetch = scorer_lib.PendingScores.fetch

  def fetch(pending, proxies):  # what is still on a device when the call fetches
    fetched.append([(type(v).__name__, isinstance(v, jax.Array)) for v in pending.values()])
    return real_fetch(pending, proxies)

  device_gets = []
  real_get = jax.device_get
  monkeypatch.setattr(scorer_lib.PendingScores, "fetch", fetch)
  monkeypatch.setattr(jax, "device_get", lambda x: device_gets.append(1) or real_get(x))
  got = scorer.score([SMALL, TINY, SMALL])
  assert len(fetched) == 1 and len(device_gets) == 1
  # naswot and grad_norm: one device array per distinct structure; params: one host array.
  assert [on_device for _, on_device in fetched[0]] == [True, True, False, True, True]
  assert got["naswot"][0] == got["naswot"][2] and got["params"].dtype == np.float64
  assert scorer.last_devices == [scorer_lib.device_name(jax.local_devices()[0])] * 3
  assert isinstance(scorer, scorer_lib.Scorer) and scorer.proxies == ("naswot", "params", "grad_norm")


def test_overrides_rebuild_the_space():
  scorer = macro_scoring.MacroScorer(["flops"], "mobilenet_imagenet", resolution=32, num_classes=10)
  assert (scorer.space.resolution, scorer.space.num_classes) == (32, 10)
  arch = macro_spaces.IMAGENET_INITIAL
  assert scorer.score([arch])["flops"][0] == macro.count_flops(arch, 32, 10)
  with pytest.raises(ValueError, match="resolution must be at least 1"):
    macro_scoring.MacroScorer(["flops"], "zen_cifar", resolution=0)


def test_random_archs_are_seeded_distinct_valid_and_prefix_stable():
  space = macro_spaces.mobilenet_imagenet()
  five = macro_scoring.random_archs(space, 5, seed=4)
  assert five == macro_scoring.random_archs(space, 5, seed=4)
  assert five[:3] == macro_scoring.random_archs(space, 3, seed=4)
  assert five != macro_scoring.random_archs(space, 5, seed=5)
  assert len(set(five)) == 5 and space.initial_arch not in five
  assert all(space.is_valid(a) for a in five)
  starved = dataclasses.replace(space, budget_flops=1e3)
  with pytest.raises(ValueError, match="found only 0 of 2 .* The initial structure itself is not valid"):
    macro_scoring.random_archs(starved, 2, seed=0, max_tries_per_arch=20)


def test_real_images_are_drawn_and_normalised_like_nb201():
  images = data_lib.load_images(need(CIFAR_NPZ))
  scorer = macro_scoring.MacroScorer(["grad_norm", "zen"], "zen_cifar", images=images, batch_size=8,
                                     num_classes=10, seed=3)
  assert scorer.normalization == "cifar10"
  _, real, _ = scorer.inputs(macro.Arch.parse(TINY), "grad_norm")  # data="real"
  x, y = data_lib.real_batch(images, 8, 3, "cifar10", 32)
  np.testing.assert_array_equal(real.images, x)
  np.testing.assert_array_equal(real.labels, y)
  _, gaussian, _ = scorer.inputs(macro.Arch.parse(TINY), "zen")  # data="gaussian"
  np.testing.assert_array_equal(gaussian.images, data_lib.gaussian_batch(8, 32, 10, 3)[0])
  with pytest.raises(data_lib.DataError, match="has label 9, but the zen_cifar network has 5 classes"):
    macro_scoring.MacroScorer(["grad_norm"], "zen_cifar", images=images, batch_size=64, num_classes=5)
  with pytest.raises(data_lib.DataError, match="32x32, but the network takes 16x16"):
    macro_scoring.MacroScorer(["grad_norm"], "zen_cifar", images=images, resolution=16)


# --- launch.score ----------------------------------------------------------------------------------


def start(args):
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  return subprocess.Popen([sys.executable, "-m", "launch.score", *args], cwd=REPO, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(process):
  stdout, stderr = process.communicate(timeout=TIMEOUT_S)
  return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


GOOD_RUNS = {
    "mobilenet": ["--space=mobilenet_imagenet", "--proxies=flops,params", "--archs=random:2",
                  "--resolution=32", "--num_classes=10", "--seed=3"],
    "maedet": ["--space=maedet_coco", "--proxies=maedet,flops,params", "--resolution=64",
               f"--archs=initial; {MAEDET_VARIANT}"],
    "zen": ["--space=zen_cifar", "--proxies=params,flops,naswot", "--budget_params=2e6",
            "--num_classes=10", "--resolution=16", "--batch_size=4",
            f"--archs={SMALL.replace(',', ', ')} ;\n{OTHER};;{SMALL} "],
}
# (id, flags, text the one stderr line must contain)
BAD_RUNS = [
    ("malformed", ["--archs=SuperConvK3BNRELU(3,8,1,1"], ["malformed", "SuperConvK3BNRELU(3,8,1,1"]),
    ("unknown_block", [f"--archs={TINY};SuperConvK9BNRELU(3,8,1,1)"],
     ["structure 2 of 2", "SuperConvK9BNRELU", "SuperConvK7BNRELU"]),
    ("over_budget", ["--budget_params=1e4", f"--archs={OTHER}"], ["14,425 parameters, over the budget of 10,000"]),
    ("too_deep", ["--max_layers=3", "--archs=initial"], ["more than the maximum 3"]),
    ("wrong_space_block", ["--space=mobilenet_imagenet", f"--archs={TINY}"],
     ["SuperResK3K3 is not in the mobilenet_imagenet space", "SuperResIDWE1K3"]),
    ("random_zero", ["--archs=random:0"], ["random:0", "random:100"]),
    ("random_starved", ["--budget_params=10", "--archs=random:2"], ["found only 0 of 2", "budget"]),
    ("nb201_flag", ["--channels=4", "--archs=initial"], ["--channels", "zen_cifar"]),
    ("macro_flag_on_nb201", ["--space=nb201", "--resolution=16", "--archs=random:2"], ["--resolution", "nb201"]),
    ("maedet_elsewhere", ["--proxies=maedet", "--archs=initial"], ["maedet", "maedet_coco"]),
    ("bad_normalisation", ["--dataset=mnist", "--archs=initial"], ["mnist", "imagenet"]),
]


@pytest.fixture(scope="module")
def launcher_runs(tmp_path_factory):
  tmp = tmp_path_factory.mktemp("macro_launch")
  processes = {}
  for case, args in GOOD_RUNS.items():
    processes[case] = (start([*args, f"--out={tmp / case}"]), tmp / case)
  for case, flags, _ in BAD_RUNS:
    args = ["--space=zen_cifar", "--proxies=params", *flags, f"--out={tmp / case}"]
    processes[case] = (start(args), tmp / case)
  return {case: (finish(p), out) for case, (p, out) in processes.items()}


def read_scores(out):
  with open(out / "scores.json") as f:
    return json.load(f)


def test_launch_mobilenet_random_archs_with_counters(launcher_runs):
  run, out = launcher_runs["mobilenet"]
  assert run.returncode == 0, run.stderr
  record = read_scores(out)
  space = macro_spaces.mobilenet_imagenet(resolution=32, num_classes=10)
  archs = macro_scoring.random_archs(space, 2, seed=3)
  assert record["archs"] == [a.structure for a in archs]
  assert record["scores"]["flops"] == [macro.count_flops(a, 32, 10) for a in archs]
  assert record["scores"]["params"] == [macro.count_params(a, 10) for a in archs]
  assert record["settings"]["macro_space"]["budget_flops"] == 450e6
  assert record["settings"]["resolved_strategy"] == "unrolled"
  csv_text = (out / "scores.csv").read_text()
  assert f",{macro.count_flops(archs[0], 32, 10)!r}," in csv_text  # plain numbers, not millions
  assert "Traceback" not in run.stderr


def test_launch_maedet_scores_equal_the_counters(launcher_runs):
  run, out = launcher_runs["maedet"]
  assert run.returncode == 0, run.stderr
  record = read_scores(out)
  archs = [macro_spaces.MAEDET_INITIAL, MAEDET_VARIANT]
  assert record["archs"] == archs
  assert record["scores"]["maedet"] == [maedet_score(a) for a in archs]
  assert record["scores"]["flops"] == [macro.count_flops(a, 64, convention="maedet") for a in archs]
  assert record["scores"]["params"] == [macro.count_params(a, convention="maedet") for a in archs]


def test_launch_zen_list_separators_budget_flag_and_naswot(launcher_runs):
  run, out = launcher_runs["zen"]
  assert run.returncode == 0, run.stderr
  record = read_scores(out)
  archs = [SMALL, OTHER, SMALL]
  assert record["archs"] == archs
  assert record["scores"]["params"] == [macro.count_params(a, 10) for a in archs]
  assert record["scores"]["flops"] == [macro.count_flops(a, 16, 10) for a in archs]
  naswot = record["scores"]["naswot"]
  assert all(np.isfinite(naswot)) and naswot[0] == naswot[2]
  assert record["timing"]["compile_seconds"]["naswot"] > 0
  space = record["settings"]["macro_space"]
  assert (space["budget_params"], space["max_layers"], space["resolution"]) == (2e6, 20, 16)


@pytest.mark.parametrize("case,expected", [(c[0], c[2]) for c in BAD_RUNS], ids=[c[0] for c in BAD_RUNS])
def test_bad_input_gets_one_line_and_exit_code_2(launcher_runs, case, expected):
  run, out = launcher_runs[case]
  lines = run.stderr.strip().splitlines()
  assert run.returncode == 2, run.stderr
  assert "Traceback" not in run.stderr + run.stdout
  assert len(lines) == 1, run.stderr
  for text in expected:
    assert text in lines[0], lines[0]
  assert not os.path.exists(out / "scores.csv")


def test_archs_spec_forms_in_process():
  assert macro_spaces.split_structures(" A(1, 2)B(3);C(4)\tD(5) ;; ") == ["A(1, 2)B(3)", "C(4)", "D(5)"]
  space = spaces.get("zen_cifar")
  assert space == macro_spaces.zen_cifar()
  assert space.archs(f"initial;{TINY}", seed=0) == [space.initial_arch, macro.Arch.parse(TINY)]
  assert space.archs("random:3", seed=2) == macro_scoring.random_archs(space, 3, seed=2)
  assert score_job.sample(space, "3", seed=2) == macro_scoring.random_archs(space, 3, seed=2)
  for bad in ("", " ; ", "random:x", "random:-1"):
    with pytest.raises(spaces.SpaceError, match="random:|empty"):
      space.archs(bad, seed=0)
  with pytest.raises(spaces.SpaceError, match="no benchmark table"):
    space.benchmark("table.csv")
