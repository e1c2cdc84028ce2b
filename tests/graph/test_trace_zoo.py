"""Full expected classification of every parameter of every zoo model, automatic and base mode.

Expectations are written from each architecture by hand (docs/zoo.md): w is the width, hidden MLPs
are 4w, the CNN's second stage has 2w channels, the Mixer's token MLP has w/2 hidden units.
"""
import re

import pytest

import models_zoo
import sptrace

W = 64

# (name pattern) -> (kind, role, input space, fan_in, fan_out, width dims); fans are functions of w
GAIN = ("vector", "gain", "dense", lambda w, c: 1, lambda w, c: c, (0,))
BIAS = ("vector", "bias", "sparse", lambda w, c: 1, lambda w, c: c, (0,))

EXPECTED = {
    "mlp": [
        (r"fc1\.weight", ("vector", "input", "dense", 3072, "w", (0,))),
        (r"fc2\.weight", ("matrix", "hidden", "dense", "w", "w", (0, 1))),
        (r"fc3\.weight", ("vector", "readout", "dense", "w", 10, (1,))),
    ],
    "cnn": [
        (r"stem\.weight", ("vector", "input", "dense", 27, "w", (0,))),
        (r"layer1\.dw\.weight", ("vector", "input", "dense", 9, 1, (0,))),
        (r"layer2\.dw\.weight", ("vector", "input", "dense", 9, 1, (0,))),
        (r"layer1\.gconv\.weight", ("matrix", "hidden", "dense", "w/4", "w/4", (0, 1))),
        (r"layer2\.gconv\.weight", ("matrix", "hidden", "dense", "w/4", "2w/4", (0, 1))),
        (r"layer1\.pw\.weight", ("matrix", "hidden", "dense", "w", "w", (0, 1))),
        (r"layer2\.pw\.weight", ("matrix", "hidden", "dense", "2w", "2w", (0, 1))),
        (r"layer2\.shortcut\.0\.weight", ("matrix", "hidden", "dense", "w", "2w", (0, 1))),
        (r"(bn|layer1\.bn\d)\.weight", ("vector", "gain", "dense", 1, "w", (0,))),
        (r"(bn|layer1\.bn\d|layer1\.(dw|pw))\.bias", ("vector", "bias", "sparse", 1, "w", (0,))),
        (r"layer2\.bn1\.weight", ("vector", "gain", "dense", 1, "w", (0,))),
        (r"layer2\.(bn1|dw)\.bias", ("vector", "bias", "sparse", 1, "w", (0,))),
        (r"layer2\.(bn2|bn3|shortcut\.1)\.weight", ("vector", "gain", "dense", 1, "2w", (0,))),
        (r"layer2\.(bn2|bn3|shortcut\.1|pw)\.bias", ("vector", "bias", "sparse", 1, "2w", (0,))),
        (r"fc\.weight", ("vector", "readout", "dense", "2w", 10, (1,))),
        (r"fc\.bias", ("scalar", "bias", "sparse", 1, 10, ())),
    ],
    "gpt": [
        (r"transformer\.wte\.weight", ("vector", "embedding", "sparse", 77, "w", (1,))),
        (r"transformer\.wpe\.weight", ("vector", "embedding", "sparse", 64, "w", (1,))),
        (r".*ln_\w+\.weight", ("vector", "gain", "dense", 1, "w", (0,))),
        (r".*ln_\w+\.bias", ("vector", "bias", "sparse", 1, "w", (0,))),
        (r".*attn\.c_attn\.weight", ("matrix", "hidden", "dense", "w", "3w", (0, 1))),
        (r".*attn\.c_attn\.bias", ("vector", "bias", "sparse", 1, "3w", (0,))),
        (r".*attn\.c_proj\.weight", ("matrix", "hidden", "dense", "w", "w", (0, 1))),
        (r".*(attn|mlp)\.c_proj\.bias", ("vector", "bias", "sparse", 1, "w", (0,))),
        (r".*mlp\.c_fc\.weight", ("matrix", "hidden", "dense", "w", "4w", (0, 1))),
        (r".*mlp\.c_fc\.bias", ("vector", "bias", "sparse", 1, "4w", (0,))),
        (r".*mlp\.c_proj\.weight", ("matrix", "hidden", "dense", "4w", "w", (0, 1))),
        (r"lm_head\.weight", ("vector", "readout", "dense", "w", 77, (1,))),
    ],
    "vit": [
        (r"cls_token", ("vector", "embedding", "sparse", 1, "w", (2,))),
        (r"pos_embed", ("vector", "embedding", "sparse", 65, "w", (2,))),
        (r"patch_embed\.weight", ("vector", "input", "dense", 48, "w", (0,))),
        (r".*norm\d?\.weight", ("vector", "gain", "dense", 1, "w", (0,))),
        (r"(.*norm\d?|patch_embed|.*out_proj|.*fc2)\.bias", ("vector", "bias", "sparse", 1, "w", (0,))),
        (r".*in_proj_weight", ("matrix", "hidden", "dense", "w", "3w", (0, 1))),
        (r".*in_proj_bias", ("vector", "bias", "sparse", 1, "3w", (0,))),
        (r".*out_proj\.weight", ("matrix", "hidden", "dense", "w", "w", (0, 1))),
        (r".*fc1\.weight", ("matrix", "hidden", "dense", "w", "4w", (0, 1))),
        (r".*fc1\.bias", ("vector", "bias", "sparse", 1, "4w", (0,))),
        (r".*fc2\.weight", ("matrix", "hidden", "dense", "4w", "w", (0, 1))),
        (r"head\.weight", ("vector", "readout", "dense", "w", 10, (1,))),
        (r"head\.bias", ("scalar", "bias", "sparse", 1, 10, ())),
    ],
    "mixer": [
        (r"stem\.weight", ("vector", "input", "dense", 48, "w", (0,))),
        (r".*norm\d?\.weight", ("vector", "gain", "dense", 1, "w", (0,))),
        (r"(.*norm\d?|stem|.*channel_mlp\.fc2)\.bias", ("vector", "bias", "sparse", 1, "w", (0,))),
        (r".*token_mlp\.fc1\.weight", ("vector", "input", "dense", 64, "w/2", (0,))),  # patches -> width
        (r".*token_mlp\.fc1\.bias", ("vector", "bias", "sparse", 1, "w/2", (0,))),
        (r".*token_mlp\.fc2\.weight", ("vector", "readout", "dense", "w/2", 64, (1,))),  # width -> patches
        (r".*token_mlp\.fc2\.bias", ("scalar", "bias", "sparse", 1, 64, ())),
        (r".*channel_mlp\.fc1\.weight", ("matrix", "hidden", "dense", "w", "4w", (0, 1))),
        (r".*channel_mlp\.fc1\.bias", ("vector", "bias", "sparse", 1, "4w", (0,))),
        (r".*channel_mlp\.fc2\.weight", ("matrix", "hidden", "dense", "4w", "w", (0, 1))),
        (r"head\.weight", ("vector", "readout", "dense", "w", 10, (1,))),
        (r"head\.bias", ("scalar", "bias", "sparse", 1, 10, ())),
    ],
}


