"""Macro spaces: grammar, counters (against hand arithmetic), validation, mutation, MAE-DET, networks.

The FLOPs/params references below are written out layer by layer from Zen-NAS's block formulas
(idstcv/ZenNAS ``PlainNet/``) and, for the MAE-DET space, from tinynas's block formulas; they do
not call the counters. Networks are checked against a NumPy forward pass and against the
counters' own parameter conventions.
"""

import functools
import math
import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rznas_jax.proxies.maedet import maedet_score
from rznas_jax import proxies
from rznas_jax.spaces import layers, macro, macro_mutation, macro_net, macro_spaces
from rznas_jax.spaces.macro import Arch, Block, StructureError

from conftest import REPO

CIFAR = macro_spaces.CIFAR_INITIAL
IMAGENET = macro_spaces.IMAGENET_INITIAL
ZICO_450M = macro_spaces.ZICO_450M
MAEDET = macro_spaces.MAEDET_INITIAL
PROMPT_EXAMPLE = "SuperConvK3BNRELU(3,64,1,1)SuperResK1K5K1(64,168,1,16,3)SuperResK1K3K1(168,80,2,32,4)"
# The maintainers' notes on the paper, beside the repository (not part of it); the test that reads
# them skips without them.
METHOD_MD = os.path.join(os.path.dirname(REPO), "shared", "METHOD.md")
# The networks here are tiny: optimising their XLA programs takes longer than running them.
jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})


# --- Zen-NAS's formulas, restated for hand arithmetic ------------------------------------------


def conv(cin, cout, k, h, s=1):
  """Zen ConvKX FLOPs at input resolution h."""
  return cin * cout * k * k * h * h // s // s


def dw(c, k, h, s=1):
  return c * k * k * h * h // s // s


def bn(c, h):
  """Zen BN FLOPs at its (output) resolution h."""
  return c * h * h


def proj(cin, cout, h_out, s):
  """Zen ResBlock projection FLOPs: the output resolution divided by s once more."""
  return cin * cout * (h_out / s) ** 2 + (h_out / s) ** 2 * cout


# --- grammar -------------------------------------------------------------------------------------


@pytest.mark.parametrize("s", [CIFAR, IMAGENET, ZICO_450M, PROMPT_EXAMPLE, MAEDET])
def test_method_strings_round_trip(s):
  a = Arch.parse(s)
  assert str(a) == s and a.structure == s
  assert Arch.parse(str(a)) == a and hash(Arch.parse(s)) == hash(a)
  assert {a: 1}[Arch.parse(s)] == 1


def test_parse_fields_and_whitespace():
  a = Arch.parse(" SuperResIDWE6K3( 8, 32, 2, 8, 1 ) SuperConvK1BNRELU(32,64,1,1)\n")
  b = a.blocks[0]
  assert (b.in_channels, b.out_channels, b.stride, b.bottleneck, b.sub_layers) == (8, 32, 2, 8, 1)
  assert (b.family, b.kernel, b.type.expansion) == ("idw", 3, 6)
  assert a.blocks[1].bottleneck is None and a.blocks[1].kernel == 1
  assert str(a) == "SuperResIDWE6K3(8,32,2,8,1)SuperConvK1BNRELU(32,64,1,1)"


def test_every_structure_string_in_method_md():
  if not os.path.exists(METHOD_MD):
    pytest.skip(f"{METHOD_MD} is not present")
  with open(METHOD_MD) as f:
    text = f.read()
  runs = re.findall(r"(?:Super[A-Za-z0-9]+\([0-9,]+\))+", text)
  assert len(runs) >= 5
  for s in runs:
    assert str(Arch.parse(s)) == s
  # The released in-context example uses names without "Super" and 4-argument residual blocks.
  bad = "ConvK3BNRELU(3,32,1,1)ResK1K5K1(32,120,1,40)ResK1K5K1(120,176,2,32)"
  assert bad in text
  with pytest.raises(StructureError) as e:
    Arch.parse(bad)
  assert len(e.value.reasons) == 3 and "ResK1K5K1" in e.value.reasons[1]


# --- counters against hand arithmetic ------------------------------------------------------------


