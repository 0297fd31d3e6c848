"""The DARTS space through the `Space` interface: counters against NASLib's stored values and the
DARTS paper, the switch network against the network built per genotype, mutations, the reply
format, training, and one-sentence errors for bad genotypes."""

import json
import os
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import CIFAR_NPZ, REPO, SHARED_DATA, need
from rznas_jax import spaces
from rznas_jax.spaces import darts
from rznas_jax.spaces import darts_net

NB301_JSON = os.path.join(SHARED_DATA, "nb301", "automl_NASLib", "zc_nasbench301.json")


@pytest.fixture(scope="module")
def naslib():
  with open(need(NB301_JSON)) as f:
    return json.load(f)["cifar10"]


def test_registry_settings_and_bad_settings():
  space = spaces.get("darts")
  assert space.name == "darts" and space.size is None and space.op_names == darts.OPS_NB301
  assert spaces.get("darts", ops="darts").op_names[0] == "none"
  with pytest.raises(spaces.SpaceError, match="'nb201' is not a DARTS op set; valid: nb301, darts"):
    spaces.get("darts", ops="nb201")
  with pytest.raises(spaces.SpaceError, match="channels is 7; it must be an even number"):
    spaces.get("darts", channels=7)
  with pytest.raises(spaces.SpaceError, match="setting 'dataset' does not apply to the darts space"):
    spaces.get("darts", dataset="cifar10")


def test_params_equal_naslib_stored_values_and_flops_rank_the_same(naslib):
  """NASLib stored each genotype's parameter count (millions, tensorwatch) of its NAS-Bench-301
  proxy network; ours is the count of the same network, exactly."""
  space = spaces.get("darts")
  ours, theirs, flops, their_flops = [], [], [], []
  for key, row in naslib.items():
    costs = space.costs(space.parse(key))
    ours.append(costs["params"] / 1e6)
    theirs.append(row["params"]["score"])
    flops.append(costs["flops"])
    their_flops.append(row["flops"]["score"])
  np.testing.assert_allclose(ours, theirs, rtol=0, atol=5e-7)  # 6 decimals stored
  from scipy import stats
  assert stats.spearmanr(flops, their_flops)[0] > 0.99


def test_counters_by_hand_and_darts_v2_in_the_paper_setting():
  # All pools: only the stem, the preprocessing and the classifier have parameters.
  pools = darts.Genotype(tuple(("max_pool_3x3", i % 2) for i in range(8)),
                         tuple(("avg_pool_3x3", i % 2) for i in range(8)))
  s = darts_net.NASLIB  # C = 32: 96-channel stem, cells N N R N N R N N
  plan = [(96, 96, 32), (96, 128, 32), (128, 128, 64), (128, 256, 64), (256, 256, 64),
          (256, 256, 128), (256, 512, 128), (512, 512, 128)]
  assert [p[:3] for p in s.plan()] == plan
  hand = 27 * 96 + 2 * 96 + sum(cpp * c + cp * c + 4 * c for cpp, cp, c in plan) + 512 * 10 + 10
  assert darts_net.count_params(s, pools) == hand
  r = {0: 32, 1: 32, 2: 32, 3: 16, 4: 16, 5: 16, 6: 8, 7: 8}  # each cell's preprocessing size
  hand_flops = 32 * 32 * 27 * 96 + sum(r[i] ** 2 * (cpp + cp) * c for i, (cpp, cp, c) in enumerate(plan))
  assert darts_net.count_flops(s, pools) == hand_flops + 512 * 10
  # DARTS (Liu et al., 2019) reports 3.3M parameters for DARTS_V2 at C = 36, 20 cells (the count
  # of quark0/darts's utils.count_parameters_in_MB, which leaves out the auxiliary head).
  assert darts_net.count_params(darts_net.EVAL, darts.DARTS_V2) == 3_349_342
  space = spaces.get("darts", channels=36, layers=20)
  module, _ = space.network(darts.DARTS_V2.genotype, auxiliary_weight=0.4, drop_path=0.2)
  shapes = jax.eval_shape(lambda k: module.init({"params": k, "dropout": k}, jnp.zeros((2, 32, 32, 3)),
                                                train=True), jax.random.key(0))["params"]
  sizes = {k: sum(int(np.prod(v.shape)) for v in jax.tree.leaves(t)) for k, t in shapes.items()}
  assert sum(v for k, v in sizes.items() if not k.startswith("aux")) == 3_349_342


