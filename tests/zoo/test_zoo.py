"""models_zoo: registry, width scaling, data, determinism, meta builds, ties."""
import itertools
import math

import pytest
import torch
import torch.nn as nn

import models_zoo
from models_zoo import data as zdata

NAMES = models_zoo.names()
W1, W2 = 32, 64  # two widths, ratio 2

# Parameter shapes as functions of width: the attribute names are part of the zoo's interface
# (docs/zoo.md lists them); every parameter of every model is covered.
V, T = zdata.VOCAB_SIZE, 64


def _gpt_shapes(w, n_layer=2):
    s = {"transformer.wte.weight": (V, w), "transformer.wpe.weight": (T, w),
         "transformer.ln_f.weight": (w,), "transformer.ln_f.bias": (w,), "lm_head.weight": (V, w)}
    for i in range(n_layer):
        p = f"transformer.h.{i}."
        s.update({p + "ln_1.weight": (w,), p + "ln_1.bias": (w,), p + "ln_2.weight": (w,), p + "ln_2.bias": (w,),
                  p + "attn.c_attn.weight": (3 * w, w), p + "attn.c_attn.bias": (3 * w,),
                  p + "attn.c_proj.weight": (w, w), p + "attn.c_proj.bias": (w,),
                  p + "mlp.c_fc.weight": (4 * w, w), p + "mlp.c_fc.bias": (4 * w,),
                  p + "mlp.c_proj.weight": (w, 4 * w), p + "mlp.c_proj.bias": (w,)})
    return s


def _vit_shapes(w, depth=2):
    s = {"cls_token": (1, 1, w), "pos_embed": (1, 65, w), "patch_embed.weight": (w, 3, 4, 4), "patch_embed.bias": (w,),
         "norm.weight": (w,), "norm.bias": (w,), "head.weight": (10, w), "head.bias": (10,)}
    for i in range(depth):
        p = f"blocks.{i}."
        s.update({p + "norm1.weight": (w,), p + "norm1.bias": (w,), p + "norm2.weight": (w,), p + "norm2.bias": (w,),
                  p + "attn.in_proj_weight": (3 * w, w), p + "attn.in_proj_bias": (3 * w,),
                  p + "attn.out_proj.weight": (w, w), p + "attn.out_proj.bias": (w,),
                  p + "mlp.fc1.weight": (4 * w, w), p + "mlp.fc1.bias": (4 * w,),
                  p + "mlp.fc2.weight": (w, 4 * w), p + "mlp.fc2.bias": (w,)})
    return s