def test_cifar_initial_counts_by_hand():
  # SuperConvK3BNRELU(3,8,1,1)SuperResK3K3(8,16,1,8,1)SuperResK3K3(16,32,2,16,1)
  # SuperResK3K3(32,64,2,32,1)SuperResK3K3(64,64,2,32,1)SuperConvK1BNRELU(64,128,1,1), res 32.
  flops = [
      3 * 8 * 9 * 32 * 32 + 32 * 32 * 8,  # conv3x3 3->8, BN
      # ResBlockProj(Conv3x3 8->8, BN, ReLU, Conv3x3 8->16, BN) + proj 8->16 at (32/1)^2
      8 * 8 * 9 * 32 * 32 + 32 * 32 * 8 + 8 * 16 * 9 * 32 * 32 + 32 * 32 * 16
      + 8 * 16 * 32 * 32 + 32 * 32 * 16,
      # stride 2: 32 -> 16; proj at (16/2)^2
      16 * 16 * 9 * 32 * 32 // 4 + 16 * 16 * 16 + 16 * 32 * 9 * 16 * 16 + 16 * 16 * 32
      + 16 * 32 * 8 * 8 + 8 * 8 * 32,
      # 16 -> 8; proj at (8/2)^2
      32 * 32 * 9 * 16 * 16 // 4 + 8 * 8 * 32 + 32 * 64 * 9 * 8 * 8 + 8 * 8 * 64
      + 32 * 64 * 4 * 4 + 4 * 4 * 64,
      # 8 -> 4; proj at (4/2)^2
      64 * 32 * 9 * 8 * 8 // 4 + 4 * 4 * 32 + 32 * 64 * 9 * 4 * 4 + 4 * 4 * 64
      + 64 * 64 * 2 * 2 + 2 * 2 * 64,
      64 * 128 * 4 * 4 + 4 * 4 * 128,  # conv1x1 64->128 at 4, BN
      128 * 100,  # classifier
  ]
  assert flops == [229376, 1941504, 1816576, 1809408, 608000, 133120, 12800]
  params = [
      3 * 8 * 9 + 8,
      8 * 8 * 9 + 8 + 8 * 16 * 9 + 16 + (8 * 16 + 16),
      16 * 16 * 9 + 16 + 16 * 32 * 9 + 32 + (16 * 32 + 32),
      32 * 32 * 9 + 32 + 32 * 64 * 9 + 64 + (32 * 64 + 64),
      64 * 32 * 9 + 32 + 32 * 64 * 9 + 64 + (64 * 64 + 64),
      64 * 128 + 128,
      128 * 100 + 1,  # the classifier bias counted as 1
  ]
  assert sum(flops) == 6550784 and sum(params) == 101721
  assert macro.count_flops(CIFAR, 32, 100) == 6550784
  assert macro.count_params(CIFAR, 100) == 101721
  assert macro.count_layers(CIFAR) == 6
  # Without shortcuts (the networks proxies score) the four projections go.
  proj_flops = 8 * 16 * 32 * 32 + 32 * 32 * 16 + 16 * 32 * 64 + 64 * 32 + 32 * 64 * 16 + 16 * 64 \
      + 64 * 64 * 4 + 4 * 64
  assert macro.count_flops(CIFAR, 32, 100, no_reslink=True) == 6550784 - proj_flops
  assert macro.count_params(CIFAR, 100, no_reslink=True) == 101721 - (144 + 544 + 2112 + 4160)


def test_imagenet_initial_counts_by_hand():
  # IDW E6K3 blocks: dw1 = 6*btn, dw2 = 6*out (all multiples of 8 already).
  flops = [
      conv(3, 8, 3, 224, 2) + bn(8, 112),
      # SuperResIDWE6K3(8,32,2,8,1) at 112: [8->48, DW 48 s2, 48->8] + proj(8->8, s2);
      # [8->192, DW, 192->32] + proj(8->32)
      conv(8, 48, 1, 112) + bn(48, 112) + dw(48, 3, 112, 2) + bn(48, 56) + conv(48, 8, 1, 56) + bn(8, 56)
      + proj(8, 8, 56, 2)
      + conv(8, 192, 1, 56) + bn(192, 56) + dw(192, 3, 56) + bn(192, 56) + conv(192, 32, 1, 56) + bn(32, 56)
      + proj(8, 32, 56, 1),
      # SuperResIDWE6K3(32,48,2,32,1) at 56
      conv(32, 192, 1, 56) + bn(192, 56) + dw(192, 3, 56, 2) + bn(192, 28) + conv(192, 32, 1, 28) + bn(32, 28)
      + proj(32, 32, 28, 2)
      + conv(32, 288, 1, 28) + bn(288, 28) + dw(288, 3, 28) + bn(288, 28) + conv(288, 48, 1, 28) + bn(48, 28)
      + proj(32, 48, 28, 1),
      # SuperResIDWE6K3(48,96,2,48,1) at 28
      conv(48, 288, 1, 28) + bn(288, 28) + dw(288, 3, 28, 2) + bn(288, 14) + conv(288, 48, 1, 14) + bn(48, 14)
      + proj(48, 48, 14, 2)
      + conv(48, 576, 1, 14) + bn(576, 14) + dw(576, 3, 14) + bn(576, 14) + conv(576, 96, 1, 14) + bn(96, 14)
      + proj(48, 96, 14, 1),
      # SuperResIDWE6K3(96,128,2,96,1) at 14 -> 7; the projection sees (7/2)^2 = 12.25
      conv(96, 576, 1, 14) + bn(576, 14) + dw(576, 3, 14, 2) + bn(576, 7) + conv(576, 96, 1, 7) + bn(96, 7)
      + proj(96, 96, 7, 2)
      + conv(96, 768, 1, 7) + bn(768, 7) + dw(768, 3, 7) + bn(768, 7) + conv(768, 128, 1, 7) + bn(128, 7)
      + proj(96, 128, 7, 1),
      conv(128, 2048, 1, 7) + bn(2048, 7),
      2048 * 1000,
  ]
  params = [
      3 * 8 * 9 + 8,
      8 * 48 + 48 + 48 * 9 + 48 + 48 * 8 + 8 + (8 * 8 + 8)
      + 8 * 192 + 192 + 192 * 9 + 192 + 192 * 32 + 32 + (8 * 32 + 32),
      32 * 192 + 192 + 192 * 9 + 192 + 192 * 32 + 32 + (32 * 32 + 32)
      + 32 * 288 + 288 + 288 * 9 + 288 + 288 * 48 + 48 + (32 * 48 + 48),
      48 * 288 + 288 + 288 * 9 + 288 + 288 * 48 + 48 + (48 * 48 + 48)
      + 48 * 576 + 576 + 576 * 9 + 576 + 576 * 96 + 96 + (48 * 96 + 96),
      96 * 576 + 576 + 576 * 9 + 576 + 576 * 96 + 96 + (96 * 96 + 96)
      + 96 * 768 + 768 + 768 * 9 + 768 + 768 * 128 + 128 + (96 * 128 + 128),
      128 * 2048 + 2048,
      2048 * 1000 + 1,
  ]
  assert sum(flops) == 162396776.0 and sum(params) == 2813889
  assert macro.count_flops(IMAGENET, 224, 1000) == sum(flops)
  assert macro.count_params(IMAGENET, 1000) == sum(params)
  assert macro.count_layers(IMAGENET) == 6


