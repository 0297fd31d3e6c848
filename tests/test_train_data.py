"""Training inputs: dataset readers against hand-made files, augmentation against NumPy, the
optimiser against a NumPy PyTorch-SGD, the schedule by hand, architecture sources, and errors."""

import json
import os
import pickle

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from rznas_jax.data import DataError
from rznas_jax.spaces import nb201
from rznas_jax.train import augment
from rznas_jax.train import config as config_lib
from rznas_jax.train import data
from rznas_jax.train import optim
from rznas_jax.train.architecture import resolve_arch

GENOTYPE = "|nor_conv_3x3~0|+|none~0|skip_connect~1|+|avg_pool_3x3~0|nor_conv_1x1~1|skip_connect~2|"
MACRO = "SuperConvK3BNRELU(3,8,1,1)SuperResK3K3(8,16,2,8,1)SuperConvK1BNRELU(16,32,1,1)"


def _pickle(path, images_nchw, labels, key="labels"):
  with open(path, "wb") as f:
    pickle.dump({"data": images_nchw.reshape(len(images_nchw), -1), key: list(labels)}, f)


def test_cifar10_and_cifar100_folders_are_read_as_nhwc_with_their_labels(tmp_path):
  rng = np.random.default_rng(0)
  c10 = tmp_path / "c10"
  c10.mkdir()
  batches = [rng.integers(0, 256, (3, 3, 32, 32), dtype=np.uint8) for _ in range(3)]
  for i, b in enumerate(batches[:2], start=1):
    _pickle(c10 / f"data_batch_{i}", b, [i, 9, 0])
  _pickle(c10 / "test_batch", batches[2], [5, 6, 7])
  ds = data.load_dataset("cifar10", str(c10))
  np.testing.assert_array_equal(ds.train.images, np.concatenate(batches[:2]).transpose(0, 2, 3, 1))
  np.testing.assert_array_equal(ds.train.labels, [1, 9, 0, 2, 9, 0])
  np.testing.assert_array_equal(ds.test.images, batches[2].transpose(0, 2, 3, 1))
  assert ds.num_classes == 10 and ds.mean == pytest.approx((0.4914, 0.4822, 0.4465))

  c100 = tmp_path / "c100"
  c100.mkdir()
  _pickle(c100 / "train", batches[0], [99, 3, 50], key="fine_labels")
  _pickle(c100 / "test", batches[1], [0, 1, 2], key="fine_labels")
  ds = data.load_dataset("cifar100", str(c100))
  np.testing.assert_array_equal(ds.train.labels, [99, 3, 50])
  assert ds.num_classes == 100


def test_imagenet16_keeps_the_first_120_classes_shifted_to_zero(tmp_path):
  rng = np.random.default_rng(1)
  images = rng.integers(0, 256, (4, 3, 16, 16), dtype=np.uint8)
  for i in range(1, 11):
    _pickle(tmp_path / f"train_data_batch_{i}", images, [1, 120, 121, 1000])
  _pickle(tmp_path / "val_data", images, [2, 500, 7, 119])
  ds = data.load_dataset("imagenet16-120", str(tmp_path))
  assert ds.train.images.shape == (20, 16, 16, 3) and ds.num_classes == 120
  np.testing.assert_array_equal(ds.train.labels[:2], [0, 119])
  np.testing.assert_array_equal(ds.test.labels, [1, 6, 118])
  np.testing.assert_array_equal(ds.test.images[1], images[2].transpose(1, 2, 0))


def test_image_folder_classes_sizes_and_centre_crop(tmp_path):
  from PIL import Image
  for split in ("train", "val"):
    for c, colour in (("cat", (255, 0, 0)), ("dog", (0, 0, 255))):
      os.makedirs(tmp_path / split / c)
      im = np.zeros((20, 40, 3), np.uint8)
      im[:, 10:30] = colour  # the centre 20x20 square is pure colour; the sides are black
      Image.fromarray(im).save(tmp_path / split / c / "a.png")
  ds = data.load_dataset("imagefolder", str(tmp_path), image_size=10)
  assert ds.num_classes == 2 and ds.train.images.shape == (2, 10, 10, 3)
  np.testing.assert_array_equal(ds.train.labels, [0, 1])
  assert ds.train.images[0, :, :, 0].min() > 200 and ds.train.images[1, :, :, 2].min() > 200


def test_npz_holdout_is_a_seeded_disjoint_split():
  from conftest import CIFAR_NPZ, need
  ds = data.load_dataset("cifar10", need(CIFAR_NPZ), holdout=200, seed=0)
  again = data.load_dataset("cifar10", CIFAR_NPZ, holdout=200, seed=0)
  assert len(ds.train.labels) == 800 and len(ds.test.labels) == 200
  np.testing.assert_array_equal(ds.test.images, again.test.images)
  train_rows = {im.tobytes() for im in ds.train.images}
  assert not any(im.tobytes() in train_rows for im in ds.test.images)
  assert len(np.unique(ds.test.labels)) == 10  # a shuffled draw, not the last classes