def _mixer_shapes(w, depth=2):
    s = {"stem.weight": (w, 3, 4, 4), "stem.bias": (w,), "norm.weight": (w,), "norm.bias": (w,),
         "head.weight": (10, w), "head.bias": (10,)}
    for i in range(depth):
        p = f"blocks.{i}."
        s.update({p + "norm1.weight": (w,), p + "norm1.bias": (w,), p + "norm2.weight": (w,), p + "norm2.bias": (w,),
                  p + "token_mlp.fc1.weight": (w // 2, 64), p + "token_mlp.fc1.bias": (w // 2,),
                  p + "token_mlp.fc2.weight": (64, w // 2), p + "token_mlp.fc2.bias": (64,),
                  p + "channel_mlp.fc1.weight": (4 * w, w), p + "channel_mlp.fc1.bias": (4 * w,),
                  p + "channel_mlp.fc2.weight": (w, 4 * w), p + "channel_mlp.fc2.bias": (w,)})
    return s


def _cnn_block(p, c_in, c_out, shortcut):
    s = {p + "dw.weight": (c_in, 1, 3, 3), p + "dw.bias": (c_in,), p + "bn1.weight": (c_in,), p + "bn1.bias": (c_in,),
         p + "gconv.weight": (c_out, c_in // 4, 1, 1), p + "bn2.weight": (c_out,), p + "bn2.bias": (c_out,),
         p + "pw.weight": (c_out, c_out, 1, 1), p + "pw.bias": (c_out,), p + "bn3.weight": (c_out,), p + "bn3.bias": (c_out,)}
    if shortcut:
        s.update({p + "shortcut.0.weight": (c_out, c_in, 1, 1), p + "shortcut.1.weight": (c_out,),
                  p + "shortcut.1.bias": (c_out,)})
    return s


def _cnn_shapes(w):
    return {"stem.weight": (w, 3, 3, 3), "bn.weight": (w,), "bn.bias": (w,),
            **_cnn_block("layer1.", w, w, False), **_cnn_block("layer2.", w, 2 * w, True),
            "fc.weight": (10, 2 * w), "fc.bias": (10,)}


EXPECTED_SHAPES = {
    "mlp": lambda w: {"fc1.weight": (w, 3072), "fc2.weight": (w, w), "fc3.weight": (10, w)},
    "cnn": _cnn_shapes,
    "gpt": _gpt_shapes,
    "vit": _vit_shapes,
    "mixer": _mixer_shapes,
}
OUTPUT_SHAPES = {"mlp": (10,), "cnn": (10,), "gpt": (T, V), "vit": (10,), "mixer": (10,)}


def _shapes(model):
    return {n: tuple(p.shape) for n, p in model.named_parameters()}


def test_registry():
    assert set(NAMES) == {"mlp", "cnn", "gpt", "vit", "mixer"}
    assert list(models_zoo.ZOO) == NAMES
    for name in NAMES:
        spec = models_zoo.get(name)
        assert spec is models_zoo.ZOO[name] and spec.name == name
        assert spec.task in ("classification", "language-modelling", "regression")
        assert spec.description and spec.default_width > 0
        assert max(spec.coord_widths) >= 8 * min(spec.coord_widths)
        assert list(spec.coord_widths) == sorted(spec.coord_widths)
    with pytest.raises(Exception):
        spec.name = "x"  # frozen


@pytest.mark.parametrize("bad", ["gtp", "resnet", ""])
def test_bad_name(bad):
    with pytest.raises(KeyError) as info:
        models_zoo.get(bad)
    msg = str(info.value)
    assert repr(bad) in msg and all(n in msg for n in NAMES)
    if bad == "gtp":
        assert "did you mean 'gpt'" in msg


def test_bad_build_arguments():
    spec = models_zoo.get("gpt")
    with pytest.raises(TypeError, match="tied"):  # lists the valid options
        spec.build(32, tide=True)
    with pytest.raises(ValueError, match="width"):
        spec.build(0)
    with pytest.raises(ValueError, match="head_dim"):
        spec.build(40)  # not a multiple of head_dim 16
    with pytest.raises(ValueError, match="multiple of 4"):
        models_zoo.get("cnn").build(30)


@pytest.mark.parametrize("name", NAMES)
def test_width_scales_hidden_dims_only(name):
    spec = models_zoo.get(name)
    small, large = spec.build(W1), spec.build(W2)
    assert _shapes(small) == EXPECTED_SHAPES[name](W1)
    assert _shapes(large) == EXPECTED_SHAPES[name](W2)
    # every dim is either fixed or exactly proportional to width
    for n, a in _shapes(small).items():
        b = _shapes(large)[n]
        assert all(y in (x, x * W2 // W1) for x, y in zip(a, b)), (n, a, b)
    # inputs do not depend on width (example_inputs has no width), outputs neither
    args, kwargs = spec.example_inputs(batch_size=3)
    with torch.no_grad():
        out_small, out_large = small(*args, **kwargs), large(*args, **kwargs)
    assert tuple(out_small.shape) == tuple(out_large.shape) == (3, *OUTPUT_SHAPES[name])


@pytest.mark.parametrize("source", ["real", "synthetic"])
@pytest.mark.parametrize("name", NAMES)
def test_forward_backward_finite(name, source):
    spec = models_zoo.get(name)
    torch.manual_seed(0)
    model = spec.build(W1)
    (inputs, target), = itertools.islice(spec.batches(8, seed=1, source=source), 1)
    loss = spec.loss(model(*inputs), target)
    assert loss.ndim == 0 and torch.isfinite(loss)
    # near chance at init (PyTorch default init): log(classes) within a loose factor
    n_classes = V if spec.task == "language-modelling" else 10
    assert 0.3 * math.log(n_classes) < loss.item() < 3 * math.log(n_classes)
    loss.backward()
    for n, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), n


@pytest.mark.parametrize("name", NAMES)
def test_batches_shapes_and_values(name):
    spec = models_zoo.get(name)
    args, kwargs = spec.example_inputs()
    assert kwargs == {} and len(args) == 1
    for source in ("real", "synthetic"):
        batches = list(spec.batches(4, seed=0, source=source, steps=3))
        assert len(batches) == 3
        for (x,), y in batches:
            assert x.shape[1:] == args[0].shape[1:] and x.dtype == args[0].dtype and x.shape[0] == 4
            if spec.task == "language-modelling":
                assert x.shape == y.shape == (4, T) and x.dtype == y.dtype == torch.long
                assert 0 <= int(x.min()) and int(x.max()) < V
            else:
                assert y.shape == (4,) and y.dtype == torch.long and 0 <= int(y.min()) and int(y.max()) < 10
    if spec.task == "language-modelling":  # targets are the next characters
        (x,), y = next(spec.batches(2, seed=0))
        assert torch.equal(x[:, 1:], y[:, :-1])
        text = zdata.decode(x[0])
        assert text in zdata.shakespeare_text()
    else:
        (x,), _ = next(spec.batches(256, seed=0))
        assert abs(x.mean().item()) < 0.2 and 0.7 < x.pow(2).mean().sqrt().item() < 1.3


@pytest.mark.parametrize("name", NAMES)
def test_deterministic(name):
    spec = models_zoo.get(name)
    torch.manual_seed(123)
    a = spec.build(W1).state_dict()
    torch.manual_seed(123)
    b = spec.build(W1).state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    for source in ("real", "synthetic"):
        one = list(spec.batches(4, seed=7, source=source, steps=2))
        two = list(spec.batches(4, seed=7, source=source, steps=2))
        other = list(spec.batches(4, seed=8, source=source, steps=2))
        for ((x1,), y1), ((x2,), y2) in zip(one, two):
            assert torch.equal(x1, x2) and torch.equal(y1, y2)
        assert not torch.equal(one[0][0][0], other[0][0][0])
    # batches never touch the global RNG
    torch.manual_seed(5)
    list(spec.batches(4, seed=0, steps=2))
    after = torch.rand(1)
    torch.manual_seed(5)
    assert torch.equal(after, torch.rand(1))


@pytest.mark.parametrize("name", NAMES)
def test_builds_on_meta(name):
    spec = models_zoo.get(name)
    with torch.device("meta"):
        big = spec.build(4096)
    assert all(p.is_meta for p in big.parameters())
    with torch.device("meta"):
        model = spec.build(W2)
    args, kwargs = spec.example_inputs(batch_size=2, device="meta")
    assert all(a.is_meta for a in args)
    out = model(*args, **kwargs)
    assert out.is_meta and tuple(out.shape) == (2, *OUTPUT_SHAPES[name])
    (x,), y = next(spec.batches(2, device="meta"))
    assert x.is_meta and y.is_meta


def test_gpt_tied_shares_one_parameter():
    spec = models_zoo.get("gpt")
    tied = spec.build(W1, tied=True)
    assert tied.lm_head.weight is tied.transformer.wte.weight
    names = [n for n, _ in tied.named_parameters()]
    assert "transformer.wte.weight" in names and "lm_head.weight" not in names  # deduplicated
    assert len(names) == len(_gpt_shapes(W1)) - 1
    untied = spec.build(W1)
    assert untied.lm_head.weight is not untied.transformer.wte.weight
    (inputs, target), = spec.batches(4, steps=1)
    loss = spec.loss(tied(*inputs), target)
    loss.backward()
    assert torch.isfinite(tied.transformer.wte.weight.grad).all()


def test_heads():
    gpt, vit = models_zoo.get("gpt"), models_zoo.get("vit")
    for w in (32, 64, 128):
        assert (gpt.build(w).n_head, gpt.build(w).head_dim) == (w // 16, 16)
        assert (vit.build(w).n_head, vit.build(w).head_dim) == (w // 16, 16)
        assert vit.build(w).blocks[0].attn.num_heads == w // 16
    assert (gpt.build(64, n_head=4).n_head, gpt.build(64, n_head=4).head_dim) == (4, 16)
    assert (gpt.build(128, n_head=4).n_head, gpt.build(128, n_head=4).head_dim) == (4, 32)
    assert gpt.build(64, head_dim=32).n_head == 2
    assert _shapes(gpt.build(32, n_layer=3)) == _gpt_shapes(32, n_layer=3)


def test_gpt_is_causal():
    torch.manual_seed(0)
    model = models_zoo.get("gpt").build(W1).eval()
    (x,), _ = next(models_zoo.get("gpt").batches(1))
    y = x.clone()
    y[0, 40:] = (y[0, 40:] + 1) % V
    with torch.no_grad():
        assert torch.allclose(model(x)[0, :40], model(y)[0, :40], atol=1e-5)


def test_cnn_has_depthwise_and_grouped_convs():
    model = models_zoo.get("cnn").build(W2)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert any(m.groups == m.in_channels == m.out_channels for m in convs)  # depthwise
    assert any(m.groups == 4 for m in convs)                                # grouped, fixed count
    assert any(m.bias is None for m in convs) and any(m.bias is not None for m in convs)
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())


def test_mixer_token_hidden_scales():
    spec = models_zoo.get("mixer")
    assert spec.build(W1).blocks[0].token_mlp.fc1.weight.shape == (W1 // 2, 64)
    assert spec.build(W1, token_ratio=1.0).blocks[0].token_mlp.fc1.weight.shape == (W1, 64)


def test_shipped_data():
    assert zdata.DATA_DIR.parent.name == "models_zoo"
    for f in ("shakespeare.txt", "digits.npz", "README.md"):
        assert (zdata.DATA_DIR / f).is_file()
    assert "".join(sorted(set(zdata.shakespeare_text()))) == zdata.VOCAB and V == 77
    x, y = zdata.digits()
    assert x.shape == (1797, 3, 32, 32) and y.shape == (1797,) and set(y.tolist()) == set(range(10))
    assert zdata.digits() is zdata.digits()  # cached
    # val split differs from train
    (xt,), _ = next(models_zoo.get("vit").batches(8, split="train"))
    (xv,), _ = next(models_zoo.get("vit").batches(8, split="val"))
    assert not torch.equal(xt, xv)
    with pytest.raises(ValueError, match="source"):
        next(models_zoo.get("vit").batches(8, source="fake"))
