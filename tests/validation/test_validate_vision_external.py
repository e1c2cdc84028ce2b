"""Coord checks on external vision models sptrace was not written for: torchvision and timm
architectures built from their constructors with random weights (nothing is downloaded), at
widths spanning 8x, on the zoo's real digits (3x32x32, 10 classes) — the data and the loss of
the zoo ViT, as in tests/validation/test_validate_external.py.

sptrace must keep every module's output RMS at init (may shrink) and its change after 4 steps
within a log-log slope of ±0.25 for Adam, SGD and the spectral optimizer; the library's own init
with one Adam lr (standard parametrization) must not. Conventions of ``sptrace.validation.validate``: lr
``DEFAULT_LR`` at the narrowest width, which is the base; readouts start at zero; the mean over 3
init seeds per width (batch 16 of digits). A cell in ``CELL_SETTINGS`` runs at its own lr and precision,
with the reason there (tv-convnext under SGD: lr 0.01 in float64).

torchvision and timm do not install beside the CPU torch of the project's venv, so every test
here skips there (``importorskip``); they run where torchvision/timm are installed (the GPU
machine, or a separate venv: docs/validation-vision.md has the command and the measured table).
The default run holds the classification checks and two Adam coord checks (one seed); ``-m slow``
runs every model x optimizer. Measured results and the failures' diagnoses:
docs/validation-vision.md.
"""
import functools
import warnings

import pytest
import torch

import sptrace
from tests.validation.external_coord import external_coord_check

pytest.importorskip("torchvision")

HEAD_DIM = 16
DATA = "vit"  # the zoo model whose data and loss we use: digits as 3x32x32 images, 10 classes
NUM_CLASSES = 10
TOL = 0.25
STEPS = 4
BATCH = 16
SEEDS = 3  # init seeds averaged per width, as sptrace.validation.validate does


# ---------------------------------------------------------------------------------------------
# the models: each builder takes the width and returns the library's module, library init


def tv_vit(width):
    """torchvision ViT: conv patch embedding (patch 4 -> 64 patches), class token, learned position
    embedding, one encoder block with nn.MultiheadAttention (head_dim 16), zero-initialised head."""
    from torchvision.models.vision_transformer import VisionTransformer

    return VisionTransformer(image_size=32, patch_size=4, num_layers=1, num_heads=width // HEAD_DIM,
                             hidden_dim=width, mlp_dim=4 * width, num_classes=NUM_CLASSES)


def tv_convnext(width):
    """torchvision ConvNeXt: patch-4 stem, two stages (width, 2 width) of one CNBlock each (depthwise
    7x7, LayerNorm over channels, inverted MLP as linears, layer scale), downsample between."""
    from torchvision.models.convnext import CNBlockConfig, ConvNeXt

    return ConvNeXt([CNBlockConfig(width, 2 * width, 1), CNBlockConfig(2 * width, None, 1)],
                    num_classes=NUM_CLASSES)


def tv_mobilenet_v2(width):
    """torchvision MobileNetV2 with width_mult = width / 32 (stem 32 x width_mult channels, last
    1280 x width_mult): inverted residuals with depthwise 3x3 convs and BatchNorm, a shortened
    stage list so that 32x32 inputs keep a 4x4 map. width_mult >= 1 because torchvision keeps the
    last conv at 1280 channels below 1."""
    from torchvision.models.mobilenetv2 import MobileNetV2

    return MobileNetV2(num_classes=NUM_CLASSES, width_mult=width / 32, dropout=0.0,
                       inverted_residual_setting=[[1, 8, 1, 1], [6, 8, 2, 2], [6, 16, 1, 2]])


def tv_wide_resnet(width):
    """torchvision ResNet with Bottleneck blocks (one per stage), width_per_group = width: the
    Wide-ResNet knob, which scales each bottleneck's inner 3x3 conv; the block outputs stay at
    torchvision's fixed 256..2048 channels."""
    from torchvision.models.resnet import Bottleneck, ResNet

    return ResNet(Bottleneck, [1, 1, 1, 1], num_classes=NUM_CLASSES, width_per_group=width)