@pytest.mark.parametrize("make, name, needle", [
    (lambda p: None, "cifar10", "does not exist"),
    (lambda p: p.mkdir(), "cifar10", "lacks test_batch"),
    (lambda p: (p.mkdir(), (p / "train").write_bytes(b"junk"), (p / "test").write_bytes(b"x")),
     "cifar100", "cannot read the pickle file"),
    (lambda p: p.mkdir(), "imagenet16-120", "ImageNet16 folder"),
    (lambda p: p.mkdir(), "imagefolder", "train/<class>/"),
])
def test_bad_datasets_raise_one_sentence_naming_the_path(tmp_path, make, name, needle):
  path = tmp_path / "d"
  make(path)
  with pytest.raises(DataError, match=needle) as e:
    data.load_dataset(name, str(path))
  assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_npz_without_holdout_and_out_of_range_labels_are_errors(tmp_path):
  path = tmp_path / "x.npz"
  np.savez(path, images=np.zeros((10, 8, 8, 3), np.uint8), labels=np.arange(10) + 5)
  with pytest.raises(DataError, match="config.holdout"):
    data.load_dataset("cifar10", str(path))
  with pytest.raises(DataError, match="span 5..14; expected 0..9"):
    data.load_dataset("cifar10", str(path), holdout=2)


def test_epoch_order_depends_only_on_seed_and_epoch():
  a = data.epoch_order(100, 3, 7)
  np.testing.assert_array_equal(a, data.epoch_order(100, 3, 7))
  assert sorted(a) == list(range(100)) and not np.array_equal(a, data.epoch_order(100, 3, 8))


def test_crop_and_flip_match_numpy_slicing():
  rng = np.random.default_rng(2)
  images = rng.integers(1, 256, (5, 6, 7, 3), dtype=np.uint8)
  offsets, flips = augment.draw_augmentation(jax.random.key(0), 500, 2)
  assert int(offsets.min()) == 0 and int(offsets.max()) == 4 and 0.4 < float(flips.mean()) < 0.6
  offsets, flips = np.asarray(offsets[:5]), np.asarray(flips[:5])
  got = np.asarray(augment.crop_and_flip(jnp.asarray(images), offsets, flips, 2))
  padded = np.pad(images, ((0, 0), (2, 2), (2, 2), (0, 0)))
  for i in range(5):
    want = padded[i, offsets[i, 0]:offsets[i, 0] + 6, offsets[i, 1]:offsets[i, 1] + 7]
    np.testing.assert_array_equal(got[i], want[:, ::-1] if flips[i] else want)
  normalised = augment.normalize(jnp.full((1, 1, 1, 3), 255, jnp.uint8), (0.5, 0.5, 0.5), (0.25, 0.5, 1.0))
  np.testing.assert_allclose(np.asarray(normalised).ravel(), [2.0, 1.0, 0.5])


def test_schedule_by_hand():
  s = optim.learning_rate_schedule(0.1, 0.0, 10, 110)
  assert float(s(0)) == 0.0 and float(s(5)) == pytest.approx(0.05) and float(s(10)) == pytest.approx(0.1)
  assert float(s(60)) == pytest.approx(0.05, abs=1e-7) and float(s(110)) == pytest.approx(0.0, abs=1e-8)
  plain = optim.learning_rate_schedule(0.1, 0.0, 0, 100)
  assert float(plain(0)) == pytest.approx(0.1) and float(plain(25)) == pytest.approx(0.05 * (1 + np.cos(np.pi / 4)))


def test_optimizer_matches_pytorch_sgd_nesterov_with_coupled_weight_decay():
  c = config_lib.default_config().optim
  c.warmup_epochs = 0.0
  tx, schedule = optim.make_optimizer(c, steps_per_epoch=4, epochs=1)
  params = {"conv": {"kernel": jnp.asarray([1.0, -2.0])}, "bn": {"scale": jnp.asarray([0.5])}}
  state = tx.init(params)
  w = {k: np.asarray(v[n], np.float64) for k, v in params.items() for n in v}
  buf = {k: np.zeros_like(v) for k, v in w.items()}
  for step in range(3):
    grads = {"conv": {"kernel": jnp.asarray([0.3, 0.1 * step])}, "bn": {"scale": jnp.asarray([-1.0])}}
    updates, state = tx.update(grads, state, params)
    params = jax.tree.map(lambda p, u: p + u, params, updates)
    lr = 0.05 * (1 + np.cos(np.pi * step / 4))  # cosine over 4 steps from 0.1
    for k, g in (("conv", np.asarray([0.3, 0.1 * step])), ("bn", np.asarray([-1.0]))):
      d = g + 5e-4 * w[k]  # torch.optim.SGD: weight decay, momentum buffer, nesterov update
      buf[k] = 0.9 * buf[k] + d if step else d
      w[k] = w[k] - lr * (d + 0.9 * buf[k])
  np.testing.assert_allclose(np.asarray(params["conv"]["kernel"]), w["conv"], rtol=1e-6)
  np.testing.assert_allclose(np.asarray(params["bn"]["scale"]), w["bn"], rtol=1e-6)
  assert float(schedule(2)) == pytest.approx(0.05)