def _size(spec, w):
    if isinstance(spec, int):
        return spec
    num, _, den = spec.partition("/")
    factor = int(num[:-1] or 1)
    return factor * w // int(den or 1)


def expectation(model, name, w):
    matches = [exp for pattern, exp in EXPECTED[model] if re.fullmatch(pattern, name)]
    assert len(matches) == 1, f"{model}: {name} matches {len(matches)} expectations"
    kind, role, space, fan_in, fan_out, width = matches[0]
    return kind, role, space, _size(fan_in, w), _size(fan_out, w), width


def build(name, width, **options):
    spec = models_zoo.get(name)
    args, kwargs = spec.example_inputs()
    return spec.build(width, **options), args, kwargs


@pytest.mark.parametrize("mode", ["automatic", "base"])
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_zoo_classification(name, mode):
    model, args, kwargs = build(name, W)
    base = build(name, W // 2)[0] if mode == "base" else None
    t = sptrace.trace(model, *args, base=base, strict=True, **kwargs)
    assert t.width_mode == mode
    names = {n for n, _ in model.named_parameters()}
    assert {r.name for r in t} == names
    for r in t:
        got = (r.kind.value, r.role.value, r.input_space.value, r.fan_in, r.fan_out, r.width_dims)
        assert got == expectation(name, r.name, W), r.name


def test_zoo_gpt_tied():
    model, args, kwargs = build("gpt", W, tied=True)
    t = sptrace.trace(model, *args, **kwargs)
    r = t["lm_head.weight"]
    assert r.aliases == ("transformer.wte.weight", "lm_head.weight")
    assert (r.role.value, r.input_space.value) == ("embedding", "sparse")
    [use] = r.secondary_uses
    assert (use.module, use.role.value, use.fan_in_axes, use.fan_out_axes) == ("lm_head", "readout", (1,), (0,))


def test_zoo_attention_head_dim_fixed_in_base_mode():
    """The zoo's transformers grow heads at a fixed head_dim: base mode must see it."""
    for name in ("gpt", "vit"):
        model, args, kwargs = build(name, W)
        t = sptrace.trace(model, *args, base=build(name, W // 2)[0], **kwargs)
        assert t.attention and all(s.head_dim_is_width is False for s in t.attention)