def timm_vit(width):
    """timm VisionTransformer: patch 4, class token, learned positions, one block (fused qkv,
    F.scaled_dot_product_attention, head_dim 16), timm's trunc-normal(0.02) init."""
    from timm.models.vision_transformer import VisionTransformer

    return VisionTransformer(img_size=32, patch_size=4, num_classes=NUM_CLASSES, embed_dim=width, depth=1,
                             num_heads=width // HEAD_DIM, mlp_ratio=4.0)


def timm_convnext(width):
    """timm ConvNeXt: patch-4 stem with LayerNorm2d, timm's four stages (width x 1, 2, 4, 8; the map
    goes 8x8 to 1x1) of one block each, layer scale, NormMlpClassifierHead."""
    from timm.models.convnext import ConvNeXt

    return ConvNeXt(num_classes=NUM_CLASSES, depths=(1, 1, 1, 1), dims=(width, 2 * width, 4 * width, 8 * width))


def timm_convnext_v2(width):
    """timm ConvNeXt-V2 (four stages of one block, GlobalResponseNorm in the MLP, written with
    torch.addcmul, no layer scale)."""
    from timm.models.convnext import ConvNeXt

    return ConvNeXt(num_classes=NUM_CLASSES, depths=(1, 1, 1, 1), dims=(width, 2 * width, 4 * width, 8 * width),
                    use_grn=True, ls_init_value=None)


def timm_mixer(width):
    """timm MlpMixer: patch 4 (64 patches), one block of token MLP 64 -> width/2 -> 64 and channel
    MLP width -> 4 width -> width, LayerNorm, mean pool, linear head."""
    from timm.models.mlp_mixer import MlpMixer

    return MlpMixer(num_classes=NUM_CLASSES, img_size=32, patch_size=4, num_blocks=1, embed_dim=width)


def timm_resnet(width):
    """timm ResNet-10 (BasicBlock, one per stage) with channels (w, 2w, 4w, 8w) and the deep stem
    (three 3x3 convs, w/2, w/2, w: the plain stem stays at 64 channels); timm zero-initialises each
    block's last BatchNorm gain."""
    from timm.models.resnet import BasicBlock, ResNet

    return ResNet(BasicBlock, [1, 1, 1, 1], num_classes=NUM_CLASSES, stem_type="deep", stem_width=width // 2,
                  channels=(width, 2 * width, 4 * width, 8 * width))


def timm_convmixer(width):
    """timm ConvMixer: patch-4 conv stem, one block of residual depthwise 3x3 conv + pointwise conv,
    each followed by GELU and BatchNorm."""
    from timm.models.convmixer import ConvMixer

    return ConvMixer(dim=width, depth=1, kernel_size=3, patch_size=4, num_classes=NUM_CLASSES)


# name -> (library, builder, widths). Transformers start at 32 (two heads of head_dim 16).
MODELS = {
    "tv-vit": ("torchvision", tv_vit, (32, 64, 128, 256)),
    "tv-convnext": ("torchvision", tv_convnext, (16, 32, 64, 128)),
    # from 128: below it the pointwise convs' update stable rank still grows with the channels (docs)
    "tv-mobilenet-v2": ("torchvision", tv_mobilenet_v2, (128, 256, 512, 1024)),
    "tv-wide-resnet": ("torchvision", tv_wide_resnet, (16, 32, 64, 128)),
    "timm-vit": ("timm", timm_vit, (32, 64, 128, 256)),
    "timm-convnext": ("timm", timm_convnext, (32, 64, 128, 256)),  # stage 0 is pre-asymptotic at 16 (docs)
    "timm-convnext-v2": ("timm", timm_convnext_v2, (16, 32, 64, 128)),
    "timm-mixer": ("timm", timm_mixer, (16, 32, 64, 128)),
    "timm-resnet": ("timm", timm_resnet, (16, 32, 64, 128)),
    "timm-convmixer": ("timm", timm_convmixer, (32, 64, 128, 256)),  # at width 16 SGD is pre-asymptotic (docs)
}


def build(name, width):
    library, builder, _ = MODELS[name]
    pytest.importorskip(library)
    return builder(width)


# ---------------------------------------------------------------------------------------------
# the coord check: tests/validation/test_validate_external.py's, with the optimizer as a parameter


def check(name, optimizer, parametrization, steps=STEPS, batch_size=BATCH, widths=None, n_seeds=SEEDS, lr=None,
          dtype=None):
    """Coord check of MODELS[name] under ``parametrization`` ("sptrace" or "sp"): the same seeds and
    the same digits at every width (tests/validation/external_coord.py); returns the verdict."""
    library, builder, default_widths = MODELS[name]
    pytest.importorskip(library)
    return external_coord_check(builder, DATA, optimizer, parametrization, tuple(widths or default_widths),
                                steps=steps, batch_size=batch_size, n_seeds=n_seeds, tol=TOL, lr=lr, dtype=dtype)


def worst(result):
    """The update slope (delta_rms) farthest from 0 and its module, as scripts/validation_report.py."""
    checks = [c for m in result.modules.values() for c in m.checks.values() if c.quantity.startswith("delta")]
    bad = max(checks, key=lambda c: c.excess)
    return f"{bad.slope:+.2f} ({bad.module})"


# ---------------------------------------------------------------------------------------------
# classification: every parameter classified, data/class/kernel/patch axes fixed, hidden dims width


@functools.lru_cache(maxsize=None)
def traced(name, base_mode):
    _, builder, widths = MODELS[name]
    torch.manual_seed(0)
    model = builder(widths[1])
    example = torch.randn(2, 3, 32, 32)
    base = builder(widths[0]) if base_mode else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model, base, sptrace.trace(model, example, base=base)


@pytest.mark.parametrize("base_mode", [True, False], ids=["base", "automatic"])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_parameter_classified(name, base_mode, one_thread):
    pytest.importorskip(MODELS[name][0])
    model, base, tr = traced(name, base_mode)
    unclassified = [f"{r.name}: {r.problem}" for r in tr if not r.classified]
    assert not unclassified, "\n".join(unclassified)
    names = sorted(n for n, _ in model.named_parameters(remove_duplicate=False))
    assert sorted(a for r in tr for a in r.aliases) == names
    params = dict(model.named_parameters())
    for r in tr:
        shape = tuple(params[r.name].shape)
        # the axes that must be fixed whatever the width: image channels of an input conv, classes of
        # the readout, conv kernel axes, and any axis of size 1
        fixed = {a for a, n in enumerate(shape) if n in (1, 3, NUM_CLASSES) or (a >= 2 and len(shape) == 4)}
        if shape[-1] == 65 or (len(shape) == 3 and shape[1] == 65):  # ViT positions: 64 patches + class token
            fixed.add(len(shape) - 2)
        assert not (set(r.width_dims) & fixed), f"{r.name} {shape}: width dims {r.width_dims}"
    if base is not None:  # base mode: width dims are exactly the axes that differ from the base's
        theirs = dict(base.named_parameters())
        for r in tr:
            differ = tuple(a for a, (m, b) in enumerate(zip(params[r.name].shape, theirs[r.name].shape)) if m != b)
            assert r.width_dims == differ, f"{r.name}: width dims {r.width_dims}, base differs on {differ}"


# ---------------------------------------------------------------------------------------------
# coord checks


@pytest.mark.parametrize("name", ["tv-convnext", "timm-vit"])
def test_adam_sptrace_stable_standard_not(name, one_thread):
    ours = check(name, "adam", "sptrace", n_seeds=1)
    assert ours.passed, ours.summary()
    theirs = check(name, "adam", "sp", n_seeds=1)
    assert not theirs.passed, theirs.summary()


# A cell that fails on parameters' update norms for a measured reason that is not a rule of sptrace
# (docs/validation-vision.md, "Open cells", has the figures and the commands): none open now.
OPEN_CELLS = {}

# A cell measured at other settings than validate's, each with the reason (docs/validation-vision.md,
# "tv-convnext under SGD, in float64"). tv-convnext under SGD: at validate's lr 0.05 the model is at the edge of
# stability (loss 2.30 -> 3.5-4.6 in 4 steps; the blocks' biases grow, +0.36..+0.41, in float64 too), so lr
# 0.01, where it trains; there the blocks' linears behind the 1e-6 layer scale move by 4e-10..5e-8 (natural
# norm), which float32 resolves only in part and less so the wider the model (slopes -0.32..-0.77 in float32,
# -0.09..+0.02 in float64). The model and its optimizer state run in float64; SP still fails there.
CELL_SETTINGS = {
    ("tv-convnext", "sgd"): {"lr": 0.01, "dtype": torch.float64},
}


def sptrace_cells():
    for name in sorted(MODELS):
        for optimizer in ("adam", "sgd", "spectral"):
            reason = OPEN_CELLS.get((name, optimizer))
            marks = pytest.mark.xfail(strict=True, reason=reason) if reason else ()
            yield pytest.param(name, optimizer, marks=marks, id=f"{name}-{optimizer}")


@pytest.mark.slow
@pytest.mark.parametrize("name, optimizer", list(sptrace_cells()))
def test_sptrace_stable(name, optimizer, one_thread):
    result = check(name, optimizer, "sptrace", **CELL_SETTINGS.get((name, optimizer), {}))
    assert result.passed, result.summary()


@pytest.mark.slow
@pytest.mark.parametrize("name, optimizer", sorted(CELL_SETTINGS))
def test_standard_parametrization_is_not_at_a_cells_own_settings(name, optimizer, one_thread):
    result = check(name, optimizer, "sp", **CELL_SETTINGS[(name, optimizer)])
    assert not result.passed, result.summary()


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(MODELS))
def test_standard_parametrization_is_not(name, one_thread):
    result = check(name, "adam", "sp")
    assert not result.passed, result.summary()