def test_canonical_strings_pattern_and_checks(naslib):
  space = spaces.get("darts")
  pattern = re.compile(space.arch_pattern())
  for key in list(naslib)[:200]:
    text, reasons = space.check(key)
    assert reasons == [] and pattern.fullmatch(text), (key, reasons)
    assert space.check(text)[0] == text
  swapped = darts.Genotype(((darts.DARTS_V2.normal[1]), darts.DARTS_V2.normal[0]) + darts.DARTS_V2.normal[2:],
                           darts.DARTS_V2.reduce)
  assert space.check(swapped.genotype)[0] == space.check(darts.DARTS_V2.genotype)[0]
  bad = darts.DARTS_V2.genotype.replace("('dil_conv_3x3', 2)", "('dil_conv_3x3', 7)")
  assert space.check(bad) == (None, ["normal cell node 5 reads from node 7, which it cannot; node "
                                     "5 may read from nodes 0 to 4."])
  grammar = space.reply_grammar()
  assert grammar.startswith("root ::=") and "'sep_conv_3x3'" in grammar


def test_neighbours_mutations_and_edits():
  space = spaces.get("darts")
  rng = np.random.default_rng(0)
  parent = space.random_population(1, rng)[0]
  near = space.neighbours(parent)
  assert len(near) == len(set(near)) > 100 and parent not in near
  for child in near:
    assert space.check(child)[0] == child
    assert 1 <= len(space.edits(parent, child)) <= 2
  kinds = {k for c in near for k in space.edits(parent, c)}
  assert any("rewire" in k for k in kinds) and any("->" in k for k in kinds)
  children = [space.random_mutation(parent, rng) for _ in range(50)]
  assert all(space.check(c)[0] is not None for c in children)
  assert all(c != parent for c in children)
  pop = space.random_population(20, np.random.default_rng(1))
  assert len(set(pop)) == 20 and all(space.check(g)[0] == g for g in pop)


def test_switch_network_equals_the_network_of_the_genotype():
  """The switch form (every candidate op's parameters, genotype as arrays) gives the logits of
  the network built for the genotype with the same parameters of its ops."""
  import dataclasses
  ops = ("max_pool_3x3", "skip_connect", "sep_conv_3x3", "dil_conv_5x5")  # fewer branches to compile
  s = dataclasses.replace(darts_net.NASLIB, channels=4, layers=3, resolution=8, ops=ops)
  rng = np.random.default_rng(3)
  cells = [tuple((ops[int(rng.integers(len(ops)))], int(i)) for k in range(4)
                 for i in rng.choice(k + 2, 2, replace=False)) for _ in range(2)]
  g = darts.canonical_genotype(darts.Genotype(*cells))
  full = darts_net.init_params(s, jax.random.key(0))
  fixed = {}
  for name, tree in full.items():
    if not name.startswith("cell"):
      fixed[name] = tree
      continue
    reduction = s.plan()[int(name[4:])][3]
    fixed[name] = {"pre0": tree["pre0"], "pre1": tree["pre1"]}
    for j, (op, node) in enumerate(getattr(g, "reduce" if reduction else "normal")):
      keep = op != "skip_connect" or (reduction and node < 2)
      fixed[name][f"pair{j}"] = {op: tree[f"pair{j}"][op]} if keep and op in tree[f"pair{j}"] else {}
  x = jnp.asarray(np.random.default_rng(0).standard_normal((4, 8, 8, 3)), jnp.float32)
  a = jax.jit(lambda p, genes: darts_net.forward(s, genes, {"params": p}, x).logits)(
      full, jnp.asarray(darts_net.arrays(g, ops)))
  b = jax.jit(lambda p: darts_net.forward(s, g, {"params": p}, x).logits)(fixed)
  np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-5)
  assert float(jnp.std(b)) > 0.01  # not a degenerate network
  assert sum(v.size for v in jax.tree.leaves(fixed)) == darts_net.count_params(s, g)