def test_zico_450m_counts_by_hand():
  # E1K7(16,40,2,40,1): dw 40/40. E2K7(40,80,2,64,1): dw 128/160. E4K7(80,96,2,96,5): dw 384/384.
  # E2K7(96,224,2,224,5): dw 448/448. A projection exists when the channels change.
  def idw_half(cin, mid, cout, k, h, s):
    """1x1 cin->mid, BN, DW k (stride s), BN, 1x1 mid->cout, BN: FLOPs and params."""
    ho = h // s
    f = conv(cin, mid, 1, h) + bn(mid, h) + dw(mid, k, h, s) + bn(mid, ho) \
        + conv(mid, cout, 1, ho) + bn(cout, ho)
    p = cin * mid + mid + mid * k * k + mid + mid * cout + cout
    return f, p

  blocks = [(conv(3, 16, 3, 224, 2) + bn(16, 112), 3 * 16 * 9 + 16)]
  # block 2 at 112
  fa, pa = idw_half(16, 40, 40, 7, 112, 2)
  fb, pb = idw_half(40, 40, 40, 7, 56, 1)
  blocks.append((fa + proj(16, 40, 56, 2) + fb, pa + 16 * 40 + 40 + pb))
  # block 3 at 56
  fa, pa = idw_half(40, 128, 64, 7, 56, 2)
  fb, pb = idw_half(64, 160, 80, 7, 28, 1)
  blocks.append((fa + proj(40, 64, 28, 2) + fb + proj(64, 80, 28, 1),
                 pa + 40 * 64 + 64 + pb + 64 * 80 + 80))
  # block 4 at 28, five sub-layers; sub-layers 1..4 repeat [96->384->96][96->384->96] at 14
  fa, pa = idw_half(80, 384, 96, 7, 28, 2)
  fb, pb = idw_half(96, 384, 96, 7, 14, 1)
  blocks.append((fa + proj(80, 96, 14, 2) + fb + 4 * (2 * fb), pa + 80 * 96 + 96 + pb + 4 * (2 * pb)))
  # block 5 at 14 -> 7, five sub-layers; the projection sees (7/2)^2
  fa, pa = idw_half(96, 448, 224, 7, 14, 2)
  fb, pb = idw_half(224, 448, 224, 7, 7, 1)
  blocks.append((fa + proj(96, 224, 7, 2) + fb + 4 * (2 * fb), pa + 96 * 224 + 224 + pb + 4 * (2 * pb)))
  blocks.append((conv(224, 2048, 1, 7) + bn(2048, 7), 224 * 2048 + 2048))
  blocks.append((2048 * 1000, 2048 * 1000 + 1))
  flops, params = sum(f for f, _ in blocks), sum(p for _, p in blocks)
  assert flops == 438385944.0 and flops <= 450e6  # ZiCo's 450M model fits its budget
  assert params == 5716393
  assert macro.count_flops(ZICO_450M, 224, 1000) == flops
  assert macro.count_params(ZICO_450M, 1000) == params
  assert macro.count_layers(ZICO_450M) == 1 + 1 + 1 + 5 + 5 + 1
  assert macro_spaces.mobilenet_imagenet(450e6).validate(ZICO_450M) == []


def test_maedet_initial_counts_by_hand():
  # tinynas: ConvKXBN flops per unit area (in*out*k^2/s^2 + 2*out/s^2), times the input area;
  # ResK1KXK1 adds its ReLUs, a 2x2 average pool when strided, and a 1x1 projection when the
  # channels change or in a block's first bottleneck. BN params are 2C.
  def bottleneck(cin, cout, btn, k, s):
    f = (cin * btn + 2 * btn) + (btn * btn * k * k / s**2 + 2 * btn / s**2) + (btn * cout + 2 * cout) / s**2 \
        + btn + btn / s**2 + cout / s**2 + (cin if s == 2 else 0) + (cin * cout + 2 * cout) / s**2 + cout / s**2
    p = cin * btn + 2 * btn + btn * btn * k * k + 2 * btn + btn * cout + 2 * cout + cin * cout + 2 * cout
    return f, p

  stem = ((3 * 32 * 9 / 4 + 2 * 32 / 4 + 32 / 4) * 480**2, 3 * 32 * 9 + 2 * 32)
  b1, b2, b3 = bottleneck(32, 256, 64, 3, 2), bottleneck(256, 512, 128, 3, 2), bottleneck(512, 768, 256, 3, 2)
  b4, b5 = bottleneck(768, 1024, 256, 3, 1), bottleneck(1024, 2048, 512, 3, 2)
  flops = stem[0] + b1[0] * 240**2 + b2[0] * 120**2 + b3[0] * 60**2 + b4[0] * 30**2 + b5[0] * 30**2
  params = stem[1] + b1[1] + b2[1] + b3[1] + b4[1] + b5[1]
  assert stem[0] == 55296000 and b1[0] * 240**2 == 1040486400
  assert macro.count_flops(MAEDET, 480, convention="maedet") == pytest.approx(flops, rel=1e-12)
  assert macro.count_params(MAEDET, convention="maedet") == params
  assert macro.count_layers(MAEDET, convention="maedet") == 1 + 3 * 5
  space = macro_spaces.maedet_coco()
  assert space.validate(MAEDET) == [] and space.costs(MAEDET)["flops"] <= 188e8