def test_weight_decay_mask_spares_norms_and_biases():
  c = config_lib.default_config().optim
  c.decay_norm_and_bias, c.momentum, c.weight_decay = False, 0.0, 0.5
  tx, _ = optim.make_optimizer(c, 1, 1)
  params = {"conv": {"kernel": jnp.ones(2), "bias": jnp.ones(2)}, "bn": {"scale": jnp.ones(1)}}
  zero = jax.tree.map(jnp.zeros_like, params)
  updates, _ = tx.update(zero, tx.init(params), params)
  assert float(jnp.abs(updates["conv"]["kernel"]).sum()) > 0
  assert float(jnp.abs(updates["conv"]["bias"]).sum()) == 0 and float(updates["bn"]["scale"][0]) == 0


def test_architecture_sources(tmp_path):
  space, arch = resolve_arch(" " + GENOTYPE + " ")
  assert space == "nb201" and nb201.parse_genotype(arch) == nb201.parse_genotype(GENOTYPE)
  assert resolve_arch(MACRO) == ("zen_cifar", MACRO)
  run = tmp_path / "run"
  run.mkdir()
  (run / "summary.json").write_text(json.dumps({"best_arch": MACRO, "space": "mobilenet_imagenet"}))
  assert resolve_arch(str(run)) == ("mobilenet_imagenet", MACRO)
  assert resolve_arch(str(run / "summary.json")) == ("mobilenet_imagenet", MACRO)
  with pytest.raises(config_lib.ConfigError, match="'zen_cifar' but the summary"):
    resolve_arch(str(run), "zen_cifar")
  with pytest.raises(nb201.GenotypeError, match="unknown op 'conv'"):
    resolve_arch("|conv~0|+|none~0|none~1|+|none~0|none~1|none~2|")


@pytest.mark.parametrize("key, value, needle", [
    ("arch", "", "config.arch is empty"),
    ("dataset", "mnist", "config.dataset 'mnist' is unknown; valid: cifar10"),
    ("compute_dtype", "float16", "valid: float32, bfloat16"),
    ("batch_size", 0, "config.batch_size is 0; it must be at least 1"),
    ("label_smoothing", 1.0, "must be in [0, 1)"),
    ("space", "nb101", "config.space 'nb101' is unknown"),
])
def test_bad_config_values_name_themselves(key, value, needle):
  c = config_lib.default_config()
  c.arch, c.data = GENOTYPE, "/data"
  c[key] = value
  with pytest.raises(config_lib.ConfigError) as e:
    config_lib.check_config(c)
  assert needle in str(e.value)


def test_launch_configs_load():
  import importlib
  for name, arg in (("train_nb201", "cifar100"), ("train_zen_cifar", None), ("train_tiny_cpu", "synthetic")):
    c = importlib.import_module(f"launch.configs.{name}").get_config(arg)
    assert isinstance(c, ml_collections.ConfigDict)
    c.arch = c.arch or GENOTYPE
    c.data = c.data or "/data"
    config_lib.check_config(c)


def test_cutout_zeroes_the_clipped_square_around_each_drawn_centre():
  from rznas_jax.train import augment
  images = jnp.ones((6, 10, 12, 3), jnp.float32)
  key = jax.random.key(3)
  out = np.asarray(augment.cutout(images, key, 4))
  cy_key, cx_key = jax.random.split(key)  # the centres cutout draws
  cys = np.asarray(jax.random.randint(cy_key, (6, 1, 1), 0, 10)).ravel()
  cxs = np.asarray(jax.random.randint(cx_key, (6, 1, 1), 0, 12)).ravel()
  for img, cy, cx in zip(out, cys, cxs):
    want = np.ones((10, 12), np.float32)
    want[max(cy - 2, 0):min(cy + 2, 10), max(cx - 2, 0):min(cx + 2, 12)] = 0.0
    np.testing.assert_array_equal(img[..., 0], want)
    np.testing.assert_array_equal(img[..., 2], want)