@pytest.mark.parametrize("archs,needle", [
    ("Genotype(normal=[('sep_conv_3x3', 0)], normal_concat=[2, 3, 4, 5], reduce=[], "
     "reduce_concat=[2, 3, 4, 5])", "the normal cell has 1 (op, input) pairs"),
    (darts.DARTS_V2.genotype.replace("'skip_connect', 0", "'conv_7x7', 0", 1), "unknown op 'conv_7x7'"),
    ("Genotype(normal=[('sep_conv_3x3', 0)", "expected"),
])
def test_bad_darts_strings_are_one_sentence_and_exit_2(archs, needle):
  out = subprocess.run([sys.executable, "-m", "launch.score", "--space=darts", f"--archs={archs}",
                        "--proxies=params"], cwd=REPO, capture_output=True, text=True, timeout=120)
  assert out.returncode == 2, out.stderr
  lines = [l for l in out.stderr.strip().splitlines() if l.strip()]
  assert len(lines) == 1 and needle in lines[0] and "Traceback" not in out.stderr, out.stderr


def test_training_a_darts_genotype_learns_and_resumes_exactly(tmp_path):
  """A tiny DARTS network (C = 4, 3 cells, auxiliary head, drop path, Cutout) on the real CIFAR-10
  images: the loss falls over 2 epochs, and a run killed after step 5 resumes to the same
  parameters bit for bit."""
  from launch.configs import train_darts_cifar10
  from rznas_jax import train
  from rznas_jax.train import checkpoint as checkpoint_lib
  from rznas_jax.train import loop
  from rznas_jax.train import metrics as metrics_lib
  from rznas_jax.train import optim

  config = train_darts_cifar10.get_config()
  cell = (("sep_conv_3x3", 0), ("skip_connect", 1), ("max_pool_3x3", 0), ("skip_connect", 2),
          ("skip_connect", 1), ("avg_pool_3x3", 3), ("skip_connect", 0), ("dil_conv_3x3", 4))
  config.arch = darts.Genotype(cell, cell).genotype  # few convs: a short compile
  config.data = need(CIFAR_NPZ)
  config.holdout = 200
  config.darts.channels, config.darts.layers = 4, 3
  config.augment.cutout = 8
  config.epochs, config.batch_size, config.checkpoint_every_steps = 2, 200, 2
  config.optim.learning_rate = 0.05

  class Interrupted(Exception):
    pass

  def kill(step):
    if step == 5:
      raise Interrupted

  whole, broken = str(tmp_path / "whole"), str(tmp_path / "broken")
  train.run(config, whole, progress=False)
  records = metrics_lib.read_metrics(whole)
  losses = [r["train_loss"] for r in records]
  assert len(losses) == 2 and losses[-1] < losses[0], losses
  with pytest.raises(Interrupted):
    train.run(config, broken, progress=False, on_step=kill)
  train.run(config, broken, progress=False)

  net = train.build_network(config, 10, (32, 32, 3))
  tx, _ = optim.make_optimizer(config.optim, 4, config.epochs)
  like = loop.TrainState.create(net.init(jax.random.key(0)), tx, jax.random.key(1))

  def final(workdir):
    ckpt = checkpoint_lib.Checkpoints(os.path.join(workdir, "checkpoints"))
    state, _ = ckpt.restore(ckpt.latest_step(), like)
    ckpt.close()
    return jax.device_get(state.params)

  a, b = final(whole), final(broken)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(x, y)


def test_nb301_table_reads_naslib_and_knows_what_it_lacks(naslib):
  table = spaces.get("darts").benchmark(NB301_JSON)
  assert len(table) == len(naslib) == 725
  key, row = next(iter(naslib.items()))
  genotype = darts.canonical_genotype(darts.from_compact(key))
  assert table.lookup([genotype], table.ACCURACY)[0] == row["val_accuracy"]
  assert table.stored["nwot"][table.index(genotype)] == row["nwot"]["score"]
  best = int(np.argmax(table.accuracy[table.ACCURACY]))
  assert table.rank(table.archs[best], table.ACCURACY) == 1
  with pytest.raises(KeyError, match="is not in the table"):
    table.index(darts.DARTS_V2)
  with pytest.raises(spaces.SpaceError, match="lacks 1 of the 2 genotypes"):
    table.check_covers([genotype, darts.DARTS_V2])