def test_maedet_score_by_hand():
  def log_sqrt(x):
    return math.log(math.sqrt(x))

  stds = [log_sqrt(3 * 9),
          log_sqrt(32) + log_sqrt(64 * 9) + log_sqrt(64),
          log_sqrt(256) + log_sqrt(128 * 9) + log_sqrt(128),
          log_sqrt(512) + log_sqrt(256 * 9) + log_sqrt(256),
          log_sqrt(768) + log_sqrt(256 * 9) + log_sqrt(256),
          log_sqrt(1024) + log_sqrt(512 * 9) + log_sqrt(512)]
  # Stages end before blocks 1, 2, 3 and 5 (the stride-2 ones) and at the end; ratios 0,0,1,1,6.
  expected = (sum(stds[:3]) + math.log(512)) + (sum(stds[:5]) + math.log(1024)) \
      + 6 * (sum(stds) + math.log(2048))
  assert maedet_score(MAEDET) == pytest.approx(expected, rel=1e-12)
  spec = proxies.get("maedet")
  assert spec.data == "none"
  assert spec.fn(macro_spaces.maedet_coco().costs(MAEDET)) == pytest.approx(expected, rel=1e-12)
  # Two bottlenecks in the last stage: its sum gains one more log std, with in = out = 2048.
  deeper = MAEDET[:-2] + "2)"
  extra = log_sqrt(2048) + log_sqrt(512 * 9) + log_sqrt(512)
  assert maedet_score(deeper) == pytest.approx(expected + 6 * extra, rel=1e-12)
  four_stages = ("SuperConvK3BNRELU(3,32,2,1)SuperResK1K3K1(32,256,2,64,1)SuperResK1K3K1(256,512,2,128,1)"
                 "SuperResK1K3K1(512,768,2,256,1)SuperResK1K3K1(768,1024,1,256,1)")
  with pytest.raises(ValueError, match="4 stages"):
    maedet_score(four_stages)


# --- validation ----------------------------------------------------------------------------------


CIFAR_SPACE = macro_spaces.zen_cifar(1e6)
IMAGENET_SPACE = macro_spaces.mobilenet_imagenet(450e6)
COCO_SPACE = macro_spaces.maedet_coco()
STEM = "SuperConvK3BNRELU(3,8,1,1)"

ONE_REASON_CASES = [
    # (structure, space, substrings the single reason must contain)
    (STEM + "ResK1K5K1(8,120,1,40,1)", CIFAR_SPACE, ["'ResK1K5K1'", "unknown block"]),
    (STEM + "SuperResK3K3(8,16,1,8)", CIFAR_SPACE, ["SuperResK3K3(8,16,1,8)", "4 arguments", "takes 5"]),
    ("SuperConvK3BNRELU(3,8,1,x)", CIFAR_SPACE, ["'x'", "integer"]),
    ("SuperConvK3BNRELU(3,4096,1,1)SuperConvK1BNRELU(4096,128,1,1)", CIFAR_SPACE, ["4096", "[8, 2048]"]),
    (STEM + "SuperResK3K3(8,16,1,4,1)", CIFAR_SPACE, ["bottleneck_channels 4", "[8, 2048]"]),
    ("SuperConvK3BNRELU(3,12,1,1)SuperConvK1BNRELU(12,16,1,1)", CIFAR_SPACE,
     ["out_channels 12", "multiple of 8"]),
    ("SuperConvK3BNRELU(3,8,3,1)", CIFAR_SPACE, ["stride 3", "1 or 2"]),
    ("SuperConvK3BNRELU(3,8,1,0)", CIFAR_SPACE, ["sub_layers 0"]),
    (STEM + "SuperResK3K3(16,16,1,8,1)", CIFAR_SPACE, ["takes 16 input channels", "outputs 8"]),
    ("SuperConvK3BNRELU(4,8,1,1)", CIFAR_SPACE, ["takes 4 input channels", "must take 3"]),
    (STEM + "SuperResK3K3(8,8,1,8,20)", CIFAR_SPACE, ["21 layers", "maximum 18"]),
    (STEM + "SuperResIDWE6K3(8,16,1,8,1)", CIFAR_SPACE, ["SuperResIDWE6K3", "not in the zen_cifar"]),
    ("SuperConvK3BNRELU(3,8,2,1)" + "SuperConvK3BNRELU(8,8,2,1)" * 5, CIFAR_SPACE, ["6 times", "at most 5"]),
    # params by hand: 224 + (8*512*9 + 512 + 512*512*9 + 512 + 8*512 + 512) + (512*100 + 1)
    (STEM + "SuperResK3K3(8,512,1,512,1)", CIFAR_SPACE, ["2,453,217 parameters", "1,000,000"]),
    # FLOPs by hand: 3*64*9*224^2//4 + 64*112^2 + 64*128*9*112^2 + 128*112^2 + 128*1000
    ("SuperConvK3BNRELU(3,64,2,1)SuperConvK3BNRELU(64,128,1,1)", IMAGENET_SPACE,
     ["949,056,512 FLOPs", "450,000,000"]),
    (MAEDET.replace("(768,1024,1,", "(768,1024,2,"), COCO_SPACE, ["5 stride-2 blocks", "exactly 5 stages"]),
    (MAEDET + "SuperConvK3BNRELU(2048,64,1,1)", COCO_SPACE, ["SuperConvK3BNRELU", "first block"]),
]


@pytest.mark.parametrize("structure,space,needles", ONE_REASON_CASES)
def test_each_failure_gives_one_reason_naming_the_value(structure, space, needles):
  reasons = space.validate(structure)
  assert len(reasons) == 1, reasons
  assert reasons[0].endswith(".")
  for needle in needles:
    assert needle in reasons[0], (needle, reasons[0])


def test_several_failures_give_several_reasons():
  reasons = CIFAR_SPACE.validate("SuperConvK3BNRELU(3,12,3,1)SuperResK3K3(16,16,1,8,1)Bogus(1)")
  assert len(reasons) == 1 and "Bogus" in reasons[0]  # a parse failure stops there
  reasons = CIFAR_SPACE.validate("SuperConvK3BNRELU(3,12,3,1)SuperResK3K3(16,16,1,8,1)")
  assert len(reasons) == 3  # not a multiple of 8, stride 3, in 16 after out 12
  assert macro_spaces.validate(CIFAR) == [] and macro_spaces.validate(IMAGENET, "mobilenet_imagenet") == []
  assert CIFAR_SPACE.validate("") and CIFAR_SPACE.validate("hello")


def test_space_settings_and_description():
  assert (CIFAR_SPACE.max_layers, macro_spaces.zen_cifar(2e6).max_layers) == (18, 20)
  assert [macro_spaces.mobilenet_imagenet(f).max_layers for f in (450e6, 600e6, 1e9)] == [14, 14, 16]
  coco = macro_spaces.maedet_coco()
  assert (coco.resolution, coco.budget_flops, coco.max_layers, coco.convention) == (480, 188e8, 91, "maedet")
  for space in (CIFAR_SPACE, macro_spaces.get_space("mobilenet_imagenet", flops=600e6), coco):
    text = space.description()
    assert space.initial in text and str(space.max_layers) in text
    assert all(name in text for name in space.allowed_blocks)
    assert space.validate(space.initial) == []
  assert "1M parameters" in CIFAR_SPACE.description() and "600M FLOPs" in \
      macro_spaces.mobilenet_imagenet(600e6).description()
  with pytest.raises(ValueError, match="unknown macro space"):
    macro_spaces.get_space("darts")


# --- the Zen-NAS random mutation -----------------------------------------------------------------


def test_candidate_sets_by_hand():
  block = Block("SuperResK3K3", 16, 32, 2, 1, 16)
  # out 32 x {2.5,2,1.5,1.25,1,.8,.667,.5,.4} -> 80,64,48,40,32,25.6,21.3,16,12.8 -> rounded to 8:
  assert macro_mutation.width_candidates(32) == [80, 64, 48, 40, 32, 24, 16]
  # btn 16 -> 40,32,24,20,16,12.8,10.7,8,6.4; Python rounds 20/8 = 2.5 to 2 (16), 6.4 clips to 8.
  assert macro_mutation.width_candidates(16) == [40, 32, 24, 16, 8]
  assert macro_mutation.depth_candidates(1) == [3, 2, 1]
  cands = macro_mutation.block_candidates(block, macro_mutation.XXBL)
  assert len(cands) == len(set(cands)) == 6 * 7 * 3 * 5
  assert all(c.in_channels == 16 and c.stride == 2 for c in cands)
  assert {c.name for c in cands} == set(macro_mutation.XXBL.residual_types)
  # IDW clips only below; XXBL clips at 2048; the IDW final 1x1 conv never changes.
  assert macro_mutation.width_candidates(2048, macro_mutation.IDW)[0] == 5120
  assert macro_mutation.width_candidates(2048, macro_mutation.XXBL)[0] == 2048
  fc = Block("SuperConvK1BNRELU", 128, 2048, 1, 1)
  assert macro_mutation.block_candidates(fc, macro_mutation.IDW) == [fc]
  # 8 x {2.5, 2, 1.5, 1.25, ...} = 20, 16, 12, 10, 8, ... -> 16, 16, 16, 8, 8, ...; sub_layers reset to 1.
  stem = Block("SuperConvK3BNRELU", 3, 8, 2, 2)
  assert [str(b) for b in macro_mutation.block_candidates(stem, macro_mutation.IDW)] == [
      "SuperConvK3BNRELU(3,16,2,1)", "SuperConvK3BNRELU(3,8,2,1)"]


def test_mutation_is_a_uniform_draw_then_rechain():
  parent = Arch.parse(CIFAR)
  for seed in range(20):
    ref = np.random.default_rng(seed)
    idx = int(ref.integers(len(parent)))
    cands = macro_mutation.block_candidates(parent.blocks[idx], macro_mutation.XXBL)
    new = cands[int(ref.integers(len(cands)))]
    child = macro_mutation.mutate(parent, np.random.default_rng(seed), macro_mutation.XXBL)
    got = child.blocks[idx]
    assert got.replace(in_channels=new.in_channels) == new
    for i, b in enumerate(child.blocks):
      assert b.in_channels == (3 if i == 0 else child.blocks[i - 1].out_channels)
      if i != idx:
        assert b.replace(in_channels=parent.blocks[i].in_channels) == parent.blocks[i]
    assert child == macro_mutation.mutate(parent, np.random.default_rng(seed), macro_mutation.XXBL)


def test_split_rule_caps_depth():
  blocks = [Block("SuperResK3K3", 16, 32, 2, 7, 16), Block("SuperResK3K3", 32, 32, 1, 5, 16),
            Block("SuperConvK3BNRELU", 32, 32, 1, 9)]
  out = macro_mutation.split_blocks(blocks, 6)
  assert [str(b) for b in out] == ["SuperResK3K3(16,32,2,16,3)", "SuperResK3K3(32,32,1,16,3)",
                                   "SuperResK3K3(32,32,1,16,5)", "SuperConvK3BNRELU(32,32,1,9)"]
  assert macro_mutation.split_blocks(blocks, None) == blocks


def test_thousand_mutations_are_valid_or_explained():
  rng = np.random.default_rng(0)
  spaces = [CIFAR_SPACE, IMAGENET_SPACE, COCO_SPACE]
  valid_children = {s.name: [] for s in spaces}
  for step in range(1000):
    space = spaces[step % 3]
    parents = valid_children[space.name] or [space.initial_arch]
    parent = parents[int(rng.integers(len(parents)))]
    child = space.mutate(parent, rng, num_replaces=1 + step % 2)
    reasons = space.validate(child)
    assert all(isinstance(r, str) and r.endswith(".") for r in reasons)
    assert space.validate(str(child)) == reasons and Arch.parse(str(child)) == child
    if not reasons:
      valid_children[space.name].append(child)
    if space.mutation.split_threshold is not None:
      assert all(b.sub_layers < 6 for b in child.blocks if b.family != "conv")
  for space in spaces:
    assert len(valid_children[space.name]) > 30, space.name
    # The latest valid child builds into a network (traced only, at the space's own resolution).
    for child in valid_children[space.name][-1:]:
      net = space.model(child)
      image = (space.resolution, space.resolution, 3)
      shapes = jax.eval_shape(lambda: macro_net.init_variables(net, jax.random.key(0), image))
      out = jax.eval_shape(macro_net.make_apply_fn(net), shapes, jax.ShapeDtypeStruct((1, *image), jnp.float32))
      assert out.logits.shape == (1, space.num_classes)
      side = space.resolution
      for b in child.blocks:  # a stride-2 conv with padding (k-1)//2 gives ceil(side / 2)
        side = -(-side // b.stride)
      assert out.features.shape[1] == side


# --- networks ------------------------------------------------------------------------------------


def _counts(params):
  flat = jax.tree_util.tree_flatten_with_path(params)[0]
  names = [[getattr(k, "key", "") for k in path] for path, _ in flat]
  total = sum(leaf.size for _, leaf in flat)
  bn = sum(leaf.size for n, (_, leaf) in zip(names, flat) if n[-1] == "scale" and "se" not in n)
  proj_bn = sum(leaf.size for n, (_, leaf) in zip(names, flat) if n[-1] == "scale" and "proj_bn" in n)
  return total, bn, proj_bn


@pytest.mark.parametrize("no_reslink", [True, False])
def test_cifar_initial_network(no_reslink):
  arch = Arch.parse(CIFAR)
  net = macro_net.MacroNetwork(arch, 100, no_reslink=no_reslink)
  variables = macro_net.init_variables(net, jax.random.key(0))
  images = jnp.asarray(np.random.default_rng(1).normal(size=(2, 32, 32, 3)), jnp.float32)
  out = jit(macro_net.make_apply_fn(net))(variables, images)
  assert out.logits.shape == (2, 100) and out.features.shape == (2, 4, 4, 128)
  assert np.all(np.isfinite(out.logits)) and np.all(out.features >= 0)
  # ReLU inputs: 1 (stem) + 2 per KXKX sub-layer x 4 + 1 (1x1 conv); convs and the classifier are acts.
  assert [x.shape for x, _ in out.relu_inputs] == [
      (2, 32, 32, 8), (2, 32, 32, 8), (2, 32, 32, 16), (2, 16, 16, 16), (2, 16, 16, 32),
      (2, 8, 8, 32), (2, 8, 8, 64), (2, 4, 4, 32), (2, 4, 4, 64), (2, 4, 4, 128)]
  assert len(jax.tree.leaves(out.activations)) == 11 + (0 if no_reslink else 4)
  assert jax.tree.structure(out.batch_stats) == jax.tree.structure(variables["batch_stats"])
  assert not np.allclose(out.batch_stats["block00"]["layer00"]["unit0"]["bn0"]["var"], 1.0)
  # Flax holds 2C per BN (Zen counts C, and 0 for a projection's BN) and num_classes biases (Zen: 1).
  total, bn_c, proj_bn_c = _counts(variables["params"])
  assert total - bn_c - proj_bn_c - (100 - 1) == macro.count_params(arch, 100, no_reslink=no_reslink)


def _np_conv(x, w, stride, pad, depthwise=False):
  kh, kw = w.shape[:2]
  xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  ho, wo = (x.shape[1] + 2 * pad - kh) // stride + 1, (x.shape[2] + 2 * pad - kw) // stride + 1
  out = 0.0
  for i in range(kh):
    for j in range(kw):
      patch = xp[:, i:i + stride * ho:stride, j:j + stride * wo:stride, :]
      out = out + (patch * w[i, j, 0] if depthwise else patch @ w[i, j])
  return out


def _np_bn(x, p, eps=1e-3):
  mean, var = x.mean((0, 1, 2)), x.var((0, 1, 2))
  return (x - mean) / np.sqrt(var + eps) * p["scale"] + p["bias"]


def test_network_matches_numpy_forward_with_shortcuts():
  arch = Arch.parse("SuperConvK3BNRELU(3,8,2,1)SuperResK3K3(8,16,2,8,1)SuperResIDWE2K3(16,16,1,8,1)")
  net = macro_net.MacroNetwork(arch, 10, no_reslink=False)
  variables = macro_net.init_variables(net, jax.random.key(0), (8, 8, 3))
  rng = np.random.default_rng(0)
  variables["params"] = jax.tree_util.tree_map_with_path(  # non-trivial BN affine parameters
      lambda path, v: v + rng.normal(size=v.shape).astype(v.dtype) * (path[-1].key in ("scale", "bias")),
      variables["params"])
  x = rng.normal(size=(2, 8, 8, 3))
  out = jit(macro_net.make_apply_fn(net))(variables, jnp.asarray(x, jnp.float32))
  p = jax.tree.map(lambda v: np.asarray(v, np.float64), variables["params"])
  relu = lambda v: np.maximum(v, 0)
  u = p["block00"]["layer00"]["unit0"]
  y0 = relu(_np_bn(_np_conv(x, u["conv0"]["conv"]["kernel"], 2, 1), u["bn0"]))
  u = p["block01"]["layer00"]["unit0"]  # ResBlockProj: Conv1x1(stride 2, bias) + BN shortcut
  inner = _np_bn(_np_conv(relu(_np_bn(_np_conv(y0, u["conv0"]["conv"]["kernel"], 2, 1), u["bn0"])),
                          u["conv1"]["conv"]["kernel"], 1, 1), u["bn1"])
  short = _np_bn(_np_conv(y0, u["proj"]["conv"]["kernel"], 2, 0) + u["proj"]["conv"]["bias"], u["proj_bn"])
  y1 = relu(inner + short)
  layer = p["block02"]["layer00"]

  def inverted(v, u, with_proj):
    h = relu(_np_bn(_np_conv(v, u["conv0"]["conv"]["kernel"], 1, 0), u["bn0"]))
    h = relu(_np_bn(_np_conv(h, u["conv1"]["conv"]["kernel"], 1, 1, depthwise=True), u["bn1"]))
    h = _np_bn(_np_conv(h, u["conv2"]["conv"]["kernel"], 1, 0), u["bn2"])
    s = _np_bn(_np_conv(v, u["proj"]["conv"]["kernel"], 1, 0) + u["proj"]["conv"]["bias"], u["proj_bn"])
    return relu(h + (s if with_proj else v))

  # [16 -> dw1 = 2*8 = 16 -> btn 8] always projected (ResBlockProj); [8 -> dw2 = 2*16 = 32 -> 16]
  # projected because 8 != 16.
  y2 = inverted(inverted(y1, layer["unit0"], True), layer["unit1"], True)
  logits = y2.mean((1, 2)) @ p["classifier"]["kernel"] + p["classifier"]["bias"]
  np.testing.assert_allclose(out.features, y2, rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(out.logits, logits, rtol=1e-4, atol=1e-4)
  assert layer["unit0"]["conv1"]["conv"]["kernel"].shape == (3, 3, 1, 16)  # depthwise, dw1 = 16
  assert layer["unit1"]["conv1"]["conv"]["kernel"].shape == (3, 3, 1, 32)  # dw2 = smart_round(32)
  # Running variance after one train-mode pass: 0.9 + 0.1 * unbiased batch variance.
  pre = _np_conv(x, p["block00"]["layer00"]["unit0"]["conv0"]["conv"]["kernel"], 2, 1)
  np.testing.assert_allclose(out.batch_stats["block00"]["layer00"]["unit0"]["bn0"]["var"],
                             0.9 + 0.1 * pre.var((0, 1, 2), ddof=1), rtol=1e-4)


@pytest.mark.parametrize("k,stride,size", [(3, 1, 7), (5, 2, 9), (7, 2, 8), (3, 2, 5)])
def test_shifted_depthwise_conv_equals_grouped_conv_and_its_gradients(k, stride, size):
  rng = np.random.default_rng(k * stride)
  x = jnp.asarray(rng.normal(size=(2, size, size, 6)), jnp.float32)
  w = jnp.asarray(rng.normal(size=(k, k, 1, 6)), jnp.float32)
  pad = (k - 1) // 2

  def grouped(x, w):
    return jax.lax.conv_general_dilated(x, w, (stride, stride), [(pad, pad)] * 2,
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=6)

  shifted = lambda x, w: layers.depthwise_conv_shifted(x, w, stride)
  np.testing.assert_allclose(shifted(x, w), _np_conv(np.asarray(x, np.float64), np.asarray(w, np.float64),
                                                     stride, pad, depthwise=True), rtol=1e-5, atol=1e-5)
  loss = lambda f: lambda x, w: jnp.sum(jnp.sin(f(x, w)))
  for a, b in zip(jit(jax.grad(loss(shifted), (0, 1)))(x, w), jit(jax.grad(loss(grouped), (0, 1)))(x, w)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
  # Second order, as GraSP takes it: the gradient of <dL/dw, v> (the custom VJPs' own VJPs).
  v = jnp.asarray(rng.normal(size=w.shape), jnp.float32)
  hvp = lambda f: jit(jax.grad(lambda x, w: jnp.vdot(jax.grad(loss(f), 1)(x, w), v), (0, 1)))(x, w)
  for a, b in zip(hvp(shifted), hvp(grouped)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
  with jax.enable_x64(True):  # float64, as SynFlow runs: gradients to float64 rounding
    x64, w64 = (jnp.asarray(np.asarray(a), jnp.float64) for a in (x, w))
    for a, b in zip(jit(jax.grad(loss(shifted), (0, 1)))(x64, w64), jit(jax.grad(loss(grouped), (0, 1)))(x64, w64)):
      assert a.dtype == jnp.float64
      np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10)


def test_depthwise_forms_give_the_same_network(monkeypatch):
  """An IDW network (a stride-2 and a stride-1 K5 depthwise conv): the same variables, the same
  logits and gradients whether its depthwise convs run grouped or shifted."""
  arch = Arch.parse("SuperConvK3BNRELU(3,8,2,1)SuperResIDWE2K5(8,16,2,8,1)")
  net = macro_net.MacroNetwork(arch, 10)
  images = jnp.asarray(np.random.default_rng(2).normal(size=(4, 13, 13, 3)), jnp.float32)
  runs = []
  for form in ("grouped", "shifted"):
    monkeypatch.setattr(macro_net, "depthwise_form", form)
    variables = macro_net.init_variables(net, jax.random.key(0), (13, 13, 3))
    apply_fn = macro_net.make_apply_fn(net)
    loss = lambda params: jnp.sum(apply_fn({**variables, "params": params}, images).logits ** 2)
    runs.append((variables, jit(jax.value_and_grad(loss))(variables["params"])))
  (v0, (l0, g0)), (v1, (l1, g1)) = runs
  assert jax.tree.structure(v0) == jax.tree.structure(v1)
  for a, b in zip(jax.tree.leaves(v0), jax.tree.leaves(v1)):
    np.testing.assert_array_equal(a, b)
  np.testing.assert_allclose(l0, l1, rtol=1e-5)
  for a, b in zip(jax.tree.leaves(g0), jax.tree.leaves(g1)):
    np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4 * (1 + float(np.max(np.abs(b)))))
  monkeypatch.setattr(macro_net, "depthwise_form", "fast")
  with pytest.raises(ValueError, match="'fast'; valid: auto, grouped, shifted"):
    jax.eval_shape(lambda: net.init(jax.random.key(0), images))


def test_scan_mode_equals_unrolled_mode_with_per_layer_leaves():
  # Zen K1KXK1: two bottlenecks per sub-layer; sub-layers 1 and 2 run as one scan.
  arch = Arch.parse("SuperConvK3BNRELU(3,8,2,1)SuperResK1K3K1(8,16,2,8,3)")
  plain = macro_net.MacroNetwork(arch, 10)
  scanned = plain.clone(scan=True)
  variables = macro_net.init_variables(plain, jax.random.key(0), (8, 8, 3))
  same = macro_net.init_variables(scanned, jax.random.key(0), (8, 8, 3))
  assert jax.tree.structure(variables) == jax.tree.structure(same)
  inner = macro_net.to_scanned_layout(scanned, variables)["params"]["block01"]
  assert sorted(inner) == ["layer00", "tail"]
  assert inner["tail"]["unit1"]["conv1"]["conv"]["kernel"].shape == (2, 3, 3, 8, 8)
  images = jnp.asarray(np.random.default_rng(1).normal(size=(2, 8, 8, 3)), jnp.float32)

  def run(net):
    apply_fn = macro_net.make_apply_fn(net)

    def loss(params):
      out = apply_fn({**variables, "params": params}, images)
      return jnp.sum(out.logits ** 2), out

    return jit(jax.value_and_grad(loss, has_aux=True))(variables["params"])

  (l0, out0), g0 = run(plain)
  (l1, out1), g1 = run(scanned)
  assert out0.features.shape == (2, 2, 2, 16) and len(out0.relu_inputs) == 1 + 3 * 2 * 3
  assert jax.tree.structure(g0) == jax.tree.structure(g1) == jax.tree.structure(variables["params"])
  np.testing.assert_allclose(l0, l1, rtol=1e-5)
  for a, b in zip(jax.tree.leaves((out0.relu_inputs, out0.activations, out0.batch_stats, g0)),
                  jax.tree.leaves((out1.relu_inputs, out1.activations, out1.batch_stats, g1))):
    # float32 rounding differs with the op order; BN over 8 values per channel amplifies it.
    np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4 * (1 + float(np.max(np.abs(b)))))


def test_small_idw_network_with_shortcuts_and_maedet_network():
  arch = Arch.parse("SuperConvK3BNRELU(3,8,2,1)SuperResIDWE2K3(8,16,2,8,2)SuperConvK1BNRELU(16,32,1,1)")
  net = macro_net.MacroNetwork(arch, 10, no_reslink=False, use_se=True)  # the training form
  variables = macro_net.init_variables(net, jax.random.key(0), (16, 16, 3))
  out = jit(macro_net.make_apply_fn(net))(variables, jnp.ones((2, 16, 16, 3)))
  assert out.features.shape == (2, 4, 4, 32) and np.all(np.isfinite(out.logits))
  se = variables["params"]["block01"]["layer01"]["unit1"]["se"]  # SE(dw2 = 32): 8 squeeze channels
  assert se["conv0"]["conv"]["kernel"].shape == (1, 1, 32, 8)
  # Zen counts an SE's BNs as 2C (as Flax holds them), the other BNs as C.
  total, bn_c, proj_bn_c = _counts(variables["params"])
  assert total - bn_c - proj_bn_c - 9 == macro.count_params(arch, 10, use_se=True)
  assert macro.count_params(arch, 10, use_se=True) > macro.count_params(arch, 10)
  # MAE-DET convention: one bottleneck per sub-layer, pooled shortcut, BN counted 2C, no classifier.
  arch = Arch.parse("SuperConvK3BNRELU(3,8,2,1)SuperResK1K3K1(8,16,2,8,2)")
  net = macro_net.MacroNetwork(arch, 10, no_reslink=False, convention="maedet")
  variables = macro_net.init_variables(net, jax.random.key(0), (16, 16, 3))
  out = jit(macro_net.make_apply_fn(net))(variables, jnp.ones((2, 16, 16, 3)))
  assert out.features.shape == (2, 4, 4, 16)
  block = variables["params"]["block01"]
  assert sorted(block) == ["layer00", "layer01"] and "proj" in block["layer00"]["unit0"]
  assert "proj" not in block["layer01"]["unit0"] and "unit1" not in block["layer00"]
  total, _, _ = _counts(variables["params"])
  assert total - (16 * 10 + 10) == macro.count_params(arch, convention="maedet")


def test_proxies_score_macro_networks_alike_in_both_modes():
  # The ModelOutput contract: ReLU codes (NASWOT), features and running variances (Zen), every
  # kernel as its own leaf (per-layer GradNorm); the scan form must be indistinguishable.
  arch = Arch.parse("SuperConvK3BNRELU(3,8,1,1)SuperResK3K3(8,16,2,8,3)SuperConvK1BNRELU(16,16,1,1)")
  rng = np.random.default_rng(0)
  batch = proxies.Batch(jnp.asarray(rng.normal(size=(4, 8, 8, 3)), jnp.float32),
                        jnp.asarray(rng.integers(0, 10, 4)))
  scores = []
  for scan in (False, True):
    net = macro_net.MacroNetwork(arch, 10, scan=scan)
    variables = macro_net.init_variables(net, jax.random.key(0), (8, 8, 3))
    apply_fn = macro_net.make_apply_fn(net)
    scores.append([float(jit(proxies.get(name).fn, static_argnums=0)(apply_fn, variables, batch,
                                                                     jax.random.key(1)))
                   for name in ("naswot", "zen", "grad_norm")])
  assert np.all(np.isfinite(scores))
  np.testing.assert_allclose(scores[0], scores[1], rtol=1e-4)
